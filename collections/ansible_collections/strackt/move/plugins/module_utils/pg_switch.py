# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database part of the switch-over, run on the old server with the app stopped.

``switch``: wait until the new server has applied everything, copy every sequence, stop the
forward path and start the way back (the old database follows the new one until finish).
``undo``: the freeze failed before the app ran on the new server: forward path again.
``back``: rollback after the switch: wait until the old server has applied everything the new
one wrote, copy the sequences back, end the way back.

Each is safe to run again after a crash at any point and reaches the same end. The switch's
commit point is the way back's subscription on the old server: before it exists a rerun starts
over (the forward slot is kept until then, so nothing the old server wrote can be skipped).
No Ansible here: the freeze module may call these in-process.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TypeVar

from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils.pg_move import MoveNames, PgMoveError, Session

T = TypeVar("T")
POLL_S = 0.01
SLOT_RELEASE_S = 5.0


@dataclass
class Sides:
    """Both ends of one switch: sessions on the moved database and the servers' names."""

    old: Session          # local superuser on the old server
    new: Session          # the move's role on the new server
    old_name: str
    new_name: str
    database: str


@dataclass
class SwitchReport:
    action: str
    state: str                     # switched | not_switched | back
    changed: bool
    already: bool = False          # nothing left to do: an earlier run got there
    checked_only: bool = False
    target_lsn: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    sequences: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wait(deadline: float, probe: Callable[[], T], done: Callable[[T], bool],
          clock: Callable[[], float], sleep: Callable[[float], None]) -> T:
    """Probe until done or the deadline; returns the last probe either way."""
    value = probe()
    while not done(value) and clock() < deadline:
        sleep(POLL_S)
        value = probe()
    return value


def _wait_sessions(session: Session, server: str, database: str, deadline: float, clock, sleep, changed: bool) -> None:
    left = _wait(deadline, lambda: pg.other_sessions(session), lambda s: not s, clock, sleep)
    if left:
        raise PgMoveError(
            "%d session(s) still use %s on %s: %s; every writer of the database must be stopped first "
            "(the app's units, workers, cron jobs) so no write is left behind; stop them and run again"
            % (len(left), database, server, pg.name_list(left)), changed)


def _check_schema(sides: Sides, changed: bool) -> None:
    diff = pg.schema_differences(pg.schema_fingerprint(sides.old), pg.schema_fingerprint(sides.new),
                                 sides.old_name, sides.new_name)
    if diff:
        raise PgMoveError(
            "the schema of %s differs between %s and %s (%s): DDL is not replicated, so a schema change "
            "during the move must be made on both servers. Make the same change on the other server "
            "(or undo it), then run again; or roll the move back" % (sides.database, sides.old_name,
                                                                     sides.new_name, "; ".join(diff)), changed)


def _wait_applied(publisher: Session, slot_name: str, target: int, deadline: float, clock, sleep,
                  subscriber_name: str, changed: bool) -> None:
    """Until the subscriber confirmed (applied and flushed) everything up to ``target``."""
    def probe() -> int:
        found = pg.slot(publisher, slot_name)
        return (pg.parse_lsn(found["confirmed_flush_lsn"]) or 0) if found else -1

    confirmed = _wait(deadline, probe, lambda lsn: lsn >= target or lsn < 0, clock, sleep)
    if confirmed < 0:
        raise PgMoveError("replication slot %s disappeared from %s while waiting for %s: run the step again"
                          % (slot_name, publisher.label, subscriber_name), changed)
    if confirmed < target:
        raise PgMoveError(
            "%s has not applied everything %s wrote: %d bytes behind at the deadline; nothing was switched. "
            "Check that its subscription runs (pg_move_facts shows the lag), then run again with a longer "
            "timeout" % (subscriber_name, publisher.label, target - confirmed), changed)


def _copy_sequences(source: Session, dest: Session, dest_name: str, changed: bool) -> list[dict[str, Any]]:
    values = pg.read_sequences(source)
    pg.write_sequences(dest, values)
    wrong = pg.sequence_mismatches(values, pg.read_sequences(dest))
    if wrong:
        raise PgMoveError("sequences on %s did not take the copied values: %s" % (dest_name, "; ".join(wrong)), changed)
    return values


