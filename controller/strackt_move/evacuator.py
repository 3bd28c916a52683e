"""``strackt-move evacuate SERVER``: plan where every env of a server goes, then move them —
up to N preparations at once, switch-overs one at a time, finishes as they come.

Each env's move is an ordinary ``strackt-move start/confirm/resume`` in a child process of its
own (its own session, output to a log file under the state dir), so a move of an evacuation is
exactly a move done by hand: the same locks, records, resume and rollback. The evacuation only
decides what runs next (``next_actions``, pure) from where each move is (its record) and who
drives it (a child of ours, or anyone holding the move's controller lock — e.g. a child left by an
evacuation that was SIGKILLed). So running ``evacuate SERVER`` again continues it, and never
drives a move twice.

Switch-overs run one at a time because parallel final phases lengthen every freeze (the final
passes and the app restarts compete for the same disks and cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.placement import MIB

from strackt_move import locks
from strackt_move.errors import MoveError
from strackt_move.evacuation import (
    CONFIRM_MODES,
    FINAL_PHASES,
    Evacuation,
    EvacuationStore,
    Phase,
    PlannedMove,
    phase,
)
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlaybookRunner, PlayRequest
from strackt_move.progress import Emit
from strackt_move.settings import Settings
from strackt_move.stages import finish_not_before
from strackt_move.store import RecordStore
from strackt_move.units import human_duration

Ask = Callable[[str], str]
PLAN_PLAYBOOK = "evacuation_plan.yml"


# ---------------------------------------------------------------------------- what runs next

@dataclass(frozen=True)
class Action:
    """One child ``strackt-move`` command for one env."""

    kind: str  # start | resume | confirm | finish | rollback
    env: str
    argv: tuple[str, ...]


def final_phase_running(moves: list[PlannedMove], phases: dict[str, Phase], busy: set[str]) -> bool:
    """A switch-over or a finish runs. They never overlap: a freeze holds requests in the old
    server's front proxy, and a finish reloads that proxy (a reload drops the requests it holds)."""
    return any(phases[m.env] is Phase.SWITCHING or (m.env in busy and phases[m.env] in (Phase.READY, Phase.SWITCHED))
               for m in moves)


def next_actions(moves: list[PlannedMove], phases: dict[str, Phase], busy: set[str], parallel: int,
                 may_switch: Callable[[str], bool], held: frozenset[str] = frozenset(),
                 finish_due: Callable[[str], bool] = lambda _env: True) -> list[Action]:
    """What to start now, given each env's phase, which envs someone drives already (``busy``)
    and which are left to the operator (``held``: a command of theirs failed in this run).

    Preparations (start, or resume of an interrupted one) fill up to ``parallel`` slots in plan
    order; one switch-over at a time, in plan order, for envs ``may_switch`` allows; a finish for
    every switched env nobody drives once it is due (``finish_due``: resolvers' caches of the old
    address expired; until then it does not wait in a child, which would block switch-overs), never
    while a switch-over runs (nor one while finishes run); a resume for every interrupted rollback
    nobody drives. A failed move is left to the operator."""
    actions: list[Action] = []
    preparing = sum(1 for m in moves if m.env in busy and phases[m.env] in (Phase.PENDING, Phase.PREPARING))
    moves_free = [m for m in moves if m.env not in held]
    # interrupted preparations first (they hold work already done), then new ones
    for wanted, kind in ((Phase.PREPARING, "resume"), (Phase.PENDING, "start")):
        for m in moves_free:
            if m.env in busy or preparing >= parallel or phases[m.env] is not wanted:
                continue
            argv = (("resume", m.env) if kind == "resume" else
                    ("start", m.env, "--target", m.target) + (("--with-database",) if m.with_database else ()))
            actions.append(Action(kind, m.env, argv))
            preparing += 1
    if not final_phase_running(moves, phases, busy):
        finishes = [m for m in moves_free
                    if m.env not in busy and phases[m.env] is Phase.SWITCHED and finish_due(m.env)]
        actions += [Action("finish", m.env, ("resume", m.env)) for m in finishes]
        for m in moves_free if not finishes else []:
            if phases[m.env] is Phase.READY and m.env not in busy and may_switch(m.env):
                actions.append(Action("confirm", m.env, ("confirm", m.env, "--yes", "--no-finish")))
                break
    for m in moves_free:
        if m.env not in busy and phases[m.env] is Phase.ROLLING_BACK:
            actions.append(Action("resume", m.env, ("resume", m.env)))
    return actions


