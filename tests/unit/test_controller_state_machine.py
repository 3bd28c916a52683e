"""The controller's reading of the state machine: what runs next, and which changes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_testlib import T0, new_record, walk_to

from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import stages
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.settings import installed_collection
from strackt_move.stages import Kind
from strackt_move.store import RecordStore


def test_fresh_record_continues_with_provision_once_preflight_completed():
    rec = new_record()
    assert stages.next_step(rec) == stages.Step(Kind.RUN, "preflight", stages.next_step(rec).why)
    rec.complete("preflight")
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, "provision")


@pytest.mark.parametrize("stage, expected", [
    ("provision", "deploy"), ("deploy", "sync"), ("sync", "verify"),
])
def test_completed_stage_leads_to_the_next(stage, expected):
    rec = walk_to(new_record(), stage)
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, expected)


def test_interrupted_stage_is_repeated():
    rec = walk_to(new_record(), "provision")
    rec.transition("deploy")  # started, never completed: the controller died here
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, "deploy")
    assert "interrupted" in step.why


def test_failed_stage_is_retried():
    rec = walk_to(new_record(), "deploy")
    rec.transition("sync")
    rec.fail("sync", "rsync exit 23")
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, "sync")
    assert "failed" in step.why


def test_verify_completed_but_not_at_the_gate_is_verified_again():
    """The verify role records the wait right after the completion; if its run died in between,
    resume verifies again (the controller never writes the wait itself)."""
    rec = walk_to(new_record(), "verify")
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, "verify")
    rec.transition("verify")  # the verify role, run again
    rec.complete("verify")
    rec.wait(now=T0)
    assert stages.next_step(rec).kind is Kind.GATE


@pytest.mark.parametrize("state", ["running", "failed"])
def test_a_gate_that_is_not_waiting_is_verified_again(state):
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.state = state
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, "verify")
    rec.transition("verify")  # the verify role may go back from the gate


def test_every_record_state_has_a_next_step():
    """From any stage and state a record can hold, start/resume knows what to run."""
    for stage in mr.STAGES:
        for state in mr.STATES:
            rec = walk_to(new_record(), "awaiting_confirmation")
            rec.stage, rec.state = stage, state
            try:
                rec.validate()
            except mr.RecordError:
                continue  # not a state a record can hold
            step = stages.next_step(rec)
            assert step.kind in (Kind.RUN, Kind.GATE, Kind.DONE, Kind.ROLLED_BACK), (stage, state)
            if step.kind is Kind.RUN:
                assert step.stage in (*stages.MOVE_STAGES, "cutover", "finish", "rollback"), (stage, state, step)


@pytest.mark.parametrize("stage, expected", [("cutover", "cutover"), ("switched", "finish"), ("rollback", "rollback")])
def test_after_the_gate_resume_repeats_the_unfinished_stage(stage, expected):
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover" if stage != "rollback" else "rollback")
    if stage == "switched":
        rec.complete("cutover")
        rec.transition("switched")
    step = stages.next_step(rec)
    assert (step.kind, step.stage) == (Kind.RUN, expected)


def test_finish_waits_for_the_old_dns_answers_to_expire():
    rec = walk_to(new_record(), "awaiting_confirmation")  # created 12:00:00
    assert stages.finish_not_before(rec) is None
    rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 300, 5)
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.switched_at = "2026-11-25T12:02:00Z"
    # caches filled before the TTL was lowered (at creation) hold 300 s: 12:05:00 (+ margin)
    assert stages.finish_not_before(rec).strftime("%H:%M:%S") == "12:05:02"
    rec.switched_at = "2026-11-25T12:30:00Z"
    assert stages.finish_not_before(rec).strftime("%H:%M:%S") == "12:30:07"


def test_finished_records():
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("rollback")
    rec.complete("rollback")
    rec.transition("rolled_back")
    rec.complete("rolled_back")
    assert stages.next_step(rec).kind is Kind.ROLLED_BACK


def test_each_runnable_stage_has_a_playbook():
    playbooks = installed_collection() / "playbooks"  # the collection's, which the controller runs
    for stage in (*stages.MOVE_STAGES, "cutover", "finish", "rollback"):
        play = stages.play_for(stage)
        assert (playbooks / play.playbook).is_file(), play
    assert stages.play_for("deploy").playbook == "stages/deploy.yml"
    assert (playbooks / stages.SYNC_LOOP_PLAY.playbook).is_file()


def test_extravars_names():
    ev = stages.extravars("shop", Path("/s"), target="srv2", confirm=True)
    assert ev == {"env": "shop", "strackt_state_dir": "/s", "strackt_controller": True, "target": "srv2",
                  "confirm": True}
    assert "confirm" not in stages.extravars("shop", Path("/s"))


# ---- transitions through the store: allowed ones are saved, the rest refused with WRONG_STATE

ALLOWED = [
    ("preflight", "provision"), ("provision", "deploy"), ("deploy", "sync"), ("sync", "verify"),
    ("sync", "sync"), ("verify", "sync"), ("verify", "provision"), ("deploy", "rollback"),
]
REFUSED = [
    ("preflight", "deploy"), ("provision", "verify"), ("deploy", "cutover"), ("sync", "awaiting_confirmation"),
    ("sync", "done"), ("verify", "switched"), ("sync", "rolled_back"),
]


def _store_at(tmp_path, stage):
    store = RecordStore(tmp_path)
    rec = new_record()
    if stage != "preflight":
        walk_to(rec, stage)
    ms.create(str(tmp_path), rec)
    return store


@pytest.mark.parametrize("current, new", ALLOWED)
def test_allowed_transition_is_saved(tmp_path, current, new):
    store = _store_at(tmp_path, current)
    store.update("shop", lambda r: r.transition(new))
    rec = store.load("shop")
    assert (rec.stage, rec.state) == (new, "running")
    assert rec.history[-1].event == "started"


@pytest.mark.parametrize("current, new", REFUSED)
def test_refused_transition_leaves_the_record_alone(tmp_path, current, new):
    store = _store_at(tmp_path, current)
    before = store.record_file("shop").read_bytes()
    with pytest.raises(MoveError) as err:
        store.update("shop", lambda r: r.transition(new))
    assert err.value.code == ExitCode.WRONG_STATE
    assert new in err.value.problem
    assert store.record_file("shop").read_bytes() == before


def test_cutover_refused_unless_waiting(tmp_path):
    store = _store_at(tmp_path, "awaiting_confirmation")
    store.update("shop", lambda r: r.fail("awaiting_confirmation", "health check broke"))
    with pytest.raises(MoveError) as err:
        store.update("shop", lambda r: r.transition("cutover"))
    assert err.value.code == ExitCode.WRONG_STATE


def test_finished_move_is_archived_by_update(tmp_path):
    store = _store_at(tmp_path, "verify")

    def roll(r):
        r.transition("rollback")
        r.complete("rollback")
        r.transition("rolled_back")
        r.complete("rolled_back")

    rec = store.update("shop", roll)
    assert store.load("shop") is None
    assert store.load_history(rec.move_id).stage == "rolled_back"
    assert store.latest_history("shop").move_id == rec.move_id