def _drop_forward_slot(old: Session, names: MoveNames, clock, sleep) -> bool:
    """Drop the forward slot once its WAL sender has exited (it was told to)."""
    pg.terminate_slot_users(old, names.forward)
    deadline = clock() + SLOT_RELEASE_S
    while True:
        found = pg.slot(old, names.forward)
        if found is None:
            return False
        if pg.drop_slot_if_inactive(old, names.forward):
            return True
        if clock() >= deadline:
            raise PgMoveError("replication slot %s on %s is still in use %.0f s after its sender was told to stop; "
                              "run the step again" % (names.forward, old.label, SLOT_RELEASE_S), True)
        sleep(POLL_S)


def switch(sides: Sides, names: MoveNames, back_connection: str, *, timeout_s: float = 10.0,
           check_only: bool = False, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> SwitchReport:
    """Hand the database over to the new server (the app is stopped on the old one)."""
    timer = pg.Timer(clock)
    report = SwitchReport(action="switch", state="not_switched", changed=False, checked_only=check_only)
    old, new = sides.old, sides.new
    if pg.subscription_exists(old, names.back):
        # Past the commit point: only the end of the forward path may be left to do.
        if not check_only:
            report.changed |= pg.set_login(old, names.role, False)
            report.changed |= _drop_forward_slot(old, names, clock, sleep)
        report.state, report.already = "switched", not report.changed
        timer.mark("finish_forward")
        report.timings, report.total_s = timer.parts, timer.total()
        return report
    if pg.slot(old, names.forward) is None:
        raise PgMoveError(
            "there is no forward replication slot %s on %s: the database on %s does not follow this one "
            "(setup has not run, or the move was rolled back). Run pg_move_setup again, or roll back"
            % (names.forward, sides.old_name, sides.new_name))
    if not check_only and pg.set_login(old, names.role, True):
        report.changed = True
        report.notes.append("the forward path an interrupted switch had stopped runs again")
    timer.mark("prepare")
    deadline = clock() + timeout_s

    _wait_sessions(old, sides.old_name, sides.database, deadline, clock, sleep, report.changed)
    timer.mark("sessions")
    _check_schema(sides, report.changed)
    not_ready = _wait(deadline, lambda: pg.tables_not_ready(new, names.forward), lambda t: not t, clock, sleep)
    if not_ready:
        raise PgMoveError(
            "the initial copy to %s has not finished for: %s; wait until it has (pg_move_facts on %s lists "
            "tables_not_ready) and run again" % (sides.new_name, ", ".join(not_ready), sides.new_name), report.changed)
    timer.mark("checks")
    target = pg.current_lsn(old)
    report.target_lsn = pg.format_lsn(target)
    _wait_applied(old, names.forward, target, deadline, clock, sleep, sides.new_name, report.changed)
    timer.mark("wait_applied")
    if check_only:
        report.timings, report.total_s = timer.parts, timer.total()
        return report

    report.sequences = _copy_sequences(old, new, sides.new_name, report.changed)
    timer.mark("sequences")
    pg.crash_point("switch:after_sequences")

    # Stop the forward path: the new server must not apply what the way back writes here.
    pg.set_login(old, names.role, False)
    pg.terminate_slot_users(old, names.forward)
    report.changed = True
    timer.mark("stop_forward")
    pg.crash_point("switch:after_stop_forward")

    # A crash inside CREATE SUBSCRIPTION can leave its slot on the new server without it.
    pg.drop_slot_if_inactive(new, names.back)
    pg.create_subscription(old, names.back, back_connection, names.publication, copy_data=False)
    timer.mark("way_back")
    pg.crash_point("switch:after_way_back")

    _drop_forward_slot(old, names, clock, sleep)
    timer.mark("drop_forward_slot")
    report.state = "switched"
    report.timings, report.total_s = timer.parts, timer.total()
    return report


def undo(sides: Sides, names: MoveNames, *, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> SwitchReport:
    """Undo a switch whose freeze failed before the app ran on the new server."""
    timer = pg.Timer(clock)
    report = SwitchReport(action="undo", state="not_switched", changed=False)
    old = sides.old
    if pg.subscription_exists(old, names.back):
        if pg.origin_progress(old, names.back):
            raise PgMoveError(
                "%s has already sent changes back to %s (the app ran there): undoing the switch would lose "
                "them; roll back after the switch instead (action back)" % (sides.new_name, sides.old_name))
        if pg.drop_subscription(old, names.back) == "detached":
            report.notes.append("the way back's slot %s may be left on %s: run pg_move_cleanup there"
                                % (names.back, sides.new_name))
        report.changed = True
    timer.mark("end_way_back")
    if pg.slot(old, names.forward) is None:
        if pg.role_state(old, names.role) is None:
            raise PgMoveError("the move's role %s is missing on %s: this move was cleaned up; roll back "
                              "before the switch and set it up again" % (names.role, sides.old_name), report.changed)
        # The switch had completed: a new slot from here on; the new server's subscription
        # resumes from it (nothing was written here since: the app is stopped).
        old.rows("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (names.forward,))
        report.changed = True
    report.changed |= pg.set_login(old, names.role, True)
    timer.mark("forward_again")
    report.already = not report.changed
    report.timings, report.total_s = timer.parts, timer.total()
    return report


def _old_applied_all(sides: Sides, names: MoveNames, report: SwitchReport, timer: pg.Timer, deadline: float,
                     clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    """The schemas agree and the old server has applied everything the new one wrote until now
    (its way back's slot); marks ``checks`` and ``wait_applied``."""
    _check_schema(sides, False)
    timer.mark("checks")
    target = pg.current_lsn(sides.new)
    report.target_lsn = pg.format_lsn(target)
    _wait_applied(sides.new, names.back, target, deadline, clock, sleep, sides.old_name, False)
    timer.mark("wait_applied")


def catch_up(sides: Sides, names: MoveNames, *, timeout_s: float = 10.0,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> SwitchReport:
    """Before a rollback after the switch holds the new server's requests (its app still runs):
    the schemas agree and the old database has applied what the new one wrote so far, so that
    ``back`` inside the hold only waits for the last moments. Changes nothing."""
    timer = pg.Timer(clock)
    report = SwitchReport(action="catch_up", state="back", changed=False, checked_only=True)
    if not pg.subscription_exists(sides.old, names.back):
        report.already = True
        report.notes.append("no way back runs here: nothing to catch up")
        report.timings, report.total_s = timer.parts, timer.total()
        return report
    _old_applied_all(sides, names, report, timer, clock() + timeout_s, clock, sleep)
    report.timings, report.total_s = timer.parts, timer.total()
    return report


def back(sides: Sides, names: MoveNames, *, timeout_s: float = 10.0, check_only: bool = False,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> SwitchReport:
    """Rollback after the switch (the app is stopped on the new server): the old database
    gets everything the new one wrote, then the way back ends."""
    timer = pg.Timer(clock)
    report = SwitchReport(action="back", state="back", changed=False, checked_only=check_only)
    old, new = sides.old, sides.new
    if not pg.subscription_exists(old, names.back):
        if pg.slot(old, names.forward) is not None:
            report.state = "not_switched"
            report.notes.append("the switch has not happened: nothing to bring back (a rollback before the "
                                "switch is pg_move_cleanup on both servers)")
        report.already = True
        report.timings, report.total_s = timer.parts, timer.total()
        return report
    deadline = clock() + timeout_s
    _wait_sessions(new, sides.new_name, sides.database, deadline, clock, sleep, False)
    timer.mark("sessions")
    _old_applied_all(sides, names, report, timer, deadline, clock, sleep)
    if check_only:
        report.timings, report.total_s = timer.parts, timer.total()
        return report
    report.sequences = _copy_sequences(new, old, sides.old_name, False)
    report.changed = True
    timer.mark("sequences")
    pg.crash_point("back:after_sequences")
    if pg.drop_subscription(old, names.back) == "detached":
        report.notes.append("the way back's slot %s may be left on %s: run pg_move_cleanup there"
                            % (names.back, sides.new_name))
    timer.mark("end_way_back")
    report.timings, report.total_s = timer.parts, timer.total()
    return report