# ---------------------------------------------------------------------------- child processes

class Child(Protocol):
    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[tuple[str, ...], Path], Child]


def spawn_cli(settings: Settings) -> Spawn:
    """Children are ``python -m strackt_move`` with our state dir and inventory, in a session of
    their own (a Ctrl-C at the terminal reaches the evacuation, which decides), writing to a log
    file (not a pipe: a child must outlive a killed evacuation without meeting a broken pipe)."""

    def spawn(argv: tuple[str, ...], log: Path) -> Child:
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(log, "ab", buffering=0) as out:
            return subprocess.Popen(
                [sys.executable, "-m", "strackt_move", "--state-dir", str(settings.state_dir),
                 "-i", str(settings.require_inventory()), *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    return spawn


@dataclass
class _Running:
    action: Action
    child: Child
    began: float
    signalled: bool = False  # asked to stop (SIGTERM) already


@dataclass
class _LogTail:
    """Shows what the children write, a line at a time, prefixed with their env."""

    path: Path
    offset: int = 0
    partial: bytes = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]


# ---------------------------------------------------------------------------- the evacuation

@dataclass
class EvacuationRequest:
    server: str
    targets: list[str]  # empty: every other server
    parallel: int = 1
    confirm: str = "plan"
    plan_only: bool = False
    yes: bool = False
    #: env -> target as an operator approved it elsewhere (AWX's approval node): the evacuation
    #: refuses, changing nothing, when the plan differs from it
    approved: dict[str, str] | None = None
    #: each env's PostgreSQL database on the server moves with it (kept in the record for resume)
    with_database: bool = False


def plan_differences(moves: list[PlannedMove], approved: dict[str, str], server: str) -> list[str]:
    """How ``moves`` differ from the ``approved`` env → target plan; empty: the same plan."""
    out = []
    for m in moves:
        if approved.get(m.env) != m.target:
            out.append(f"{m.env} → {m.target} (approved: {approved.get(m.env) or 'not in the plan'})")
    planned = {m.env for m in moves}
    out += [f"{env} (approved → {target}, now not attached to {server})"
            for env, target in sorted(approved.items()) if env not in planned]
    return out


@dataclass
class Evacuator:
    settings: Settings
    store: RecordStore
    runner: PlaybookRunner
    out: Emit
    spawn: Spawn | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    ask: Ask | None = None
    poll_s: float = 1.0
    stop_grace_s: float = 120.0

    def __post_init__(self) -> None:
        self.evacs = EvacuationStore(self.settings.state_dir, self.store)
        if self.spawn is None:
            self.spawn = spawn_cli(self.settings)
        self._declined: set[str] = set()
        self._held: dict[str, str] = {}  # env -> the command of ours that failed for it in this run

    # -------------------------------------------------------------- commands

    def evacuate(self, req: EvacuationRequest) -> ExitCode:
        if req.confirm not in CONFIRM_MODES:
            raise MoveError(ExitCode.USAGE, f"--confirm must be one of {', '.join(CONFIRM_MODES)}", "see --help")
        if req.server in req.targets:
            raise MoveError(ExitCode.USAGE, f"{req.server} cannot be evacuated to itself",
                            f"leave {req.server} out of --to")
        lock = self.evacs.lock(req.server, f"evacuate {req.server}")
        try:
            lock.acquire(timeout=0)
        except locks.LockBusy as busy:
            raise MoveError(ExitCode.BUSY, f"the evacuation of {req.server} is driven by "
                            f"{busy.holder.describe() if busy.holder else 'another process'}",
                            f"wait for it, or `strackt-move status --server {req.server}`") from None
        try:
            evac = self.evacs.load(req.server)
            if evac is None:
                evac = self._new(req)
                if evac is None:
                    return ExitCode.OK if req.plan_only else ExitCode.WAITING
            else:
                if req.with_database and not evac.with_database:
                    raise MoveError(ExitCode.USAGE, f"the evacuation of {req.server} in progress was planned without "
                                    "the databases: --with-database cannot change it",
                                    f"continue it with `strackt-move evacuate {req.server}`, or stop it "
                                    f"(`evacuate {req.server} --abort`) and plan it again with --with-database")
                self.out(f"== continuing the evacuation of {evac.server} started {evac.started_at} "
                         f"({len(evac.moves)} envs, {evac.parallel} at once"
                         + (", with their databases" if evac.with_database else "") + ")")
                self._check_approved(evac, req)
                if req.plan_only:
                    self._show(evac)
                    return ExitCode.OK
            return self._drive(evac)
        finally:
            lock.release()

    def abort(self, server: str, rollback: bool) -> ExitCode:
        """Ask the running evacuation to stop (or stop it here, if none runs): no new move starts,
        preparations stop at a safe point, a switch-over under way completes; with ``rollback``
        every move not switched is rolled back. Every env ends up served by exactly one server."""
        evac = self.evacs.load(server)
        if evac is None:
            raise MoveError(ExitCode.NO_MOVE, f"no evacuation of {server} is in progress",
                            "`strackt-move status` shows the moves in progress")
        self.evacs.request_abort(server, rollback)
        self.out(f"== aborting the evacuation of {server}" + (" and rolling back what is not switched" if rollback else ""))
        lock = self.evacs.lock(server, f"evacuate {server} --abort")
        try:
            lock.acquire(timeout=self.stop_grace_s + 60)
        except locks.LockBusy:
            raise MoveError(ExitCode.BUSY, f"the evacuation of {server} did not stop within "
                            f"{human_duration(self.stop_grace_s + 60)}",
                            f"`strackt-move status --server {server}`, then `evacuate {server} --abort` again") from None
        try:
            evac = self.evacs.load(server)
            if evac is None:  # the running evacuation saw the request and ended it
                return ExitCode.OK
            return self._drive(evac)  # nobody drove it: do the abort here
        finally:
            lock.release()

    # -------------------------------------------------------------- planning

    def plan(self, server: str, targets: list[str], with_database: bool = False) -> dict[str, Any]:
        self.out(f"== planning the evacuation of {server}" + (" with the databases" if with_database else ""))
        extravars: dict[str, Any] = {"server": server}
        if targets:
            extravars["targets"] = list(targets)
        if with_database:
            extravars["with_database"] = True
        result = self.runner(PlayRequest(env=f"evacuation-{server}", name="evacuation_plan",
                                         playbook=PLAN_PLAYBOOK, extravars=extravars),
                             lambda _event: None, self.stop.is_set)
        if not result.ok:
            problems = "; ".join(result.failures) or f"the plan playbook ended {result.status}"
            raise MoveError(ExitCode.REFUSED, f"cannot plan the evacuation of {server}: {problems}",
                            "fix what is named and run it again; nothing was changed")
        plan = result.artifact_data.get("evacuation_plan")
        if not isinstance(plan, dict):
            raise MoveError(ExitCode.FAILED, "the plan playbook published no plan", "report this as a bug")
        return plan

    def _new(self, req: EvacuationRequest) -> Evacuation | None:
        plan = self.plan(req.server, req.targets, req.with_database)
        # the database fields only as planned with the databases (a plan without says nothing of them)
        moves = [PlannedMove(p["env"], p["target"], int(p.get("data_bytes", 0)), int(p.get("memory_mb", 0)),
                             with_database=req.with_database and bool(p.get("with_database")),
                             database_bytes=int(p.get("database_bytes") or 0) if req.with_database else 0,
                             database_stays=req.with_database and bool(p.get("database_stays")),
                             left_behind=[str(what) for what in p.get("left_behind") or []])
                 for p in plan.get("placed", [])]
        evac = Evacuation(server=req.server, started_at=clock.format_ts(self.now()), targets=list(plan["targets"]),
                          parallel=req.parallel, confirm=req.confirm, moves=moves, unplaced=plan.get("unplaced", []),
                          with_database=req.with_database)
        self._show(evac)
        if evac.unplaced:
            raise MoveError(ExitCode.REFUSED,
                            "no room for " + "; ".join(f"{u['env']} ({'; '.join(u['reasons'])})" for u in evac.unplaced),
                            "free room on a target, add targets with --to, or move those envs first; nothing was changed")
        if req.with_database and not any(m.with_database for m in moves):
            stays = [m.env for m in moves if m.database_stays]
            raise MoveError(ExitCode.USAGE,
                            f"--with-database: no env of {req.server} has a PostgreSQL database running on {req.server}, "
                            "so no database would move" + (f" ({', '.join(stays)}: not PostgreSQL, it stays)" if stays else ""),
                            f"`strackt-move evacuate {req.server}` without --with-database; nothing was changed")
        self._check_approved(evac, req)
        busy = [f"{m.env} ({rec.move_id}, {rec.stage})" for m in moves if (rec := self.store.load(m.env)) is not None]
        if busy:
            raise MoveError(ExitCode.WRONG_STATE, "envs with a move in progress: " + ", ".join(busy),
                            "finish or roll back those moves first; nothing was changed")
        if req.plan_only:
            return None
        if req.confirm == "plan" and not req.yes:
            question = (f"evacuate {req.server}: move {len(moves)} env(s) as planned, {req.parallel} "
                        "preparation(s) at once, switch-overs one at a time? [y/N] ")
            if self.ask is None:
                raise MoveError(ExitCode.USAGE, "the plan needs a confirmation and stdin is not a terminal",
                                f"run `strackt-move evacuate {req.server} --yes` (or --confirm each)")
            if self.ask(question).strip().lower() not in ("y", "yes"):
                self.out("not confirmed; nothing was changed")
                return None
        self.evacs.save(evac)
        return evac

    def _check_approved(self, evac: Evacuation, req: EvacuationRequest) -> None:
        if req.approved is None:
            return
        differences = plan_differences(evac.moves, req.approved, evac.server)
        if differences:
            raise MoveError(ExitCode.REFUSED, "the plan changed since it was approved: " + "; ".join(differences),
                            f"plan the evacuation of {evac.server} again and approve that plan; nothing was changed")

    def _show(self, evac: Evacuation) -> None:
        self.out(f"evacuation of {evac.server} to {', '.join(evac.targets)}:")
        width = max([len(m.env) for m in evac.moves] + [3])
        for m in evac.moves:
            database = (f", its database {m.database_bytes / MIB:.1f} MiB with it" if m.with_database else
                        f", its database stays on {evac.server}" if m.database_stays else "")
            self.out(f"  {m.env.ljust(width)}  → {m.target}  ({m.data_bytes / MIB:.1f} MiB data, "
                     f"{m.memory_mb} MiB memory{database})")
        for u in evac.unplaced:
            self.out(f"  {u['env'].ljust(width)}  → nowhere: {'; '.join(u['reasons'])}")
        for warning in evac.warnings:
            self.out(f"  warning: {warning}")

    # -------------------------------------------------------------- driving

    def _log(self, evac: Evacuation, env: str) -> Path:
        return self.evacs.directory / f"{evac.server}-logs" / f"{env}.log"

    def _busy_elsewhere(self, env: str) -> bool:
        return locks.is_locked(locks.controller_lock(self.settings.locks_dir, env, "").path)

    def _may_switch(self, evac: Evacuation) -> Callable[[str], bool]:
        def may(env: str) -> bool:
            if evac.confirm == "plan":
                return True
            if env in self._declined or self.ask is None:
                return False
            m = evac.move_of(env)
            if self.ask(f"switch over {env} to {m.target} now? [y/N] ").strip().lower() in ("y", "yes"):
                return True
            self._declined.add(env)
            self.out(f"[{env}] not confirmed: it keeps waiting at the gate (`strackt-move confirm {env}` later)")
            return False

        return may

    def _drive(self, evac: Evacuation) -> ExitCode:
        running: dict[str, _Running] = {}
        tails = {m.env: _LogTail(self._log(evac, m.env)) for m in evac.moves}
        for tail in tails.values():  # show only what this run adds
            tail.offset = tail.path.stat().st_size if tail.path.exists() else 0
        began = time.monotonic()
        may_switch = self._may_switch(evac)
        aborting: dict[str, Any] | None = None
        told_finish_wait = False
        while True:
            self._show_output(tails)
            self._reap(running)
            phases = self._phases(evac)
            aborting = aborting or self.evacs.abort_requested(evac.server)
            if self.stop.is_set() and aborting is None:
                self._stop_children(running, "interrupted")
                self.out(f"== evacuation of {evac.server} interrupted; `strackt-move evacuate {evac.server}` continues it")
                return ExitCode.INTERRUPTED
            busy = set(running) | {m.env for m in evac.moves if m.env not in running and self._busy_elsewhere(m.env)}
            if aborting is not None:
                actions = self._abort_actions(evac, phases, busy, running, bool(aborting.get("rollback")))
            else:
                actions = next_actions(evac.moves, phases, busy, evac.parallel, may_switch, frozenset(self._held),
                                       self._finish_due)
            for action in actions:
                self.out(f"[{action.env}] {action.kind}: strackt-move {' '.join(action.argv)}")
                running[action.env] = _Running(action, self.spawn(action.argv, self._log(evac, action.env)),
                                               time.monotonic())
            # a switched env whose finish is not due yet (resolvers' caches) is waited for here
            finish_later = aborting is None and any(phases[m.env] is Phase.SWITCHED and m.env not in self._held
                                                    for m in evac.moves)
            if not running and not actions and not busy and not finish_later:
                return self._end(evac, phases, time.monotonic() - began, aborting is not None)
            if not running and not actions and not busy and not told_finish_wait:
                self._tell_finish_wait(evac, phases)
                told_finish_wait = True
            if self.stop.is_set():  # aborting after a signal: keep polling at the same pace
                time.sleep(self.poll_s)
            else:
                self.stop.wait(self.poll_s)

    def _abort_actions(self, evac: Evacuation, phases: dict[str, Phase], busy: set[str],
                       running: dict[str, _Running], rollback: bool) -> list[Action]:
        """No new move; preparations stop at a safe point (SIGTERM: the move records its stop);
        a switch-over under way completes and finishes (finishes wait for it, as always); with
        ``rollback``, what is not switched goes back."""
        for env, r in running.items():
            if r.action.kind in ("start", "resume") and not r.signalled:
                r.child.send_signal(signal.SIGTERM)
                r.signalled = True
        actions: list[Action] = []
        final_running = final_phase_running(evac.moves, phases, busy)
        for m in evac.moves:
            if m.env in busy or m.env in self._held:
                continue
            if phases[m.env] is Phase.SWITCHED:
                # only a due finish: one not due returns at once, and asking again every poll
                # would spawn a controller a second for hours (the abort leaves it to `finish --due`)
                if not final_running and self._finish_due(m.env):
                    actions.append(Action("finish", m.env, ("resume", m.env)))
            elif rollback and phases[m.env] in (Phase.PREPARING, Phase.FAILED, Phase.READY):
                actions.append(Action("rollback", m.env, ("rollback", m.env)))
        return actions

    def _tell_finish_wait(self, evac: Evacuation, phases: dict[str, Phase]) -> None:
        """Only finishes are left (the forwarding rule may keep them an hour or more): say so, and
        that leaving now loses nothing."""
        pending = []
        for m in evac.moves:
            rec = self.store.load(m.env) if phases[m.env] is Phase.SWITCHED else None
            if rec is not None:
                when = finish_not_before(rec)
                pending.append(f"{m.env} (not before {clock.format_ts(when)})" if when else m.env)
        self.out(f"== every env left to move serves from its new server; waiting for the finishes: {', '.join(pending)}")
        self.out(f"   Ctrl-C is safe: the old server forwards meanwhile; `strackt-move evacuate {evac.server}` or the "
                 f"`strackt-move finish --due` timer ends them later")

    def _finish_due(self, env: str) -> bool:
        rec = self.store.load(env)
        not_before = finish_not_before(rec) if rec is not None else None
        return not_before is None or not_before <= self.now()

    def _phases(self, evac: Evacuation) -> dict[str, Phase]:
        phases: dict[str, Phase] = {}
        learned = False
        for m in evac.moves:
            ph, rec = phase(self.store, m)
            if m.move_id is None and rec is not None and ph is not Phase.PENDING:
                m.move_id = rec.move_id  # this evacuation's move of the env: remember it
                learned = True
            phases[m.env] = ph
        if learned:
            self.evacs.save(evac)
        return phases

    def _reap(self, running: dict[str, _Running]) -> None:
        for env, r in list(running.items()):
            rc = r.child.poll()
            if rc is None:
                continue
            del running[env]
            took = human_duration(time.monotonic() - r.began)
            meaning = {0: "ok", 4: "waiting for confirmation", 8: "stopped"}.get(rc, f"exit {rc}")
            self.out(f"[{env}] {r.action.kind} ended after {took}: {meaning}")
            if rc not in (0, 4, 8):  # the move (its record, its log) says why; the operator decides
                self._held[env] = f"{r.action.kind} exited {rc}"

    def _stop_children(self, running: dict[str, _Running], why: str) -> None:
        for r in running.values():
            if r.action.kind != "confirm":  # a switch-over is never cut short
                r.child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for env, r in running.items():
            try:
                r.child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out(f"[{env}] still running after {human_duration(self.stop_grace_s)} ({why}); "
                         f"`strackt-move status {env}` shows it")

    def _show_output(self, tails: dict[str, _LogTail]) -> None:
        for env, tail in tails.items():
            for line in tail.lines():
                self.out(f"[{env}] {line}")

    def _end(self, evac: Evacuation, phases: dict[str, Phase], took_s: float, aborted: bool) -> ExitCode:
        self.out(f"== evacuation of {evac.server}: " + ", ".join(f"{m.env} {phases[m.env].value}" for m in evac.moves)
                 + f" ({human_duration(took_s)} this run)")
        if all(phases[m.env] in FINAL_PHASES for m in evac.moves) or aborted:
            evac.state = "aborted" if aborted else "done"
            evac.finished_at = clock.format_ts(self.now())
            self.evacs.save(evac)
            where = self.evacs.archive(evac)
            self.out(f"   record: {where}")
        if aborted:
            switched = [m.env for m in evac.moves if phases[m.env] is Phase.SWITCHED]
            if switched:
                self.out(f"   switched, the old server forwarding until stale traffic is gone: {', '.join(switched)} "
                         f"(`strackt-move finish ENV --wait`, or the `finish --due` timer, ends them)")
            return ExitCode.INTERRUPTED
        if all(phases[m.env] is Phase.DONE for m in evac.moves):
            stays = [m.env for m in evac.moves if m.stays_behind]
            if stays:
                self.out(f"== every env serves from its new server; {evac.server} still runs what {', '.join(stays)} "
                         f"connect{'s' if len(stays) == 1 else ''} to: do not switch it off yet")
                for warning in evac.warnings:
                    self.out(f"   warning: {warning}")
            else:
                self.out(f"== {evac.server} is empty: every env serves from its new server")
            return ExitCode.OK
        waiting = [m.env for m in evac.moves if phases[m.env] is Phase.READY]
        failed = [m.env for m in evac.moves
                  if m.env in self._held or phases[m.env] not in (Phase.DONE, Phase.READY)]
        if failed:
            raise MoveError(ExitCode.FAILED, f"the moves of {', '.join(failed)} did not complete",
                            f"`strackt-move status ENV`, then `strackt-move resume ENV` or `rollback ENV`; "
                            f"`strackt-move evacuate {evac.server}` continues with the rest")
        self.out(f"   waiting for confirmation: {', '.join(waiting)}")
        return ExitCode.WAITING


def evacuation_rows(evacs: EvacuationStore, store: RecordStore, server: str) -> list[dict[str, Any]]:
    """``status --server``: every env of the evacuation of ``server`` with its phase and move."""
    evac = evacs.load(server)
    if evac is None:
        return []
    rows = []
    for m in evac.moves:
        ph, rec = phase(store, m)
        rows.append({"env": m.env, "target": m.target, "phase": ph.value,
                     "with_database": m.with_database, "database_stays": m.database_stays,
                     "move_id": rec.move_id if rec is not None else m.move_id,
                     "stage": rec.stage if rec is not None else None,
                     "state": rec.state if rec is not None else None})
    return rows
