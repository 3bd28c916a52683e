"""Shared fixtures. The testbed boots once per session and is reset between tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.faults.table import FaultTable
from tests.testbed import Testbed


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
    # the fault suite's table, whenever its tests run (make faults, make test)
    config.pluginmanager.register(FaultTable(), "strackt-fault-table")
