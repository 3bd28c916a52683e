"""The unattended sync loop: keep the target current until the move is confirmed or rolled back.

- one loop per move: the ``sync-loop`` lock is held for the loop's whole life;
- one writer at a time: each pass takes the controller lock (as "sync-loop"); a pass is skipped
  while a controller command drives the move, and ``confirm``/``rollback`` wait for a running pass;
- transient failures back off (initial × 2^(n-1), capped) and are written to the record's
  warnings; the next success notes the recovery;
- SIGTERM/SIGINT set ``stop``: a running pass is cancelled (rsync passes are repeatable), the
  locks are released, the loop returns 0.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from ansible_collections.strackt.move.plugins.module_utils import clock

from strackt_move import locks, stages
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlaybookRunner, PlayRequest, PlayResult
from strackt_move.progress import Emit, ProgressView, format_pass
from strackt_move.settings import Settings
from strackt_move.store import RecordStore
from strackt_move.units import human_duration

#: stages at which a loop pass runs: verified and waiting at the gate (earlier, the move's own
#: sync and verify stages do the copying; a loop started early waits for the gate)
SYNC_STAGES = ("awaiting_confirmation",)
#: stages at which the loop's job is over
END_STAGES = ("cutover", "switched", "done", "rollback", "rolled_back")
#: ``_one_pass`` result: the record changed under us, look again before doing anything
RECHECK = PlayResult(rc=-1, status="recheck")
#: a warning goes into the record on the first failure of a streak and then every this many
WARN_EVERY = 10


@dataclass(frozen=True)
class LoopPolicy:
    interval_s: float = 300.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    max_failures: int | None = None  # consecutive failures before giving up; None = never
    once: bool = False  # `sync ENV` without --loop: one pass

    def retry_delay(self, failures: int) -> float:
        """Delay before retrying after ``failures`` consecutive failures (≥ 1)."""
        return float(min(self.backoff_max_s, self.backoff_initial_s * (2 ** max(0, failures - 1))))


@dataclass
class SyncLoop:
    settings: Settings
    store: RecordStore
    runner: PlaybookRunner
    out: Emit
    policy: LoopPolicy = field(default_factory=LoopPolicy)
    stop: threading.Event = field(default_factory=threading.Event)
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    sleep: Callable[[float], bool] | None = None  # returns True if woken by stop; default stop.wait
    passes_run: int = 0
    failures_total: int = 0

    def _sleep(self, seconds: float) -> bool:
        return (self.sleep or self.stop.wait)(seconds)

    def run(self, env: str) -> ExitCode:
        self.store.require(env, "sync")
        mode = "loop" if not self.policy.once else "once"
        singleton = locks.sync_loop_lock(self.settings.locks_dir, env, f"sync {env} --{mode}")
        try:
            singleton.acquire(timeout=0)
        except locks.LockBusy as busy:
            who = busy.holder.describe() if busy.holder else "another process"
            raise MoveError(ExitCode.BUSY, f"a sync loop for {env} is already running: {who}",
                            "one loop per move is enough; stop that one first if you want to restart it") from None
        try:
            return self._loop(env)
        finally:
            singleton.release()

    def _loop(self, env: str) -> ExitCode:
        failures = 0
        if not self.policy.once:
            self.out(f"== sync loop for {env}: every {human_duration(self.policy.interval_s)} until confirmed or rolled back")
        while not self.stop.is_set():
            rec = self.store.load(env)
            if rec is None or rec.stage in END_STAGES:
                what = "finished" if rec is None else f"at stage {rec.stage}"
                self.out(f"the move of {env} is {what}; the sync loop ends")
                return ExitCode.OK
            if rec.stage not in SYNC_STAGES:
                if self.policy.once:
                    raise MoveError(ExitCode.WRONG_STATE,
                                    f"the move {rec.move_id} is at stage {rec.stage}; a sync pass runs at the"
                                    " confirmation gate (earlier stages sync by themselves)",
                                    f"`strackt-move resume {env}` first")
                self.out(f"the move is at stage {rec.stage}; the loop starts syncing at the confirmation gate")
                if self._sleep(self.policy.interval_s):
                    break
                continue
            outcome = self._one_pass(env)
            if outcome is RECHECK:
                continue  # the move changed stage while we waited for the lock
            if self.policy.once:
                return self._once(env, outcome)
            if outcome is None:  # skipped: a controller command holds the move
                delay = self.policy.interval_s
            elif outcome.canceled or self.stop.is_set():
                break
            elif outcome.ok:
                if failures:
                    self.store.warn(env, f"sync loop: recovered at {clock.format_ts(self.now())} after {failures} failed pass(es)")
                failures = 0
                delay = self.policy.interval_s
            else:
                failures += 1
                self.failures_total += 1
                reason = _reason(outcome)
                if self.policy.max_failures is not None and failures >= self.policy.max_failures:
                    self.store.warn(env, f"sync loop: gave up at {clock.format_ts(self.now())} after {failures} failed passes: {reason}")
                    raise MoveError(ExitCode.FAILED,
                                    f"the sync loop for {env} gave up after {failures} failed passes: {reason}",
                                    f"fix the cause, then start the loop again: `strackt-move sync {env} --loop`")
                delay = self.policy.retry_delay(failures)
                if failures == 1 or failures % WARN_EVERY == 0:
                    self.store.warn(env, f"sync loop: pass failed at {clock.format_ts(self.now())} ({failures} in a row), "
                                         f"retrying with back-off: {reason}")
                self.out(f"sync pass failed ({failures} in a row): {reason}; retrying in {human_duration(delay)}")
            if self._sleep(delay):
                break
        self.out(f"sync loop for {env} stopped")
        return ExitCode.OK

    def _once(self, env: str, outcome: PlayResult | None) -> ExitCode:
        if outcome is None:
            raise MoveError(ExitCode.BUSY, f"a controller command is driving the move of {env}",
                            f"run `strackt-move sync {env}` again when it is done")
        if outcome.canceled:
            return ExitCode.INTERRUPTED
        if not outcome.ok:
            raise MoveError(ExitCode.FAILED, f"the sync pass of {env} failed: {_reason(outcome)}",
                            f"fix the cause and run `strackt-move sync {env}` again")
        return ExitCode.OK

    def _one_pass(self, env: str) -> PlayResult | None:
        """One pass under the controller lock; None if a command holds the move, ``RECHECK`` if
        the move left the sync stages before we got the lock."""
        lock = locks.controller_lock(self.settings.locks_dir, env, f"sync {env} --loop", role="sync-loop")
        try:
            lock.acquire(timeout=0)
        except locks.LockBusy as busy:
            who = busy.holder.describe() if busy.holder else "another process"
            self.out(f"skipping this pass: {who} drives the move")
            return None
        locks.reap_orphan(lock.previous, self.out)
        try:
            rec = self.store.load(env)  # re-read under the lock: a confirm may have just run
            if rec is None or rec.stage not in SYNC_STAGES:
                return RECHECK
            self.passes_run += 1
            passes = [p.to_dict() for p in rec.sync_passes]
            view = ProgressView(stage="sync-loop", emit=self.out, previous_pass=passes[-1] if passes else None,
                                passes_seen=len(passes))
            play = stages.SYNC_LOOP_PLAY
            request = PlayRequest(
                env=env, name="sync-loop", playbook=play.playbook,
                extravars=stages.extravars(env, self.settings.state_dir, target=rec.target, extra=play.extravars),
            )
            began = self.now()
            tracker = locks.ChildTracker(lock, view)
            try:
                result = self.runner(request, tracker, self.stop.is_set)
            finally:
                tracker.done()
            took = human_duration((self.now() - began).total_seconds())
            if result.ok:
                self.out(f"sync pass ok in {took}")
                if not view.passes:  # the playbook reported its figures only to the record
                    after = self.store.load(env)
                    new = after.sync_passes[len(passes):] if after is not None else []
                    for i, p in enumerate(new, start=len(passes) + 1):
                        self.out(f"  {format_pass(p.to_dict(), i)}")
            return result
        finally:
            lock.release()


def _reason(outcome: PlayResult) -> str:
    return "; ".join(outcome.failures[-2:]) or f"rc {outcome.rc} ({outcome.status})"
