"""start / resume / confirm / rollback: the stages, one playbook run after another.

The record decides what runs next (``stages.next_step``); this module runs it, keeps the
controller lock for the whole command, shows progress, and turns outcomes into exit codes.
The operator's confirmation lives here, between playbook runs (never a ``pause`` in a playbook).

The stage roles record their own events (started, completed, failed; the cutover and rollback
roles the operator's choice too): this module never moves the record's stage. It records only
what no playbook can: that a run died without its role recording an end (``mark_run_died``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import clock, move_status

from strackt_move import gate, locks, stages
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlaybookRunner, PlayRequest, PlayResult, latest_result
from strackt_move.progress import Emit, ProgressView, format_pass
from strackt_move.settings import Settings
from strackt_move.stages import Kind
from strackt_move.store import MoveRecord, RecordStore
from strackt_move.units import human_duration

Ask = Callable[[str], str]

#: how long a command waits for a sync loop's pass to end before it takes the controller lock
LOOP_PASS_WAIT_S = 600.0
#: a waiting finish looks again after at least / at most this long
FINISH_POLL_MIN_S = 5.0
FINISH_POLL_MAX_S = 300.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Sequencer:
    settings: Settings
    store: RecordStore
    runner: PlaybookRunner
    out: Emit
    stop: threading.Event = field(default_factory=threading.Event)  # set by SIGINT/SIGTERM
    now: Callable[[], datetime] = _utcnow
    stale_after_s: float = move_status.DEFAULT_WAIT_WARN_S
    verbose: bool = False
    loop_pass_wait_s: float = LOOP_PASS_WAIT_S
    _artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    wait: Callable[[float], bool] | None = None  # sleeps; True if interrupted (default: stop.wait)
    #: ``finish --wait`` / ``confirm --wait``: look again until the move is finished
    finish_wait: bool = False
    #: ``finish --now``: the operator's word, whatever stale traffic still arrives
    finish_now: bool = False
    #: between two looks of a waiting finish: at least / at most (a new stale request moves the next look)
    finish_poll_min_s: float = FINISH_POLL_MIN_S
    finish_poll_max_s: float = FINISH_POLL_MAX_S
    _lock: locks.FileLock | None = None

    # ------------------------------------------------------------------ commands

    def start(self, env: str, target: str, move_database: bool | None = None) -> ExitCode:
        with self._controller_lock(env, f"start {env} --target {target}"):
            rec = self.store.load(env)
            if rec is not None:
                if rec.target != target:
                    raise MoveError(
                        ExitCode.WRONG_STATE,
                        f"a move of {env} to {rec.target} is already in progress ({rec.move_id}, stage"
                        f" {rec.stage}, {rec.state}); it cannot also go to {target}",
                        f"finish it with `strackt-move resume {env}` or undo it with `strackt-move rollback {env}`",
                    )
                self.out(f"a move of {env} to {target} is already in progress ({rec.move_id}); continuing it")
                return self._drive(env, rec.move_id)
            self.out(f"== moving {env} to {target}")
            # the wish is asked for once: preflight keeps it in the record for every later stage
            extra = (("move_database", move_database),) if move_database is not None else ()
            # preflight creates the record; the stages after it run in the same ansible-playbook
            stage, result = self._run_stages(env, stages.chain_from("preflight"), None, target=target, extra=extra)
            rec = self.store.load(env)
            if not result.ok:
                return self._stage_failed(env, stage, result, rec)
            if rec is None:
                raise MoveError(
                    ExitCode.FAILED,
                    "preflight succeeded but wrote no move record "
                    f"(none at {self.store.where(env)})",
                    "check that the preflight role creates the record (move_record action=create)",
                )
            return self._drive(env, rec.move_id, ran=stages.chain_from("preflight"))

    def resume(self, env: str) -> ExitCode:
        rec = self.store.require(env, "resume")
        with self._controller_lock(env, f"resume {env}"):
            rec = self.store.require(env, "resume")
            step = stages.next_step(rec)
            self.out(f"== resuming {rec.move_id} ({rec.source} → {rec.target}): {step.why}")
            return self._drive(env, rec.move_id)

    def confirm(self, env: str, yes: bool, ask: Ask | None, finish: bool = False) -> ExitCode:
        """Switch over; return once switched (``finish``: then finish as ``finish --wait`` does)."""
        rec = self.store.require(env, "confirm")
        self._refuse_if_being_switched(rec)
        self._require_gate(rec)
        for line in self.gate_summary(rec).lines():
            self.out(line)
        if not yes:
            if ask is None:
                raise MoveError(ExitCode.USAGE, "confirm needs an answer and stdin is not a terminal",
                                f"run `strackt-move confirm {env} --yes` to confirm without a prompt")
            answer = ask(f"switch over {env} to {rec.target}? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                self.out(f"not confirmed; {env} stays on {rec.source}, the move keeps waiting")
                return ExitCode.WAITING
        with self._controller_lock(env, f"confirm {env}"):
            rec = self.store.require(env, "confirm")
            self._require_gate(rec)  # still waiting, now that we hold the lock
            # the confirmation is the cutover run itself: its role records the cutover's start
            return self._run_then_drive(env, rec, "cutover", finish=finish)

    def finish(self, env: str) -> ExitCode:
        """Finish a switched move if stale traffic is gone (``finish_wait``: look again until it is)."""
        rec = self.store.require(env, "finish")
        with self._controller_lock(env, f"finish {env}"):
            rec = self.store.require(env, "finish")
            if rec.stage != "switched":
                raise MoveError(ExitCode.WRONG_STATE,
                                f"the move {rec.move_id} is at stage {rec.stage} ({rec.state}), not switched: only a "
                                "switched move can be finished",
                                f"`strackt-move resume {env}` continues it, `strackt-move status {env}` shows it")
            return self._drive(env, rec.move_id)

    def finish_due(self) -> ExitCode:
        """One finish look at every switched move whose finish is due (a systemd timer's command);
        a move someone else drives is left to them."""
        worst = ExitCode.OK
        for env, rec, _err in self.store.iter_active():
            if rec is None or rec.stage != "switched":
                continue
            not_before = stages.finish_not_before(rec, self.now())
            if not_before is not None and not_before > self.now():
                self.out(f"{env}: not due before {clock.format_ts(not_before)}")
                continue
            try:
                code = self.finish(env)
            except MoveError as err:
                self.out(f"{env}: {err.problem}; next: {err.next_step}")
                code = err.code
            finally:
                self._release_lock()
            if code not in (ExitCode.OK,):
                worst = code
        return worst

    def rollback(self, env: str) -> ExitCode:
        rec = self.store.require(env, "roll back")
        with self._controller_lock(env, f"rollback {env}"):
            rec = self.store.require(env, "roll back")
            self.out(f"== rolling back {rec.move_id}: {env} stays on / returns to {rec.source}")
            # the rollback role records the rollback's start (and refuses what it cannot undo)
            return self._run_then_drive(env, rec, "rollback")

    # ------------------------------------------------------------------ the gate

    def gate_summary(self, rec: MoveRecord) -> gate.GateSummary:
        artifacts = self._artifacts.get("verify")
        if artifacts is None:
            saved = latest_result(self.settings.runs_dir, rec.env, "verify")
            artifacts = (saved or {}).get("artifact_data") or {}
        return gate.summarize(rec, self.now(), artifacts, self.stale_after_s)

    def _refuse_if_being_switched(self, rec: MoveRecord) -> None:
        """A second operator confirming while the first one's switch-over runs: say who drives it
        (not "resume", which would only be refused too)."""
        if rec.stage not in ("cutover", "switched"):
            return
        path = locks.controller_lock(self.settings.locks_dir, rec.env, "").path
        holder = locks.read_holder(path) if locks.is_locked(path) else None
        if holder is not None:
            raise MoveError(ExitCode.BUSY,
                            f"the move {rec.move_id} was already confirmed and is being switched over by "
                            f"{holder.describe()}",
                            f"wait for it to finish; `strackt-move status {rec.env}` shows the move")

    def _require_gate(self, rec: MoveRecord) -> None:
        if rec.stage == "awaiting_confirmation" and rec.state == "waiting":
            return
        if rec.stage in ("cutover", "switched"):
            raise MoveError(ExitCode.WRONG_STATE,
                            f"the move {rec.move_id} was already confirmed (stage {rec.stage}, {rec.state})",
                            f"`strackt-move resume {rec.env}` finishes the cutover")
        raise MoveError(
            ExitCode.WRONG_STATE,
            f"refusing to switch over {rec.env}: the move {rec.move_id} is at stage {rec.stage} ({rec.state}),"
            " not verified and waiting for confirmation",
            f"`strackt-move resume {rec.env}` continues to the confirmation gate",
        )

    # ------------------------------------------------------------------ driving

    def _run_then_drive(self, env: str, rec: MoveRecord, stage: str, finish: bool = True) -> ExitCode:
        """Run ``stage`` (the operator's choice: cutover or rollback) once, then go on from
        whatever its role recorded."""
        if self.stop.is_set():
            return self._interrupted(env, stage)
        result = self._run_stage(env, stage, rec, target=rec.target, confirm=stage == "cutover")
        if not result.ok:
            return self._stage_failed(env, stage, result, self.store.find(env, rec.move_id))
        after = self.store.find(env, rec.move_id)
        if after is not None and after.history == rec.history:
            raise MoveError(
                ExitCode.FAILED,
                f"the {stage} playbook ran successfully but the record did not move on (stage {after.stage},"
                f" {after.state}): its role recorded nothing",
                f"check the record writes of the {stage} role; `strackt-move status {env}`",
            )
        return self._drive(env, rec.move_id, finish=finish)

    def _drive(self, env: str, move_id: str, finish: bool = True, ran: tuple[str, ...] = ()) -> ExitCode:
        """Run stages until the gate, the end, a failure or an interruption. ``finish=False``
        stops at a switched move (the old server keeps forwarding; ``resume`` finishes)."""
        runs: dict[str, int] = {name: 1 for name in ran}  # the stages this command ran already
        while True:
            rec = self.store.find(env, move_id)
            if rec is None:
                raise MoveError(ExitCode.FAILED, f"the record of {move_id} disappeared",
                                f"`strackt-move list` and the history of {env} (`strackt-move report {env}`)")
            step = stages.next_step(rec)
            if step.kind is Kind.DONE:
                self.out(f"== done: {env} runs on {rec.target} ({rec.move_id})")
                return ExitCode.OK
            if step.kind is Kind.ROLLED_BACK:
                self.out(f"== rolled back: {env} runs on {rec.source} ({rec.move_id})")
                for backup in rec.backups:  # what a pass replaced or deleted there, kept until removed
                    self.out(f"   kept: {backup.server}:{backup.path} (what the move's passes replaced or deleted "
                             f"there; remove it when you no longer need it)")
                return ExitCode.OK
            if step.kind is Kind.GATE:
                for line in self.gate_summary(rec).lines():
                    self.out(line)
                self.out(f"next: `strackt-move confirm {env}` to switch over, or `strackt-move rollback {env}`")
                return ExitCode.WAITING
            assert step.stage is not None
            stage = step.stage
            runs[stage] = runs.get(stage, 0) + 1
            if stage == "finish":
                looked = self._finish_once(env, rec, finish, runs[stage])
                if looked is not None:
                    return looked
                continue
            if runs[stage] > 1:
                raise MoveError(
                    ExitCode.FAILED,
                    f"stage {stage} ran successfully but the record did not move on "
                    f"(stage {rec.stage}, {rec.state})",
                    f"check the record writes of the {stage} playbook; `strackt-move status {env}`",
                )
            if self.stop.is_set():
                return self._interrupted(env, stage)
            names = stages.chain_from(stage)
            for name in names[1:]:
                runs[name] = runs.get(name, 0) + 1
            reached, result = self._run_stages(env, names, rec, target=rec.target, confirm=stage == "cutover")
            if not result.ok:
                return self._stage_failed(env, reached, result, self.store.find(env, move_id))

    def _run_stage(self, env: str, stage: str, rec: MoveRecord | None, target: str | None = None,
                   confirm: bool = False, extra: tuple[tuple[str, Any], ...] = ()) -> PlayResult:
        return self._run_stages(env, (stage,), rec, target, confirm, extra)[1]

    def _run_stages(self, env: str, names: tuple[str, ...], rec: MoveRecord | None, target: str | None = None,
                    confirm: bool = False, extra: tuple[tuple[str, Any], ...] = ()) -> tuple[str, PlayResult]:
        """Run ``names`` (one stage, or several in one ansible-playbook: ``stages.chain_from``);
        return the stage the run was in when it ended, and its result."""
        plays = [stages.play_for(name) for name in names]
        passes = [p.to_dict() for p in rec.sync_passes] if rec is not None else []
        move_id = rec.move_id if rec is not None else None
        shown = _StageLines(self.out, self.store, env, move_id, len(passes), chained=len(names) > 1)
        view = ProgressView(stage=names[0], emit=self.out, on_stage=lambda stage: shown.begin(stage, view),
                            previous_pass=passes[-1] if passes else None, passes_seen=len(passes),
                            verbose=self.verbose)
        chain = tuple((name, play.playbook) for name, play in zip(names, plays)) if len(names) > 1 else ()
        request = PlayRequest(
            env=env,
            name=names[0] if not chain else stages.chain_name(names),
            playbook=plays[0].playbook,
            extravars=stages.extravars(env, self.settings.state_dir, target=target, confirm=confirm,
                                       resume=rec is not None, extra=plays[0].extravars + extra),
            chain=chain,
        )
        if not chain:
            shown.begin(names[0], view)
        if self._lock is not None:
            tracker = locks.ChildTracker(self._lock, view)
            try:
                result = self.runner(request, tracker, self.stop.is_set)
            finally:
                tracker.done()
        else:
            result = self.runner(request, view, self.stop.is_set)
        stage = shown.stage or names[0]
        for name in names[:names.index(stage) + 1]:
            self._artifacts[name] = result.artifact_data
        shown.end(result, view)
        return stage, result

    def _finish_once(self, env: str, rec: MoveRecord, finish: bool, look: int) -> ExitCode | None:
        """One look at a switched move: run the finish playbook when it may be due (it measures the
        stale traffic and finishes only when the forwarding rule says so). None: the move moved on
        (the drive loop goes on); an exit code: stop here."""
        if look == 1:
            self.out(f"== switched: {env} serves from {rec.target}; {rec.source} forwards stale traffic to it")
        if not finish:
            self._say_what_next(env, rec)
            return ExitCode.OK
        if self.finish_now:
            # --now overrides the stale-traffic window, never the DNS hold: until it ends a
            # resolver may still hand out the old address, and ending the forwarding would fail
            # those requests. It is short (the move's low TTL) and known: wait it out, then finish.
            dns_until = move_status.dns_caches_expire_at(rec)
            if dns_until is not None and dns_until > self.now():
                self.out(f"   --now: resolvers' caches of the old address may hold it until "
                         f"{clock.format_ts(dns_until)}; finishing then")
                return ExitCode.INTERRUPTED if self._sleep_until(env, dns_until) else None
        not_before = None if self.finish_now else stages.finish_not_before(rec, self.now())
        if not_before is not None and not_before > self.now():
            if not self.finish_wait:
                decision = move_status.finish_decision(rec, self.now())
                self.out(f"   not finishing yet: {decision.why if decision else ''}")
                self._say_what_next(env, rec)
                return ExitCode.OK
            if self._sleep_until(env, not_before):
                return ExitCode.INTERRUPTED
            return None
        result = self._run_stage(env, "finish", rec, target=rec.target,
                                 extra=(("finish_now", True),) if self.finish_now else ())
        if not result.ok:
            return self._stage_failed(env, "finish", result, self.store.find(env, rec.move_id))
        after = self.store.find(env, rec.move_id)
        if after is None or after.stage != "switched":
            return None
        why = str(result.artifact_data.get("finish_why") or "")
        self.out(f"   not finished yet: {why or 'the finish did not end the move'}")
        if after.stale is None and after.history == rec.history:
            raise MoveError(ExitCode.FAILED, "the finish playbook ran but recorded no stale-traffic measurement",
                            f"check the finish role's record writes; `strackt-move status {env}`")
        if not self.finish_wait:
            self._say_what_next(env, after)
            return ExitCode.OK
        next_look = stages.finish_not_before(after, self.now())
        if self._sleep_until(env, next_look):
            return ExitCode.INTERRUPTED
        return None

    def _sleep_until(self, env: str, when: datetime | None) -> bool:
        """Sleep until ``when`` (within the poll bounds); True if interrupted."""
        remaining = (when - self.now()).total_seconds() if when is not None else 0.0
        remaining = min(max(remaining, self.finish_poll_min_s), self.finish_poll_max_s)
        # the same command goes on: --now must not turn into --wait (which honours the window)
        again = f"strackt-move finish {env} " + ("--now" if self.finish_now else "--wait")
        self.out(f"   looking again in {human_duration(remaining)}; Ctrl-C is safe (the old server keeps "
                 f"forwarding), `{again}` continues")
        # the wait may last hours: a rollback, status-changing command or timer meanwhile is not
        # refused as busy; whoever took the move over meanwhile keeps it
        lock = self._lock
        if lock is not None:
            lock.release()
        if (self.wait or self.stop.wait)(remaining):
            self.out(f"interrupted while waiting; `{again}` finishes the move when it is due")
            return True
        if lock is not None:
            try:
                lock.acquire(timeout=0)
            except locks.LockBusy as busy:
                who = busy.holder.describe() if busy.holder else "another process"
                raise MoveError(ExitCode.BUSY, f"while this finish waited, {who} took the move of {env} over",
                                f"`strackt-move status {env}` shows the move") from None
        return False

    def _say_what_next(self, env: str, rec: MoveRecord) -> None:
        decision = move_status.finish_decision(rec, self.now())
        when = ""
        if decision is not None and decision.not_before is not None:
            when = f" (not before {clock.format_ts(decision.not_before)})"
        self.out(f"next: the move finishes once no stale request reaches {rec.source} for the env's quiet window "
                 f"(forwarding.quiet, default 15 min) after forwarding.min (default 1 h), at the latest after "
                 f"forwarding.max (default 72 h){when}: `strackt-move finish {env} --wait` (or a timer running "
                 f"`strackt-move finish --due`, or an AWX schedule on finish.yml) finishes it; `--now` ends the "
                 f"forwarding now; `strackt-move status {env}` shows the stale traffic; "
                 f"`strackt-move rollback {env}` still goes back")

    def _stage_failed(self, env: str, stage: str, result: PlayResult, rec: MoveRecord | None) -> ExitCode:
        if result.canceled or self.stop.is_set():
            return self._interrupted(env, stage)
        reason = "; ".join(result.failures[-3:]) or f"{stage} playbook ended with rc {result.rc} ({result.status})"
        if rec is not None and not rec.finished:
            self.store.mark_run_died(env, stage, reason)
        runs = f" (runner artifacts: {result.private_data_dir})" if result.private_data_dir else ""
        if stage == "preflight":
            nxt = (f"fix what preflight names, then `strackt-move resume {env}`"
                   if rec is not None else "fix what preflight names, then run the same `strackt-move start` again")
            raise MoveError(ExitCode.REFUSED, f"preflight refused the move of {env}: {reason}{runs}",
                            nxt + "; nothing was changed on the servers")
        if stage == "cutover" and rec is not None and rec.stage == "rolled_back":
            raise MoveError(ExitCode.FAILED,
                            f"the switch-over of {env} failed and was rolled back automatically: {env} serves "
                            f"from {rec.source} again ({rec.move_id} archived as rolled_back): {reason}{runs}",
                            f"fix the cause, then `strackt-move start {env} --target {rec.target}`")
        if stage == "cutover" and rec is not None and rec.stage == "awaiting_confirmation":
            raise MoveError(ExitCode.FAILED, f"the switch-over of {env} did not begin: {reason}{runs}",
                            f"nothing was switched and the move still waits; fix the cause, then "
                            f"`strackt-move confirm {env}` (or `strackt-move rollback {env}`)")
        if stage == "cutover":
            nxt = (f"`strackt-move resume {env}` retries the cutover (it is idempotent), "
                   f"or `strackt-move rollback {env}` returns to the source")
        elif stage == "finish":
            nxt = (f"the switch-over stands ({env} serves from the target); fix the cause, then "
                   f"`strackt-move resume {env}` finishes")
        elif stage == "rollback":
            nxt = f"fix the cause, then `strackt-move rollback {env}` again (it is idempotent)"
        else:
            nxt = f"fix the cause, then `strackt-move resume {env}` (retries {stage}), or `strackt-move rollback {env}`"
        raise MoveError(ExitCode.FAILED, f"stage {stage} of {env} failed: {reason}{runs}", nxt)

    def _interrupted(self, env: str, stage: str) -> ExitCode:
        after = self.store.mark_run_died(env, stage, "interrupted by a signal; resume continues")
        if after is not None and stage in ("cutover", "rollback") and after.stage not in (stage, "switched"):
            # the operator's choice never began: it is theirs to make again, not resume's
            again = "confirm" if stage == "cutover" else "rollback"
            self.out(f"interrupted before the {stage} began; nothing changed: `strackt-move {again} {env}` again")
        else:
            self.out(f"interrupted during {stage}; `strackt-move resume {env}` continues from there")
        return ExitCode.INTERRUPTED

    # ------------------------------------------------------------------ locking

    def _controller_lock(self, env: str, command: str) -> locks.FileLock:
        """The controller lock, taken now. A sync loop's pass is waited for; another controller
        is refused."""
        lock = locks.controller_lock(self.settings.locks_dir, env, command)
        try:
            lock.acquire(timeout=0)
        except locks.LockBusy as busy:
            if busy.holder is None or busy.holder.role != "sync-loop":
                raise _busy(env, busy) from None
            self.out(f"waiting for the sync loop's current pass to finish ({busy.holder.describe()})")
            try:
                lock.acquire(timeout=self.loop_pass_wait_s)
            except locks.LockBusy as busy_again:
                raise _busy(env, busy_again) from None
        locks.reap_orphan(lock.previous, self.out)
        self._lock = lock
        return lock

    def _release_lock(self) -> None:
        self._lock = None


@dataclass
class _StageLines:
    """What an operator sees of each stage of a run: its header, its passes, how it ended. A
    chain's stage ends when the next one's marker arrives, in ansible-runner's event callback."""

    out: Emit
    store: RecordStore
    env: str
    move_id: str | None
    passes_before: int  # the record's passes when the stage began
    chained: bool = False
    stage: str | None = None
    began: float = field(default_factory=time.monotonic)

    def begin(self, stage: str, view: ProgressView) -> None:
        if self.stage is not None:  # a chain moves on: the stage before ended well
            try:
                self._ok(view, {})
            except Exception as exc:  # noqa: BLE001 - a line's figures never end the run they describe
                self.out(f"   {self.stage} ok (its figures could not be read: {exc})")
        self.stage, self.began = stage, time.monotonic()
        view.passes.clear()
        view.stats.clear()
        view.passes_seen = self.passes_before
        number = stages.MOVE_STAGES.index(stage) + 1 if stage in stages.MOVE_STAGES else None
        label = f"[{number}/{len(stages.MOVE_STAGES)}] " if number else ""
        self.out(f"== {label}{stage} ({stages.play_for(stage).playbook})")

    def end(self, result: PlayResult, view: ProgressView) -> None:
        took = human_duration(time.monotonic() - self.began)
        if self.stage is None:  # a chain that ended before its first marker: a playbook that does not parse, ...
            word = "interrupted" if result.canceled else "FAILED"
            self.out(f"   the run {word} before its first stage began, after {took} (rc {result.rc}, "
                         f"{result.status})")
        elif result.ok:
            # a chain's stats are its stages' together: its last stage's own are in the view
            self._ok(view, {} if self.chained else result.artifact_data)
        elif result.canceled:
            self.out(f"   {self.stage} interrupted after {took}")
        else:
            self.out(f"   {self.stage} FAILED after {took} (rc {result.rc}, {result.status})")

    def _ok(self, view: ProgressView, artifacts: dict[str, Any]) -> None:
        stage = self.stage or "?"
        artifacts = {**view.stats, **artifacts}
        after = self.store.find(self.env, self.move_id)
        if after is not None:
            self.move_id = after.move_id
        if not view.passes:  # figures written only to the record: show them from there
            new = after.sync_passes[self.passes_before:] if after is not None else []
            for i, p in enumerate(new, start=self.passes_before + 1):
                self.out(f"[{stage}]   {format_pass(p.to_dict(), i)}")
        if after is not None:
            self.passes_before = len(after.sync_passes)
        self.out(f"   {stage} ok in {human_duration(time.monotonic() - self.began)}")
        freeze = artifacts.get("freeze_s")
        if stage == "cutover" and isinstance(freeze, (int, float, str)) and str(freeze) not in ("", "None"):
            source = after.source if after is not None else "the source"
            self.out(f"   the freeze (app stopped on {source}) lasted {freeze} s")
        preflight = artifacts.get("strackt_preflight")
        if isinstance(preflight, dict):
            for warning in preflight.get("warnings") or []:
                self.out(f"   warning: {warning}")


def _busy(env: str, busy: locks.LockBusy) -> MoveError:
    who = busy.holder.describe() if busy.holder else "another process"
    return MoveError(ExitCode.BUSY, f"the move of {env} is being driven by {who}",
                     f"wait for it to finish, or stop it; `strackt-move status {env}` shows the move")
