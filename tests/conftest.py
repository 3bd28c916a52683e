"""Shared fixtures. The testbed boots once per session and is reset between tests.

Run in parallel (pytest-xdist, `make test`), every worker has its own testbed: worker N uses
testbed index BASE + N, BASE being STRACKT_TESTBED_INDEX (10 when unset or 0: testbed 0 is the
demo's, whose inventory lives in the repository). The methods of a test class (one move they
share) and the cases of a parametrized test run on one worker (pytest_xdist_make_scheduler).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling  # pytest-xdist: a dev dependency

from tests import run_clock
from tests.faults.table import FaultTable
from tests.testbed import Testbed

# Testbed 0 writes its inventory into the repository (inventories/testbed): parallel workers
# start above the indexes a developer uses by hand.
PARALLEL_BASE_INDEX = 10

# Long tests first and short ones last (longest first among them), so no long test starts at the
# end on one worker while the others sit idle. Modules not listed are taken for long: their tests
# move something (minutes each).
SHORT_LAST = (
    "tests/faults/test_bad_inputs.py",         # one group of 41 tests, ~2 min
    "tests/integration/test_galaxy_build.py",  # one group, ~1 min
    "tests/integration/test_setup_stages.py",  # 9 tests, ~10-40 s each
    "tests/integration/test_testbed.py",       # 10 tests, a few seconds each
)


def _worker() -> tuple[int, int] | None:
    """(this xdist worker's number, how many workers), or None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if not name:
        return None
    return int(name.removeprefix("gw")), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _base_index() -> int:
    return int(os.environ.get("STRACKT_TESTBED_BASE_INDEX") or os.environ.get("STRACKT_TESTBED_INDEX") or 0)


@pytest.fixture(scope="session")
def spare_testbed_index() -> int:
    """A testbed index no worker of this session uses (the one just past theirs), for a test
    that boots a throw-away testbed of its own."""
    worker = _worker()
    return _base_index() + (worker[1] if worker else 1)


def _testbed_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the testbed needs root (namespaces, overlay mounts, systemd-nspawn)"
    for tool in ("systemd-nspawn", "debootstrap", "named", "ip"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (run `make deps`)"
    return None


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """Real servers. Reuses a testbed that is already up (e.g. `make testbed-up`), and then
    leaves it up; one this session booted is torn down at the end."""
    reason = _testbed_unavailable()
    if reason:
        pytest.fail(f"testbed unavailable: {reason}")
    bed = Testbed()
    booted_here = not bed.is_up()
    bed.up()
    try:
        yield bed
    finally:
        if booted_here and not os.environ.get("STRACKT_KEEP_TESTBED"):
            bed.down()


class _LastReset:
    """Whether this worker's testbed is as a reset left it: true from the closing reset of a
    `fresh_testbed` test until anything else may change it (a test not using `fresh_testbed`
    starts, or a class- or module-scoped fixture ends)."""

    untouched = False


@pytest.fixture
def fresh_testbed(testbed: Testbed) -> Iterator[Testbed]:
    """The testbed with shop on srv1 only, as after `up`; reset again afterwards. The reset
    before is left out when the test before it on this worker ended with that reset and nothing
    ran since: two such tests in a row share one (a reset is 10-30 s on two busy cores)."""
    if not _LastReset.untouched:
        testbed.reset()
    _LastReset.untouched = False
    yield testbed
    testbed.reset()
    _LastReset.untouched = True


@pytest.fixture(autouse=True)
def _testbed_may_change(request: pytest.FixtureRequest) -> None:
    if "fresh_testbed" not in request.fixturenames:
        _LastReset.untouched = False


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    # a class or module fixture's teardown may change the servers after the last reset
    if fixturedef.scope != "function":
        _LastReset.untouched = False


def pytest_configure(config: pytest.Config) -> None:
    worker = _worker()
    if worker is not None:
        # Everything reads the index from the environment (Testbed(), the CLI, molecule, the
        # bench): set it once for this worker's process and all it starts.
        base = _base_index() or PARALLEL_BASE_INDEX
        os.environ["STRACKT_TESTBED_BASE_INDEX"] = str(base)
        os.environ["STRACKT_TESTBED_INDEX"] = str(base + worker[0])
    # the fault suite's table, whenever its tests run (make faults, make test)
    config.pluginmanager.register(FaultTable(), "strackt-fault-table")
    # the quick bench's figures (make test): printed, never judged
    config.pluginmanager.register(BenchFigures(), "strackt-bench-figures")
    # each test's time and the run's clock on its line (a run CI cuts off still shows them)
    run_clock.register(config)


class BenchFigures:
    """A pytest plugin: prints the tables tests put in their user_properties as ("bench table",
    text) at the end of the run (from xdist's workers too)."""

    def __init__(self) -> None:
        self.tables: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.tables += [text for key, text in report.user_properties if key == "bench table"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for text in self.tables:
            terminalreporter.write_sep("=", "strackt.move quick bench (figures, not judged)")
            terminalreporter.write_line(text)


class _ByClassAndTest(LoadScopeScheduling):
    """Load-balanced, but the methods of one test class (they share a class-scoped fixture: one
    move) and the cases of one parametrized test go to the same worker, in collection order.
    (xdist's own --dist loadgroup cannot tag tests under pytest 9: it sets item._nodeid, which
    pytest 9 no longer reads.)"""

    def _split_scope(self, nodeid: str) -> str:
        path, _, rest = nodeid.partition("::")
        names = rest.split("[", 1)[0].split("::")
        return "::".join([path, *names[:-1]] if len(names) > 1 else [path, *names])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    config.option.loadscopereorder = False  # keep the order below: long tests first
    return _ByClassAndTest(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # every worker sorts the same way (sort is stable: collection order otherwise)
    short = {module: rank for rank, module in enumerate(SHORT_LAST, start=1)}
    items.sort(key=lambda item: short.get(item.nodeid.split("::")[0], 0))
