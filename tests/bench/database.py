"""The bench's database part (--with-database, issue 15): the env's PostgreSQL database moves with
it. Before the moves the database's server is put at wal_level=logical and the new server's
PostgreSQL as a new server has it; after each move the figures of the database (replication lag
before the freeze, the freeze's database part, every table's row count and checksum on both
sides); at the end every replication object is removed and wal_level put back."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from tests.testbed import Testbed
from tests.testbed import pg_move as tb

EQUAL_WITHIN_S = 30.0  # the old database follows the new one (the way back) within this


@dataclass(frozen=True)
class BenchDatabase:
    name: str
    server: str      # the database's home before the move
    new_server: str

    def ready(self, testbed: Testbed) -> contextlib.AbstractContextManager[Testbed]:
        """Nothing of a move on either server, the source at wal_level=logical; put back after."""
        return tb.database_move_ready(testbed, self.server, self.new_server, self.name)

    def clean(self, testbed: Testbed) -> None:
        """Whatever a move left of its replication (nothing once its finish ran; a failed run may)."""
        tb.clean_database_move(testbed, self.server, self.new_server, self.name)

    def tables_at_switch(self, testbed: Testbed) -> dict[str, Any]:
        """Every table's row count and content checksum on both sides once the writes stopped:
        the new database has what the old one had at the switch plus what was written on it
        after; the old one follows it (the way back), so both must end equal."""
        deadline = time.monotonic() + EQUAL_WITHIN_S
        while True:
            old = tb.table_checksums(testbed, self.server, self.name)
            new = tb.table_checksums(testbed, self.new_server, self.name)
            if old == new or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        differ = sorted(t for t in set(old) | set(new) if old.get(t) != new.get(t))
        return {"tables": len(new), "tables_differing": differ, "equal": not differ,
                self.server: old, self.new_server: new}


def lag_before_freeze(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The replication lag of the last sync pass before the freeze (bytes, seconds) and the
    largest seen over the passes."""
    before = [p for p in passes if p.get("kind") != "final" and p.get("database_lag_bytes") is not None]
    if not before:
        return {"bytes": None, "seconds": None, "max_bytes": None, "max_seconds": None}
    last = before[-1]
    return {"bytes": last.get("database_lag_bytes"), "seconds": last.get("database_lag_s"),
            "max_bytes": max(p["database_lag_bytes"] for p in before),
            "max_seconds": max(float(p.get("database_lag_s") or 0) for p in before)}
