"""A pytest plugin: under -v, each test's end is followed by a line with how long it took and how
far into the run it ended, and the run's header says what the machine has.

Why: CI prints only the tail of a run it stops at its time limit, and pytest's --durations table
comes at the very end, so a run cut off had no figures at all. With these lines any tail says
which tests ate the time, and the header says whether the machine was short of cores or disk.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.testbed.config import CACHE_DIR


def machine_facts(paths: list[Path]) -> str:
    """One line: cores, load, and the free space where the servers' files live."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    free = []
    for path in paths:
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        free.append(f"{path} {shutil.disk_usage(existing).free / 1024 ** 3:.1f} GiB free")
    return f"{os.cpu_count()} cores, load {load}; " + "; ".join(free)


def clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class RunClock:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.taken: dict[str, float] = {}

    def _reporter(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def pytest_report_header(self) -> str:
        return "machine: " + machine_facts([CACHE_DIR, Path("/tmp")])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.taken[report.nodeid] = self.taken.get(report.nodeid, 0.0) + report.duration
        if report.when != "teardown":
            return
        taken = self.taken.pop(report.nodeid)
        reporter = self._reporter()
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"    [{clock(time.monotonic() - self.started)} into the run] "
                                f"{taken:.0f} s with its fixtures: {report.nodeid}")


def register(config: pytest.Config) -> None:
    """Only on the process that prints (not on xdist's workers) and only under -v."""
    if config.option.verbose > 0 and not hasattr(config, "workerinput"):
        config.pluginmanager.register(RunClock(config), "strackt-run-clock")
