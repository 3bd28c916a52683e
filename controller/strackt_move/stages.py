"""Which stage comes next, and which playbook runs it.

The one place that maps stages to playbooks: changing how a stage runs touches this file only.
``next_step`` reads the record (``move_record``'s state machine, written by the stage roles) and
answers what ``start`` and ``resume`` should run now; stages are idempotent, so repeating the stage
that was running when a controller died is always safe. The gate is crossed by ``confirm`` only,
and the way back by ``rollback``: those run their playbook themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import forwarding, move_status

from strackt_move.playbook_run import CHAIN_JOIN
from strackt_move.store import PRE_SWITCH_STAGES, MoveRecord

#: stages ``start``/``resume`` run, in order, up to the gate
MOVE_STAGES: tuple[str, ...] = ("preflight", "provision", "deploy", "sync", "verify")


@dataclass(frozen=True)
class Play:
    playbook: str  # relative to playbooks/
    extravars: tuple[tuple[str, Any], ...] = ()


#: step → how it runs. Each stage up to the gate has its own playbook, ``playbooks/stages/STAGE.yml``,
#: so AWX and a person can run, repeat or resume one alone; the controller runs the ones from where
#: the move stands up to verify in one ansible-playbook (``chain_from``), as ``move.yml`` does. ``finish`` is not a record stage: it takes a switched move to done.
STAGE_PLAYS: dict[str, Play] = {
    "preflight": Play("stages/preflight.yml"),
    "provision": Play("stages/provision.yml"),
    "deploy": Play("stages/deploy.yml"),
    "sync": Play("stages/sync.yml"),
    "verify": Play("stages/verify.yml"),
    "cutover": Play("cutover.yml"),
    "finish": Play("finish.yml"),
    "rollback": Play("rollback.yml"),
    # not a stage of a move: removes the copies finished moves retained (strackt-move retire)
    "retire": Play("retire.yml", extravars=(("confirm", True),)),
}
#: seconds added to the DNS hold before ``finish`` stops the old server's forwarding
FINISH_MARGIN_S = float(forwarding.DNS_MARGIN_S)
#: the unattended sync loop's pass (never changes the stage; only adds a pass)
SYNC_LOOP_PLAY = Play("sync.yml", extravars=(("strackt_sync_mode", "loop"),))


def play_for(stage: str) -> Play:
    return STAGE_PLAYS[stage]


def chain_from(stage: str) -> tuple[str, ...]:
    """What one run does from ``stage``: a stage up to the gate runs with the ones after it up to
    verify in one ansible-playbook (the roles record each stage, so a run that dies half-way is
    resumed from the stage it was in); any other stage runs alone."""
    if stage not in MOVE_STAGES:
        return (stage,)
    return MOVE_STAGES[MOVE_STAGES.index(stage):]


def chain_name(names: tuple[str, ...]) -> str:
    """The run name of a chain of stages (its run directory: ``<stamp>-{first}-to-{last}``)."""
    return names[0] + CHAIN_JOIN + names[-1] if len(names) > 1 else names[0]


def finish_not_before(rec: MoveRecord, now: datetime | None = None) -> datetime | None:
    """When a finish of the switched move ``rec`` may end it at the earliest (None: not switched).
    First resolvers' caches of the old address must have expired; then the env's ``forwarding``
    window, judged on the latest stale-traffic measurement the record keeps (``move_status.
    finish_decision``, the one rule). Without a measurement it is the DNS hold: a finish run then
    measures, and when stale traffic still comes it records that, which moves this instant on."""
    dns_until = move_status.dns_caches_expire_at(rec)
    if dns_until is None:
        return None
    decision = move_status.finish_decision(rec, now or datetime.now(timezone.utc))
    if decision is None or decision.finish or decision.not_before is None:
        return dns_until
    return max(dns_until, decision.not_before)


def extravars(env: str, state_dir: Path, target: str | None = None, confirm: bool = False,
              resume: bool = False, extra: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """The extra vars every controller run passes (names: docs/architecture.md, "Controller")."""
    out: dict[str, Any] = {
        "env": env,
        "strackt_state_dir": str(state_dir),
        "strackt_controller": True,
    }
    if target is not None:
        out["target"] = target
    if confirm:
        out["confirm"] = True
    if resume:
        out["resume"] = True  # a record exists: preflight's create must reuse it
    out.update(dict(extra))
    return out


class Kind(Enum):
    RUN = "run"  # run ``stage``
    GATE = "gate"  # waiting for confirmation
    DONE = "done"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Step:
    kind: Kind
    stage: str | None = None
    why: str = ""


def next_step(rec: MoveRecord) -> Step:
    """What continues the move ``rec`` now (for start/resume; the gate is crossed by confirm only)."""
    stage, state = rec.stage, rec.state
    if stage == "done":
        return Step(Kind.DONE, why="the move is done")
    if stage == "rolled_back":
        return Step(Kind.ROLLED_BACK, why="the move was rolled back")
    if stage == "rollback":
        return Step(Kind.RUN, "rollback", "the rollback did not finish; running it again")
    if stage == "switched":
        return Step(Kind.RUN, "finish", "switched; finishing once stale traffic to the old server is gone")
    if stage == "cutover":
        return Step(Kind.RUN, "cutover", "the cutover did not finish; running it again")
    if stage == "awaiting_confirmation":
        if state == "waiting":
            return Step(Kind.GATE, why="verified, waiting for confirmation")
        return Step(Kind.RUN, "verify", f"the gate is {state}, not waiting; verifying again")
    assert stage in PRE_SWITCH_STAGES, stage
    if rec.completed(stage):
        if stage == "verify":
            # The verify role records the wait right after the completion; a run that died in
            # between left a verification of some age: verify again (cheap, and the gate then
            # shows fresh health) rather than have the controller write the wait itself.
            return Step(Kind.RUN, "verify", "verify completed but the move was not put at the gate; verifying again")
        following = MOVE_STAGES[MOVE_STAGES.index(stage) + 1]
        return Step(Kind.RUN, following, f"{stage} completed")
    ev = rec.last_event(stage)
    how = "failed" if state == "failed" else ("was interrupted" if ev and ev.event == "started" else "did not finish")
    return Step(Kind.RUN, stage, f"{stage} {how}; running it again")
