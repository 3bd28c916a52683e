# strackt.move — see README.md. Everything here runs as root on Debian 12.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
APT_PACKAGES := systemd-container debootstrap rsync openssh-client iproute2 bind9 bind9-utils \
	bind9-dnsutils git acl attr curl ca-certificates python3-venv
CONFIRM ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help deps apt venv demo test unit testbed-up testbed-down testbed-status testbed-reset lint sanity clean

help:
	@echo "make demo            move the sample env shop from srv1 to srv2 on local servers (CONFIRM=yes: no prompt)"
	@echo "make test            the whole suite, integration tests on real servers included"
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
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

demo: deps
	$(PY) -m tests.demo $(if $(filter yes,$(CONFIRM)),--yes,)

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

testbed-up: deps
	$(PY) -m tests.testbed up

testbed-down: venv
	$(PY) -m tests.testbed down

testbed-status: venv
	$(PY) -m tests.testbed status

testbed-reset: venv
	$(PY) -m tests.testbed reset

lint: venv
	$(VENV)/bin/ansible-lint --profile production playbooks collections/ansible_collections/strackt/move/roles

sanity: venv
	scripts/ansible-test-sanity.sh

clean: testbed-down
	rm -rf $(VENV) .deps-apt.stamp .pytest_cache
