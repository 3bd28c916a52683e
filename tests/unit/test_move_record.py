"""The move record: schema, validation, integrity checksum, state machine, the admission rule.
(Files and locks: test_move_store.py; the status summary: test_move_status.py.)"""

import datetime
import json

import pytest

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


def new(env="shop", now=T0):
    return mr.MoveRecord.new(env, "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40,
                             source_commit="b" * 40, now=now)


def walk_to(rec, stage):
    order = mr.PRE_SWITCH_STAGES
    if rec.stage == "preflight":
        rec.complete("preflight")
    for s in order[order.index(rec.stage) + 1: order.index(stage) + 1]:
        if s == "awaiting_confirmation":
            rec.wait(now=T0)
        else:
            rec.transition(s)
            rec.complete(s)
    return rec


def test_roundtrip_and_schema_fields():
    rec = walk_to(new(), "sync")
    rec.add_pass(mr.SyncPass(clock.format_ts(T0), 1.5, 3, 1234, 100, 999, "full"))
    rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 300, 5)
    rec.warn("source runs another commit")
    text = rec.to_json()
    data = json.loads(text)
    assert set(data) == set(mr.MoveRecord.FIELDS)
    assert data["schema_version"] == 1
    assert data["move_id"] == "shop-20261125T120000Z"
    assert data["checksum"].startswith("sha256:")
    back = mr.MoveRecord.from_json(text)
    assert back == rec


def test_state_machine_happy_path_and_refusals():
    rec = new()
    with pytest.raises(mr.TransitionError, match="cannot go to cutover"):
        rec.transition("cutover")
    with pytest.raises(mr.TransitionError, match="cannot go to sync"):
        rec.transition("sync")  # no skipping provision/deploy
    walk_to(rec, "verify")
    with pytest.raises(mr.TransitionError):
        rec.transition("switched")
    assert rec.wait(now=T0) is True
    assert rec.state == "waiting" and rec.waiting_since == "2026-11-25T12:00:00Z"
    assert rec.wait(now=T0 + datetime.timedelta(hours=1)) is False  # idempotent, keeps since
    assert rec.waiting_since == "2026-11-25T12:00:00Z"
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.complete("switched")
    assert rec.switched_at is not None
    with pytest.raises(mr.TransitionError):
        rec.transition("sync")  # no going back to pre-switch stages after the switch
    rec.transition("done")
    rec.complete("done")
    assert rec.state == "done" and rec.finished
    with pytest.raises(mr.TransitionError, match="finished"):
        rec.transition("rollback")


def test_back_to_sync_while_waiting_and_rollback_from_anywhere_before_done():
    rec = walk_to(new(), "awaiting_confirmation")
    rec.transition("sync")  # another pass while waiting is fine
    with pytest.raises(mr.TransitionError):
        rec.transition("cutover")
    for stage in ("preflight", "sync", "cutover", "switched"):
        r = new()
        if stage != "preflight":
            walk_to(r, "awaiting_confirmation")
            if stage in ("cutover", "switched"):
                r.transition("cutover")
                if stage == "switched":
                    r.complete("cutover")
                    r.transition("switched")
        r.transition("rollback")
        r.transition("rolled_back")
        r.complete("rolled_back")
        assert r.state == "rolled_back"


def test_wait_requires_completed_verify():
    rec = walk_to(new(), "sync")
    with pytest.raises(mr.TransitionError, match="verify must complete"):
        rec.wait()
    rec.transition("verify")
    rec.fail("verify", "manifest differs")
    with pytest.raises(mr.TransitionError):
        rec.wait()


def test_cutover_needs_waiting_state():
    rec = walk_to(new(), "awaiting_confirmation")
    rec.state = "running"
    with pytest.raises(mr.TransitionError, match="not waiting"):
        rec.transition("cutover")


def test_set_dns_once():
    rec = new()
    assert rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 300, 5) is True
    assert rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 300, 5) is False
    with pytest.raises(mr.TransitionError, match="refusing to overwrite"):
        rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 5, 5)


def _tamper(text, fn, fix_checksum=False):
    data = json.loads(text)
    fn(data)
    if fix_checksum:
        data["checksum"] = mr.checksum_of(data)
    return json.dumps(data)


