# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database's part of the freeze: both sessions opened before anything stops (a TLS + SCRAM
connection to the new server costs tens of ms), then ``pg_switch.switch`` once the app is down,
and ``pg_switch.undo`` when the freeze gives up after it. The freeze (module_utils/freeze.py)
calls it through ``open``/``switch``/``undo``/``close`` and knows nothing of PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_session, pg_switch


@dataclass(frozen=True)
class HandOverSettings:
    move_id: str
    database: str
    peer_address: str
    password: str
    port: int = 5432
    peer_port: int = 5432
    timeout_s: float = 5.0


class DatabaseHandOver:
    def __init__(self, settings: HandOverSettings) -> None:
        self.s = settings
        self.names = pg.names_for(settings.move_id)
        self.sides: pg_switch.Sides | None = None
        self.switched = False  # switch() was entered: a failure after it must undo

    def open(self) -> float:
        """Connect to both servers; the seconds it took."""
        started = time.monotonic()
        s = self.s
        old = pg_session.connect_local(s.database, s.port)
        try:
            new = pg_session.connect_remote(s.peer_address, s.peer_port, s.database, self.names.role, s.password,
                                            "the new server")
        except Exception:
            old.close()
            raise
        self.sides = pg_switch.Sides(old=old, new=new, old_name="this server",
                                     new_name="the new server (%s)" % s.peer_address, database=s.database)
        return round(time.monotonic() - started, 4)

    def switch(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Hand the database over (the app is stopped); the report (timings, total_s, sequences)."""
        if self.sides is None:
            raise pg.PgMoveError("the database hand-over was not opened")
        self.switched = True
        s = self.s
        back = pg.conninfo(s.peer_address, s.peer_port, s.database, self.names.role, s.password, self.names.back)
        return pg_switch.switch(self.sides, self.names, back, timeout_s=timeout_s or s.timeout_s).to_dict()

    def undo(self) -> str:
        """After a failed freeze: the old server serves the database again, the new one follows it."""
        if not self.switched or self.sides is None:
            return "the database was not switched"
        try:
            report = pg_switch.undo(self.sides, self.names)
        except Exception as exc:  # the freeze's message must say it; the source still gets started
            return "undoing the database switch FAILED (%s): run pg_move_switch action=undo on this server" % exc
        self.switched = False
        return "the database switch was undone" + (" (%s)" % "; ".join(report.notes) if report.notes else "")

    def back(self, timeout_s: float | None = None) -> dict[str, Any]:
        """A rollback after the switch, the app stopped on the new server: the old database gets
        everything the new one wrote, the sequences come back, the way back ends (the report)."""
        if self.sides is None:
            raise pg.PgMoveError("the database's way back was not opened")
        return pg_switch.back(self.sides, self.names, timeout_s=timeout_s or self.s.timeout_s).to_dict()

    def close(self) -> None:
        if self.sides is not None:
            for session in (self.sides.old, self.sides.new):
                try:
                    session.close()
                except Exception:  # closing a broken connection: nothing left to do
                    pass
            self.sides = None
