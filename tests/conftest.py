"""Shared fixtures. The testbed boots once per session and is reset between tests.

Run in parallel (pytest-xdist, `make test`), every worker has its own testbed: worker N uses
testbed index BASE + N, BASE being STRACKT_TESTBED_INDEX (10 when unset or 0: testbed 0 is the
demo's, whose inventory lives in the repository). Tests that share a module- or class-scoped
fixture (one move, one built tarball) are kept on one worker (`--dist loadgroup`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.faults.table import FaultTable
from tests.testbed import Testbed

# Testbed 0 writes its inventory into the repository (inventories/testbed): parallel workers
# start above the indexes a developer uses by hand.
PARALLEL_BASE_INDEX = 10

# Long tests first and short ones last (longest first among them), so no long test starts at the
# end on one worker while the others sit idle. Modules not listed are taken for long: their tests
# move something (minutes each). `make test` passes --no-loadscope-reorder to keep this order.
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


@pytest.fixture
def fresh_testbed(testbed: Testbed) -> Iterator[Testbed]:
    """The testbed with shop on srv1 only, as after `up`; reset again afterwards."""
    testbed.reset()
    yield testbed
    testbed.reset()


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


def _shared_scope(item: pytest.Item) -> str | None:
    """The module or class whose fixture this test shares with others (None: it shares none
    but the session's testbed, which every worker has its own of)."""
    info = getattr(item, "_fixtureinfo", None)
    scopes = {defs[-1].scope for defs in (info.name2fixturedefs.values() if info else ()) if defs}
    if "module" in scopes or "package" in scopes:
        return item.nodeid.split("::")[0]
    if "class" in scopes and getattr(item, "cls", None) is not None:
        return item.parent.nodeid if item.parent else None
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        scope = _shared_scope(item)
        if scope and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(scope))
    # every worker sorts the same way (sort is stable: collection order otherwise)
    short = {module: rank for rank, module in enumerate(SHORT_LAST, start=1)}
    items.sort(key=lambda item: short.get(item.nodeid.split("::")[0], 0))
