"""`python -m tests.faults [pytest args]`: run the fault suite on the testbed and print what was
tried and what survived (fault / tried / survived / lost writes)."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

import pytest


class Collector:
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


def main(argv: list[str]) -> int:
    collector = Collector()
    paths = [] if any(a.startswith("tests/") for a in argv) else ["tests/faults"]
    rc = pytest.main([*paths, "-p", "no:cacheprovider", *argv], plugins=[collector])
    print("\n== strackt.move fault suite")
    print(collector.table())
    all_survived = all(r["tried"] == r["survived"] for r in collector.rows.values())
    print("every fault survived" if all_survived and rc == 0 else "NOT every fault survived")
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
