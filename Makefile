# strackt.move — see README.md. Everything here runs as root on Debian 12.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# postgresql: the server binaries the record store's unit tests start a throwaway cluster with
# (tests/unit/pg_cluster.py: a temp dir, a Unix socket only); the package's own cluster is not used.
APT_PACKAGES := systemd-container debootstrap rsync openssh-client iproute2 bind9 bind9-utils \
	bind9-dnsutils git acl attr curl ca-certificates python3-venv chromium postgresql
CONFIRM ?=
PYTEST_ARGS ?=
# testbeds (and pytest workers) of `make test`, each on its own servers. A move test keeps ~0.9 of
# a core busy on its own (126 s CPU in 138 s, 2026-11-30): 2 workers fill the 2 cores, a 3rd only
# slows every test down (and stretches the fault tests' timings) for no gain.
TEST_WORKERS ?= 2
BENCH_ARGS ?=

AWX_COLLECTIONS := $(CURDIR)/.cache/collections
LINT := ANSIBLE_COLLECTIONS_PATH=$(AWX_COLLECTIONS):$(CURDIR)/collections $(VENV)/bin/ansible-lint

.PHONY: help deps apt venv awx-collection demo test test-all unit testbed-up testbed-down testbed-status testbed-reset \
	lint sanity molecule faults bench bench-smoke clean

help:
	@echo "make demo            move the sample env shop from srv1 to srv2 on local servers (CONFIRM=yes: no prompt)"
	@echo "make test            unit, sanity, lint and the end-to-end tests on real servers (about 25-30 min)"
	@echo "make test-all        all of that and the extended tests: the whole fault matrix (about 1 h)"
	@echo "make faults          the fault and bad-input suite, with its table"
	@echo "make bench           the switch-over benchmark (BENCH_ARGS=--quick for a small one)"
	@echo "make testbed-up      boot srv1..srv3, BIND9, PostgreSQL and the sample env"
	@echo "make testbed-down    tear the testbed down (by recorded PIDs)"
	@echo "make testbed-status  what is running"

deps: apt venv

apt: .deps-apt.stamp
.deps-apt.stamp: Makefile
	@if [ "$$(id -u)" != 0 ]; then echo "strackt.move's testbed needs root (namespaces, mounts, nspawn)"; exit 2; fi
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,pg-store]'
	@touch $@

demo: deps
	$(PY) -m tests.demo $(if $(filter yes,$(CONFIRM)),--yes,)

# Static checks first (fast to fail), then the tests on the real servers not marked `extended`
# (README: the two tiers), TEST_WORKERS testbeds in parallel (pytest-xdist; worker N boots testbed
# STRACKT_TESTBED_INDEX + N, 10 + N when unset or 0; tests/conftest.py). Each phase's duration and the
# total are printed at the end; the testbed phase names each test as it ends (-v: a failure is known
# while the rest still runs). The quick benchmark of shop (`make bench BENCH_ARGS=--quick`,
# tests/integration/test_bench_smoke.py) is one of those tests: it fails only on a failed request or a
# lost write and prints its figures. Its run for notes, and `molecule test` (test_molecule.py), are
# `extended`: `make test-all`, `make bench-smoke`.
test: deps awx-collection
	@scripts/timed-phases.sh \
	  "unit: $(PY) -m pytest tests/unit -q $(PYTEST_ARGS)" \
	  "sanity: scripts/ansible-test-sanity.sh" \
	  "lint: $(LINT)" \
	  "testbed: $(PY) -m pytest tests --ignore=tests/unit -m 'not extended' \
	     -n $(TEST_WORKERS) -v --durations=25 $(PYTEST_ARGS)"

# Everything `make test` runs, and the tests marked `extended` besides: the whole fault matrix,
# the database tool step by step, the wheel, molecule, the quick bench of notes (about 1 h on 2 cores).
test-all: deps awx-collection
	@scripts/timed-phases.sh \
	  "unit: $(PY) -m pytest tests/unit -q $(PYTEST_ARGS)" \
	  "sanity: scripts/ansible-test-sanity.sh" \
	  "lint: $(LINT)" \
	  "testbed: $(PY) -m pytest tests --ignore=tests/unit \
	     -n $(TEST_WORKERS) -v --durations=25 $(PYTEST_ARGS)"

unit: venv awx-collection
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

testbed-up: deps
	$(PY) -m tests.testbed up

testbed-down: venv
	$(PY) -m tests.testbed down

testbed-status: venv
	$(PY) -m tests.testbed status

testbed-reset: venv
	$(PY) -m tests.testbed reset

# awx.awx (for linting awx/configure.yml) comes from the community package on PyPI, into .cache/.
awx-collection: venv
	scripts/install-awx-collection.sh

lint: venv awx-collection
	$(LINT)

molecule: deps
	$(VENV)/bin/molecule test

# The fault and bad-input suite on the testbed; prints what was tried and what survived.
faults: deps
	$(PY) -m tests.faults $(PYTEST_ARGS)

# The switch-over benchmark against the naive way (BENCH_ARGS="--quick --output r.json").
bench: deps
	$(PY) -m tests.bench $(BENCH_ARGS)

bench-smoke: deps
	$(PY) -m pytest tests/integration/test_bench_smoke.py $(PYTEST_ARGS)

sanity: venv
	scripts/ansible-test-sanity.sh

clean: testbed-down
	rm -rf $(VENV) .deps-apt.stamp .pytest_cache
