"""The fault suite's table (fault / tried / survived / lost writes), printed at the end of any
pytest run that ran tests of tests/faults (`make faults`, `make test`). Tests add
``("row", {...})`` or ``("fault", name)`` (+ ``("survived", True)``) to their user_properties."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

SUITE = "tests/faults/"


class FaultTable:
    """A pytest plugin: one row per fault, from the tests' user_properties and outcomes."""

    def __init__(self) -> None:
        self.rows: "OrderedDict[str, dict[str, Any]]" = OrderedDict()

    def _add(self, fault: str, survived: bool, lost: int | None, note: str = "") -> None:
        r = self.rows.setdefault(fault, {"tried": 0, "survived": 0, "lost": None, "notes": []})
        r["tried"] += 1
        r["survived"] += int(bool(survived))
        if lost is not None:
            r["lost"] = (r["lost"] or 0) + lost
        if note:
            r["notes"].append(note)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if SUITE not in report.nodeid:
            return
        if report.when != "call" and not (report.when == "setup" and report.failed):
            return
        props = dict(report.user_properties)
        rows = [v for k, v in report.user_properties if k == "row"]
        for r in rows:
            self._add(r["fault"], r["survived"] and report.passed, r.get("lost"), r.get("note", ""))
        if not rows:
            fault = props.get("fault") or report.nodeid.split("::")[-1]
            self._add(fault, report.passed and props.get("survived", report.passed), props.get("lost"))

    def table(self) -> str:
        name_w = max([len("fault")] + [len(k) for k in self.rows])
        lines = [f"{'fault':<{name_w}}  tried  survived  lost writes", f"{'-' * name_w}  -----  --------  -----------"]
        for fault, r in self.rows.items():
            lost = "-" if r["lost"] is None else str(r["lost"])
            note = f"  ({'; '.join(r['notes'])})" if r["notes"] else ""
            lines.append(f"{fault:<{name_w}}  {r['tried']:>5}  {r['survived']:>8}  {lost:>11}{note}")
        tried = sum(r["tried"] for r in self.rows.values())
        survived = sum(r["survived"] for r in self.rows.values())
        lost_total = sum(r["lost"] or 0 for r in self.rows.values())
        lines.append(f"{'total':<{name_w}}  {tried:>5}  {survived:>8}  {lost_total:>11}")
        return "\n".join(lines)


    def all_survived(self) -> bool:
        return all(r["tried"] == r["survived"] for r in self.rows.values())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        terminalreporter.write_sep("=", "strackt.move fault suite")
        terminalreporter.write_line(self.table())
        terminalreporter.write_line("every fault survived" if self.all_survived() else "NOT every fault survived")
