"""Shared helpers for the controller's unit tests: paths, a scripted fake runner, records."""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

_ROOT = Path(__file__).resolve().parents[2]
for _p in (_ROOT / "controller", _ROOT / "collections"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from ansible_collections.strackt.move.plugins.module_utils import clock  # noqa: E402
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr  # noqa: E402
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms  # noqa: E402

from strackt_move.playbook_run import STAGE_MARKER, PlayRequest, PlayResult, ResultCollector  # noqa: E402
from strackt_move.settings import Settings  # noqa: E402

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
REPO = _ROOT


def settings_for(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", inventory=tmp_path / "inventory")


def new_record(env: str = "shop", now: datetime.datetime = T0) -> mr.MoveRecord:
    return mr.MoveRecord.new(env, "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40,
                             source_commit="b" * 40, now=now)


def walk_to(rec: mr.MoveRecord, stage: str, now: datetime.datetime = T0) -> mr.MoveRecord:
    """Advance a fresh record through the pre-switch stages up to (and including) ``stage``."""
    order = mr.PRE_SWITCH_STAGES
    if rec.stage == "preflight" and stage != "preflight":
        rec.complete("preflight", now=now)
    for s in order[order.index(rec.stage) + 1: order.index(stage) + 1]:
        if s == "awaiting_confirmation":
            rec.wait(now=now)
        else:
            rec.transition(s, now=now)
            rec.complete(s, now=now)
    return rec


def a_pass(kind: str = "incremental", duration: float = 1.5, files: int = 3, bytes_: int = 3000,
           started_at: str = "2026-11-25T12:00:00Z") -> dict[str, Any]:
    return {"started_at": started_at, "duration_s": duration, "files_changed": files, "bytes_changed": bytes_,
            "files_total": 100, "bytes_total": 100_000, "kind": kind}


def ok_event(task: str, res: dict[str, Any], host: str = "srv1") -> dict[str, Any]:
    return {"event": "runner_on_ok", "event_data": {"host": host, "task": task, "res": res}}


def task_event(task: str, action: str = "ansible.builtin.command") -> dict[str, Any]:
    return {"event": "playbook_on_task_start", "event_data": {"task": task, "task_action": action}}


def failed_event(task: str, msg: str, host: str = "srv2") -> dict[str, Any]:
    return {"event": "runner_on_failed", "event_data": {"host": host, "task": task, "res": {"msg": msg}}}


def stats_event(artifact_data: dict[str, Any]) -> dict[str, Any]:
    return {"event": "playbook_on_stats", "event_data": {"artifact_data": artifact_data}}


Script = Callable[[PlayRequest, Callable[[dict[str, Any]], None], Callable[[], bool]], PlayResult]


@dataclass
class FakeRunner:
    """A ``PlaybookRunner`` that plays what a playbook would do to the record, per stage name."""

    state_dir: Path
    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[PlayRequest] = field(default_factory=list)  # one per stage, a chain's stages each
    runs: list[PlayRequest] = field(default_factory=list)  # one per ansible-playbook run
    #: a chained run as a whole (None: its stages one after another, each by its script)
    chain_script: Script | None = None

    def __call__(self, request: PlayRequest, on_event: Callable[[dict[str, Any]], None],
                 cancel: Callable[[], bool]) -> PlayResult:
        self.runs.append(request)
        if not request.chain:
            self.calls.append(request)
            script = self.scripts.get(request.name, self.default)
            return script(request, on_event, cancel)
        if self.chain_script is not None:
            return self.chain_script(request, on_event, cancel)
        # a chain, as ansible-playbook runs it: a marker play, then the stage's plays, stage after
        # stage; it ends at the first stage that fails, or whose role left its stage unfinished
        # (the next stage's role would be refused by the record's state machine)
        artifacts: dict[str, Any] = {}
        for stage, playbook in request.chain:
            on_event({"event": "playbook_on_play_start", "event_data": {"play": STAGE_MARKER + stage}})
            one = replace(request, name=stage, playbook=playbook, chain=())
            self.calls.append(one)
            result = self.scripts.get(stage, self.default)(one, on_event, cancel)
            artifacts.update(result.artifact_data)
            if not result.ok:
                return result
            with ms.lock(str(self.state_dir), request.extravars["env"], timeout=5):
                rec = ms.load(str(self.state_dir), request.extravars["env"])
            if rec is None or not rec.completed(stage):
                following = [name for name, _ in request.chain][[name for name, _ in request.chain].index(stage) + 1:]
                if following:
                    on_event({"event": "playbook_on_play_start", "event_data": {"play": STAGE_MARKER + following[0]}})
                    msg = f"the record refuses {following[0]}: {stage} did not complete"
                    on_event(failed_event("Record the stage's start", msg))
                    return PlayResult(rc=2, status="failed", artifact_data=artifacts,
                                      failures=[f"localhost: Record the stage's start: {msg}"])
        return PlayResult(rc=0, status="successful", artifact_data=artifacts)

    # default behaviour: a well-behaved playbook for each stage, writing the record the way its
    # role does (each role records its own start, end and the operator's choices)
    def default(self, request: PlayRequest, on_event: Callable[[dict[str, Any]], None],
                cancel: Callable[[], bool]) -> PlayResult:
        sd = str(self.state_dir)
        env = request.extravars["env"]
        stage = request.name
        with ms.lock(sd, env, timeout=5):
            rec = ms.load(sd, env)
            if stage == "preflight":  # admit, create (or take over), complete
                rec = mr.admit(rec, "srv1", request.extravars["target"], bool(request.extravars.get("resume")))
                if rec is None:
                    rec = mr.MoveRecord.new(env, "srv1", request.extravars["target"], "10.77.0.11",
                                            "10.77.0.12", "a" * 40, source_commit="b" * 40)
                elif not rec.is_open("preflight"):
                    rec.transition("preflight", "resumed")
                rec.complete("preflight")
                ms.save(sd, rec)
            elif stage in ("provision", "deploy", "sync", "verify"):
                rec.transition(stage)
                if stage == "sync":
                    rec.add_pass(a_pass(kind="full", duration=4.0, files=100, bytes_=100_000,
                                        started_at=clock.format_ts(clock.utcnow())))
                rec.complete(stage)
                if stage == "verify":
                    rec.wait("verified")
                ms.save(sd, rec)
            elif stage == "sync-loop":
                rec.add_pass(a_pass(started_at=clock.format_ts(clock.utcnow())))
                ms.save(sd, rec)
            elif stage == "cutover":  # like the cutover role: confirmed -> cutover -> switched
                if rec.stage == "awaiting_confirmation" or rec.stage == "cutover":
                    rec.transition("cutover", "confirmed by the operator")
                    rec.complete("cutover")
                    rec.transition("switched")
                    rec.complete("switched")
                    ms.save(sd, rec)
            elif stage == "finish":  # like the finish role: switched -> done, archived
                rec.transition("done")
                rec.complete("done")
                ms.archive(sd, rec)
            elif stage == "rollback":  # like the rollback role: started, then finished as rolled_back
                rec.transition("rollback", "requested by the operator")
                rec.transition("rolled_back")
                rec.complete("rolled_back")
                ms.archive(sd, rec)
        collector = ResultCollector(on_event)
        on_event = collector
        if stage == "sync":
            on_event(task_event("rsync data", "strackt.move.sync_data"))
            on_event(ok_event("rsync data", {"changed": True, "sync_pass": a_pass(kind="full", duration=4.0)}))
        if stage == "verify":
            on_event(stats_event({"target_health": {"status": "ok", "commit": "a" * 40, "database": True,
                                                    "server": "srv2"}}))
        return PlayResult(rc=0, status="successful", artifact_data=collector.artifact_data)


def finish_waits(times: int, now: Callable[[], datetime.datetime]) -> Script:
    """The finish playbook while stale traffic still comes: the first ``times`` runs record a
    measurement with a request in the minute up to ``now()`` (the move stays switched, as the finish
    role leaves it), then it finishes."""
    from ansible_collections.strackt.move.plugins.module_utils import move_status

    runs = [0]

    def script(request: PlayRequest, on_event: Callable[[dict[str, Any]], None],
               cancel: Callable[[], bool]) -> PlayResult:
        sd, env = request.extravars["strackt_state_dir"], request.extravars["env"]
        runs[0] += 1
        collector = ResultCollector(on_event)
        with ms.lock(sd, env, timeout=5):
            rec = ms.load(sd, env)
            if runs[0] > times:
                rec.transition("done")
                rec.complete("done")
                ms.archive(sd, rec)
                return PlayResult(rc=0, status="successful", artifact_data={})
            stamp = clock.format_ts(now())
            rec.set_stale(mr.StaleTraffic(measured_at=stamp, since=rec.switched_at, total=runs[0] * 10,
                                          last_seen=stamp, per_minute=[0] * 14 + [3], log_found=True,
                                          forwarding={"min_s": 3600, "quiet_s": 900, "max_s": 259200}))
            ms.save(sd, rec)
            decision = move_status.finish_decision(rec, now())
        collector(stats_event({"finish_due": False, "finish_why": decision.why}))
        return PlayResult(rc=0, status="successful", artifact_data=collector.artifact_data)

    return script


def failing(msg: str, rc: int = 2, started: bool = True) -> Script:
    """A playbook that fails. ``started``: its role recorded the stage's start first (and then the
    run died before the role could record the failure); preflight never creates a record here."""

    def script(request: PlayRequest, on_event: Callable[[dict[str, Any]], None],
               cancel: Callable[[], bool]) -> PlayResult:
        stage = request.name
        if started and stage in mr.STAGES and stage != "preflight":
            sd, env = request.extravars["strackt_state_dir"], request.extravars["env"]
            with ms.lock(sd, env, timeout=5):
                rec = ms.load(sd, env)
                rec.transition(stage)
                ms.save(sd, rec)
        on_event(failed_event("a task", msg))
        return PlayResult(rc=rc, status="failed", failures=[f"srv2: a task: {msg}"])

    return script


def file_mode(path: Path | str) -> int:
    return os.stat(path).st_mode & 0o777