@pytest.mark.parametrize("mutate,fix,match", [
    (lambda d: d.update(stage="switched"), False, "checksum mismatch"),
    (lambda d: d.update(schema_version=2), True, "unsupported schema_version 2"),
    (lambda d: d.update(schema_version=True), True, "unsupported schema_version"),
    (lambda d: d.pop("schema_version"), True, "no schema_version"),
    (lambda d: d.pop("target"), True, "target: missing"),
    (lambda d: d.update(extra=1), True, "unknown field"),
    (lambda d: d.update(target=12), True, "target: expected str"),
    (lambda d: d.update(stage="teleport"), True, "not one of"),
    (lambda d: d.update(waiting_since="yesterday"), True, "ISO-8601"),
    (lambda d: d["history"].append({"stage": "sync"}), True, "missing"),
    (lambda d: d.update(sync_passes=[{"started_at": "2026-11-25T12:00:00Z", "duration_s": 1,
                                      "files_changed": "3", "bytes_changed": 1, "files_total": 1,
                                      "bytes_total": 1, "kind": "full"}]), True, "files_changed"),
    (lambda d: d.update(env="../etc"), True, "env name '../etc' must match"),
    (lambda d: d.update(move_id="shop-yesterday"), True, "move id 'shop-yesterday' must be"),
    (lambda d: d.update(freeze={"held_at_ns": 5}), True, "freeze.released_at_ns: missing"),
    (lambda d: d.update(freeze={"released_at_ns": 1, "held_at_ns": 5}), True, "held_at_ns: is after"),
    (lambda d: d.update(freeze={"released_at_ns": 1, "freeze_s": -1.0}), True, "freeze_s: must be >= 0"),
    (lambda d: d.update(freeze={"released_at_ns": 1, "colour": "red"}), True, "freeze.colour: unknown"),
    (lambda d: d.update(sync_passes=[{"started_at": "2026-11-25T12:00:00Z", "started_at_ns": 5, "duration_s": 1,
                                      "files_changed": 3, "bytes_changed": 1, "files_total": 1,
                                      "bytes_total": 1, "kind": "full"}]), True, "not within started_at"),
    (lambda d: d.update(state="done"), True, "state done at stage"),
    (lambda d: d.pop("checksum"), False, "checksum: missing"),
])
def test_untrusted_files_refused(mutate, fix, match):
    text = new().to_json()
    with pytest.raises(mr.RecordError, match=match):
        mr.MoveRecord.from_json(_tamper(text, mutate, fix))


def test_not_json_refused():
    with pytest.raises(mr.RecordError, match="not valid JSON"):
        mr.MoveRecord.from_json("{ half")
    with pytest.raises(mr.RecordError, match="expected a JSON object"):
        mr.MoveRecord.from_json("[]")


def test_bad_names_refused():
    with pytest.raises(ValueError, match="env name"):
        mr.MoveRecord.new("Shop", "srv1", "srv2", "a", "b", "c")
    with pytest.raises(ValueError, match="same server"):
        mr.MoveRecord.new("shop", "srv1", "srv1", "a", "b", "c")


# ---- fields added within schema 1: optional, left out while unset, older records still load


def test_a_record_written_before_the_new_fields_loads_and_stays_the_same():
    rec = walk_to(new(), "sync")
    rec.add_pass(mr.SyncPass(clock.format_ts(T0), 1.5, 3, 1234, 100, 999, "full"))
    data = rec.to_dict()
    assert "freeze" not in data and "started_at_ns" not in data["sync_passes"][0]
    # exactly what the previous schema wrote: a file of that version loads unchanged
    back = mr.MoveRecord.from_json(json.dumps(data))
    assert back.freeze is None and back.sync_passes[0].started_at_ns is None
    assert back.to_dict() == data
    # freeze: null is accepted too
    data["freeze"] = None
    data["checksum"] = mr.checksum_of(data)
    assert mr.MoveRecord.from_json(json.dumps(data)).freeze is None


def test_pass_started_at_ns_round_trips_and_gives_the_instant():
    ns = int(T0.timestamp()) * 10**9 + 123_456_789
    p = mr.SyncPass.from_dict({"started_at": "2026-11-25T12:00:00Z", "started_at_ns": ns, "duration_s": 1.0,
                               "files_changed": 1, "bytes_changed": 1, "files_total": 1, "bytes_total": 1,
                               "kind": "incremental"})
    assert p.started_ns == ns and p.to_dict()["started_at_ns"] == ns
    old = mr.SyncPass(clock.format_ts(T0), 1.0, 1, 1, 1, 1, "full")
    assert old.started_ns == int(T0.timestamp()) * 10**9  # to the second without it


