"""Move records for the report's tests: real ones from the testbed, and the fields being added."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import controller_testlib  # noqa: F401  (puts controller/ and collections/ on sys.path)

DATA = Path(__file__).parent / "data" / "report"
#: a move of shop srv1 → srv2 on testbed 60 by `tests.demo --yes` (2026-11-29): done
DONE = "shop-20261129T225524Z"
#: a move of shop srv1 → srv2 with three `strackt-move sync` passes while it waited, rolled back
ROLLED_BACK = "shop-20261129T230102Z"
#: a move of shop srv1 → srv2 under client load with four `strackt-move sync` passes while it
#: waited, then `confirm --yes`: done (the machine was busy: a 2.5 s freeze)
LOOPED = "shop-20261129T230232Z"
#: the time the reports in these tests are made
NOW = datetime(2026, 11, 30, 9, 0, 0, tzinfo=timezone.utc)


def record(move_id: str) -> dict[str, Any]:
    data = json.loads((DATA / f"{move_id}.json").read_text())
    data.pop("checksum")
    return data


def _ns(iso: str, plus_s: float = 0.0) -> int:
    at = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return int(round((at.timestamp() + plus_s) * 1e9))


def with_freeze_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` plus the optional fields another change adds to the record: ``started_at_ns`` on
    every pass and the ``freeze`` object. Hand-written values in the freeze module's shape (the
    total and the final pass are the ones this move reported in its cutover message)."""
    out = copy.deepcopy(data)
    for i, p in enumerate(out["sync_passes"]):
        p["started_at_ns"] = _ns(p["started_at"], 0.25 + i * 0.01)
    held = _ns(out["sync_passes"][-1]["started_at"], -0.2)
    out["freeze"] = {"held_at_ns": held, "released_at_ns": held + 780_000_000, "freeze_s": 0.78,
                     "drain_s": 0.281, "stop_s": 0.188, "final_sync_s": 0.102, "forwarder_s": 0.012}
    return out
