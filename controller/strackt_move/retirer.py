"""retire / retire --due: remove the stopped copies finished moves left on their old servers.

What is retained, and until when, is the collection's (``move_record.RetainedCopies``, written by
the finish role, read here through the store). This module refuses what must not be removed before
anything runs (a move of the env in progress, the server the env runs on, a server with no retained
copy), asks the operator, then runs ``retire.yml`` under the env's controller lock; the role forgets
each copy it removed, and the module on the server refuses a copy that may be live.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr

from strackt_move import locks, stages
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlaybookRunner, PlayRequest
from strackt_move.progress import Emit, ProgressView
from strackt_move.settings import Settings
from strackt_move.store import RecordStore
from strackt_move.units import human_duration

Ask = Callable[[str], str]


def describe(copy: mr.RetainedCopy, now: datetime) -> str:
    """One line: where the copy is, what it holds, when it goes."""
    left = (clock.parse_ts(copy.until) - now).total_seconds()
    when = f"due since {copy.until}" if left <= 0 else f"kept until {copy.until} ({human_duration(left)} left)"
    if copy.retiring is not None:
        when = f"retiring since {copy.retiring} (a retire began removing it)"
    return f"{copy.server}:{copy.root} ({', '.join(copy.paths)}; from move {copy.move_id}), {when}"


def copy_entry(env: str, copy: mr.RetainedCopy, now: datetime) -> dict[str, Any]:
    """A retained copy as ``status``/``list --json`` show it."""
    left = (clock.parse_ts(copy.until) - now).total_seconds()
    return dict(copy.to_dict(), env=env, due=copy.due(now), retiring=copy.retiring, remaining_s=max(0.0, left),
                next=f"strackt-move retire {env} --server {copy.server}")


@dataclass
class Retirer:
    settings: Settings
    store: RecordStore
    runner: PlaybookRunner
    out: Emit
    now: Callable[[], datetime]
    ask: Ask | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def retire(self, env: str, server: str | None, yes: bool) -> ExitCode:
        copies = self._refuse_or_copies(env, server)
        for copy in copies:
            self.out(f"retained copy of {env}: {describe(copy, self.now())}")
        if not yes:
            if self.ask is None:
                raise MoveError(ExitCode.USAGE, "retire removes data for good and asks first, but stdin is not a terminal",
                                f"run `strackt-move retire {env}{' --server ' + server if server else ''} --yes`")
            where = ", ".join(c.server for c in copies)
            answer = self.ask(f"remove the retained copy of {env} on {where} for good? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                self.out("not confirmed; nothing was removed")
                return ExitCode.OK
        return self._run(env, server, due=False)

    def retire_due(self) -> ExitCode:
        """Every copy whose retention ended (a systemd timer's command); envs with a move in progress wait."""
        worst, found = ExitCode.OK, False
        for env in self.store.retained_envs():
            due = [c for c in self.store.retained(env).copies if c.due(self.now())]
            if not due:
                continue
            found = True
            rec = self.store.load(env)
            if rec is not None:
                self.out(f"{env}: a move is in progress ({rec.move_id}, stage {rec.stage}); its retained copies "
                         "wait until it ends")
                continue
            for copy in due:
                self.out(f"{env}: retained copy {describe(copy, self.now())}")
            try:
                code = self._run(env, None, due=True)
            except MoveError as err:
                self.out(f"{env}: {err.problem}; next: {err.next_step}")
                code = err.code
            if code != ExitCode.OK:
                worst = code
        if not found:
            self.out("no retained copy is due")
        return worst

    # ------------------------------------------------------------------

    def _refuse_or_copies(self, env: str, server: str | None) -> list[mr.RetainedCopy]:
        """The copies ``retire`` would remove, or a MoveError naming why not (nothing touched)."""
        rec = self.store.load(env)
        if rec is not None:
            forwarding = (f"; {rec.source} still forwards stale traffic to {rec.target}" if rec.stage == "switched"
                          else "")
            raise MoveError(ExitCode.WRONG_STATE,
                            f"a move of {env} is in progress ({rec.move_id}, stage {rec.stage}, {rec.state}{forwarding}): "
                            "a copy is retained only once its move finished; nothing was removed",
                            f"finish it first (`strackt-move finish {env}` or `strackt-move rollback {env}`), then retire")
        retained = self.store.retained(env).copies
        chosen = [c for c in retained if server is None or c.server == server]
        if not chosen:
            held = ", ".join(c.server for c in retained) or "none"
            raise MoveError(ExitCode.NO_MOVE,
                            (f"{server} holds no retained copy of {env} (retained copies: {held})" if server
                             else f"{env} has no retained copy on any server") + "; nothing was removed",
                            f"`strackt-move status {env}` shows its copies; an env name from strackt_environments")
        latest = self.store.latest_history(env)
        if latest is not None and latest.stage == "done" and latest.target in {c.server for c in chosen}:
            raise MoveError(ExitCode.WRONG_STATE,
                            f"{env} runs on {latest.target} since {latest.move_id}: the copy there is the live env, "
                            "not a retained one; nothing was removed",
                            f"name the old server: `strackt-move retire {env} --server SERVER`")
        return chosen

    def _run(self, env: str, server: str | None, due: bool) -> ExitCode:
        lock = locks.controller_lock(self.settings.locks_dir, env, f"retire {env}")
        try:
            lock.acquire(timeout=0)
        except locks.LockBusy as busy:
            who = busy.holder.describe() if busy.holder else "another process"
            raise MoveError(ExitCode.BUSY, f"{env} is being driven by {who}",
                            f"wait for it to end; `strackt-move status {env}`") from None
        try:
            locks.reap_orphan(lock.previous, self.out)
            if not due:  # re-checked under the lock: a move may have started meanwhile
                self._refuse_or_copies(env, server)
            play = stages.play_for("retire")
            extra = play.extravars + ((("server", server),) if server else ()) + ((("due", True),) if due else ())
            request = PlayRequest(env=env, name="retire", playbook=play.playbook,
                                  extravars=stages.extravars(env, self.settings.state_dir, extra=extra))
            self.out(f"== retire ({play.playbook})")
            result = self.runner(request, ProgressView(stage="retire", emit=self.out), self.stop.is_set)
        finally:
            lock.release()
        if not result.ok:
            reason = "; ".join(result.failures[-3:]) or f"retire.yml ended with rc {result.rc} ({result.status})"
            raise MoveError(ExitCode.FAILED, f"retiring the copy of {env} failed: {reason}",
                            f"fix the cause, then `strackt-move retire {env}` again (it removes only what is left)")
        removed = result.artifact_data.get("retired") or []
        left = self.store.retained(env).copies
        self.out(f"   removed the retained copy of {env} on {', '.join(removed) or 'no server'}"
                 + (f"; still retained on {', '.join(c.server for c in left)}" if left else ""))
        return ExitCode.OK
