"""The move record schema: state machine, validation, integrity checksum, files, lock."""

import datetime
import json
import multiprocessing
import os
import stat

import pytest

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
    rec.add_pass(mr.SyncPass(mr.format_ts(T0), 1.5, 3, 1234, 100, 999, "full"))
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
    (lambda d: d.update(env="../etc"), True, "invalid env"),
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


def test_files_modes_atomic_and_archive(tmp_path):
    state = str(tmp_path / "state")
    rec = new()
    path = mr.create(state, rec)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for d in (state, mr.moves_dir(state), mr.history_dir(state)):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert mr.load(state, "shop") == rec
    assert mr.load(state, "blog") is None
    assert mr.list_active(state) == ["shop"]
    with pytest.raises(mr.MoveInProgress, match="already in progress"):
        mr.create(state, new())
    # no temp files left behind
    assert sorted(os.listdir(mr.moves_dir(state))) == ["history", "shop.json"]
    with pytest.raises(mr.TransitionError):
        mr.archive(state, rec)
    rec.transition("rollback")
    rec.transition("rolled_back")
    rec.complete("rolled_back")
    dest = mr.archive(state, rec)
    assert not os.path.exists(path)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert mr.load_history(state, rec.move_id) == rec
    assert mr.list_history(state, "shop") == [rec.move_id]
    assert mr.load(state, "shop") is None


def test_corrupt_file_on_disk_is_refused(tmp_path):
    state = str(tmp_path)
    rec = new()
    path = mr.save(state, rec)
    with open(path) as fh:
        data = json.load(fh)
    data["target"] = "srv3"
    with open(path, "w") as fh:
        json.dump(data, fh)
    with pytest.raises(mr.RecordError, match="shop.json: move record: checksum mismatch"):
        mr.load(state, "shop")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    state = str(tmp_path)
    rec = new()
    path = mr.save(state, rec)
    before = open(path).read()

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(mr.os, "replace", boom)
    rec.warn("x")
    with pytest.raises(OSError):
        mr.save(state, rec)
    assert open(path).read() == before
    assert sorted(os.listdir(mr.moves_dir(state))) == ["history", "shop.json"]


def _hold_lock(state, ready, release):
    with mr.lock(state, "shop"):
        ready.set()
        release.wait(10)


def test_lock_is_exclusive(tmp_path):
    state = str(tmp_path)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(state, ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(mr.RecordLocked, match="holds the lock of env shop"):
            with mr.lock(state, "shop", timeout=0.3):
                pass
        with mr.lock(state, "blog"):
            pass  # other envs are independent
    finally:
        release.set()
        proc.join(10)
    with mr.lock(state, "shop", timeout=1):
        pass
    assert stat.S_IMODE(os.stat(mr.lock_path(state, "shop")).st_mode) == 0o600


def test_waiting_flag():
    rec = walk_to(new(), "awaiting_confirmation")
    assert mr.is_overdue(rec, now=T0 + datetime.timedelta(hours=23)) is False
    late = T0 + datetime.timedelta(hours=25)
    assert mr.is_overdue(rec, now=late) is True
    assert "waited 25.0 h" in mr.overdue_message(rec, now=late)
    assert mr.is_overdue(rec, threshold_s=3600, now=T0 + datetime.timedelta(hours=2))
    s = mr.summary(rec, now=late)
    assert s["overdue"] and s["stage"] == "awaiting_confirmation"
    rec.transition("cutover")
    assert mr.is_overdue(rec, now=late) is False


def test_bad_names_refused():
    with pytest.raises(ValueError):
        mr.record_path("/tmp", "../x")
    with pytest.raises(ValueError, match="same server"):
        mr.MoveRecord.new("shop", "srv1", "srv1", "a", "b", "c")