FREEZE_RESULT = {  # as strackt.move.freeze returns it (state=frozen)
    "changed": True, "forwarding": True, "freeze_s": 0.836, "drain_s": 0.28, "stop_s": 0.14,
    "final_sync_s": 0.4, "forwarder_s": 0.016, "frozen_at_ns": 1_764_072_000_100_000_000,
    "released_at_ns": 1_764_072_000_936_000_000, "sync_pass": {"files_changed": 3}, "undrained_connections": 0,
}


def at_cutover():
    rec = walk_to(new(), "awaiting_confirmation")
    rec.transition("cutover")
    return rec


def test_set_freeze_keeps_the_figures_once():
    rec = at_cutover()
    freeze = mr.Freeze.from_figures(FREEZE_RESULT)
    assert freeze.held_at_ns == FREEZE_RESULT["frozen_at_ns"]  # the freeze module's name for it
    assert freeze.to_dict() == {"released_at_ns": 1_764_072_000_936_000_000, "held_at_ns": 1_764_072_000_100_000_000,
                                "freeze_s": 0.836, "drain_s": 0.28, "stop_s": 0.14, "final_sync_s": 0.4,
                                "forwarder_s": 0.016}
    assert rec.set_freeze(freeze) is True
    assert rec.set_freeze(mr.Freeze.from_figures(dict(FREEZE_RESULT))) is False  # the same again
    other = mr.Freeze.from_figures(dict(FREEZE_RESULT, released_at_ns=FREEZE_RESULT["released_at_ns"] + 1))
    with pytest.raises(mr.TransitionError, match="already recorded a freeze"):
        rec.set_freeze(other)
    assert rec.freeze == freeze
    assert rec.set_freeze(other, replace=True) is True and rec.freeze == other
    back = mr.MoveRecord.from_json(rec.to_json())
    assert back.freeze == other


def test_set_freeze_only_in_the_cutover_and_only_from_a_freeze_result():
    rec = walk_to(new(), "awaiting_confirmation")
    with pytest.raises(mr.TransitionError, match="during the cutover only"):
        rec.set_freeze(mr.Freeze.from_figures(FREEZE_RESULT))
    with pytest.raises(ValueError, match="released_at_ns is missing"):
        mr.Freeze.from_figures({"changed": False, "forwarding": True})  # a repeated freeze
    with pytest.raises(ValueError, match="is after released_at_ns"):
        mr.Freeze.from_figures(dict(FREEZE_RESULT, frozen_at_ns=FREEZE_RESULT["released_at_ns"] + 1))
    only_release = mr.Freeze.from_figures({"released_at_ns": "1764072000936000000"})
    assert only_release.to_dict() == {"released_at_ns": 1_764_072_000_936_000_000}


# ---- events: complete/fail only the stage that runs


def test_complete_or_fail_needs_the_running_stage():
    rec = walk_to(new(), "provision")
    with pytest.raises(mr.TransitionError, match="at stage provision"):
        rec.complete("deploy")  # not the current stage
    with pytest.raises(mr.TransitionError, match="not running"):
        rec.complete("provision")  # completed already
    rec.transition("deploy")
    rec.fail("deploy", "git clone failed")
    with pytest.raises(mr.TransitionError, match="not running"):
        rec.fail("deploy", "again")
    with pytest.raises(mr.TransitionError, match="not running"):
        rec.complete("deploy")
    rec.transition("deploy")  # a retry is an ordinary start
    assert rec.is_open("deploy")
    rec.complete("deploy")
    assert rec.completed("deploy") and not rec.is_open("deploy")


# ---- the one admission rule


def test_admit_a_new_move_or_the_resumed_preflight_only():
    assert mr.admit(None, "srv1", "srv2") is None
    rec = new()  # preflight started, not completed
    assert mr.admit(rec, "srv1", "srv2", resume=True) is rec
    for source, target, resume in (("srv1", "srv2", False), ("srv1", "srv3", True), ("srv9", "srv2", True)):
        with pytest.raises(mr.MoveInProgress, match=r"a move of shop is already in progress: shop-20261125T120000Z "
                                                    r"\(srv1 -> srv2, stage preflight, state running\); finish it"):
            mr.admit(rec, source, target, resume)
    rec.fail("preflight", "no room")
    assert mr.admit(rec, "srv1", "srv2", resume=True) is rec  # a failed preflight is repeated too
    walk = walk_to(new(), "provision")
    with pytest.raises(mr.MoveInProgress, match="stage provision"):
        mr.admit(walk, "srv1", "srv2", resume=True)  # later stages are resumed, not preflighted again


# ---- wave 2: checks, backups, an abandoned cutover


def test_checks_and_backups_round_trip_and_are_left_out_while_empty():
    rec = at_cutover()
    assert "checks" not in rec.to_dict() and "backups" not in rec.to_dict()
    check = mr.Check("data_check", "cutover", clock.format_ts(T0), True, "1200 compared, 3 excused, 1 repaired",
                     {"repaired": ["data/a"], "conflicts": []})
    assert rec.add_check(check) is True and rec.add_check(check) is False  # a resumed stage: once
    backup = mr.Backup("srv1", "/srv/shop/.strackt-backup/" + rec.move_id, rec.move_id, clock.format_ts(T0), 2)
    assert rec.add_backup(backup) is True and rec.add_backup(backup) is False
    back = mr.MoveRecord.from_json(rec.to_json())
    assert back.checks == [check] and back.backups == [backup]
    data = json.loads(rec.to_json())
    data["backups"][0]["files"] = -1
    data["checksum"] = mr.checksum_of({k: v for k, v in data.items() if k != "checksum"})
    with pytest.raises(mr.RecordError, match=r"backups\[0\].files: must be >= 0"):
        mr.MoveRecord.from_dict(data)


def test_an_abandoned_cutover_waits_again_unless_it_released():
    rec = at_cutover()
    assert rec.released is False
    assert rec.abandon_cutover("the final pass would take 9 s", now=T0) is True
    assert (rec.stage, rec.state) == ("awaiting_confirmation", "waiting")
    assert [(e.stage, e.event) for e in rec.history[-2:]] == [("cutover", "failed"), ("awaiting_confirmation", "started")]
    assert rec.abandon_cutover() is False  # again: nothing to do
    mr.MoveRecord.from_json(rec.to_json())  # a valid record
    rec.transition("cutover")  # the operator confirms again
    rec.set_freeze(mr.Freeze.from_figures(FREEZE_RESULT))
    assert rec.released is True
    with pytest.raises(mr.TransitionError, match="released its traffic to the target"):
        rec.abandon_cutover()
    with pytest.raises(mr.TransitionError, match="only a cutover can be abandoned"):
        walk_to(new(), "sync").abandon_cutover()


def test_the_freeze_keeps_its_barrier_and_new_parts():
    freeze = mr.Freeze.from_figures(dict(FREEZE_RESULT, barrier=".strackt-barrier-m", writers_s=0.004, barrier_s=0.02))
    assert freeze.to_dict()["barrier"] == ".strackt-barrier-m" and freeze.writers_s == 0.004
    assert mr.Freeze.from_dict(freeze.to_dict()) == freeze


def test_a_stage_event_as_the_roles_report_it_and_completing_switched_is_the_switch():
    rec = new()
    assert rec.record_event("preflight", "completed", now=T0) is True
    assert (rec.history[-1].stage, rec.history[-1].event) == ("preflight", "completed")
    assert rec.record_event("provision", "started", now=T0) is True and rec.stage == "provision"
    assert rec.record_event("provision", "failed", "disk full", now=T0) is True and rec.state == "failed"
    with pytest.raises(mr.TransitionError, match="unknown stage event 'paused'"):
        rec.record_event("provision", "paused")
    walk_to(rec, "awaiting_confirmation")
    rec.record_event("cutover", "started", now=T0)
    rec.record_event("cutover", "completed", now=T0)
    assert rec.record_event("switched", "completed", now=T0) is True
    assert rec.stage == "switched" and rec.switched_at is not None
    assert rec.record_event("switched", "completed", now=T0) is False  # switched already: nothing changes
