"""The report's model: timeline, convergence series, freeze parts, checks — from real records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from controller_testlib import T0, a_pass, new_record, walk_to
from report_testlib import DONE, NOW, ROLLED_BACK, record, with_freeze_fields

from strackt_move.report import model
from strackt_move.store import record_dict


def test_timeline_of_a_finished_move():
    r = model.build(record(DONE), NOW)
    assert [s.stage for s in r.stages] == ["preflight", "provision", "deploy", "sync", "verify",
                                          "awaiting_confirmation", "cutover", "switched", "done"]
    assert all(s.result == "completed" for s in r.stages)
    provision = r.stages[1]
    assert (provision.started_at, provision.ended_at, provision.duration_s) == (
        "2026-11-29T22:55:29Z", "2026-11-29T22:56:02Z", 33.0)
    assert (provision.start_offset_s, provision.end_offset_s) == (5.0, 38.0)
    assert r.started_at == "2026-11-29T22:55:24Z" and r.ended_at == "2026-11-29T22:57:08Z"
    assert r.duration_s == 104.0 and not r.active
    assert r.waited_s == 1.0  # awaiting_confirmation ends when the cutover starts
    assert r.switched_offset_s == 92.0


def test_a_rollback_ends_when_rolled_back_starts():
    r = model.build(record(ROLLED_BACK), NOW)
    rollback = [s for s in r.stages if s.stage == "rollback"][0]
    assert (rollback.result, rollback.ended_at, rollback.duration_s) == ("completed", "2026-11-29T23:02:24Z", 11.0)


def test_an_interrupted_stage_stays_interrupted_when_retried_or_rolled_back():
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover", now=T0 + timedelta(seconds=10))  # the controller died in the cutover
    rec.transition("cutover", now=T0 + timedelta(seconds=20))  # resume
    rec.transition("rollback", now=T0 + timedelta(seconds=30))  # then the operator rolled back
    r = model.build(record_dict(rec), NOW)
    cutovers = [s for s in r.stages if s.stage == "cutover"]
    assert [(s.result, s.duration_s, s.end_offset_s) for s in cutovers] == [
        ("interrupted", None, 20.0), ("interrupted", None, 30.0)]


def test_timeline_of_a_move_in_progress_runs_to_the_report_time():
    rec = walk_to(new_record(), "sync")
    rec.transition("verify", now=T0 + timedelta(seconds=30))
    r = model.build(record_dict(rec), T0 + timedelta(seconds=100))
    verify = r.stages[-1]
    assert (verify.stage, verify.result, verify.ended_at, verify.end_offset_s) == ("verify", "running", None, 100.0)
    assert r.active and r.ended_at is None and r.duration_s == 100.0


def test_convergence_series_and_lag():
    r = model.build(record(ROLLED_BACK), NOW)
    assert [(p.number, p.kind, p.files_changed, p.bytes_changed) for p in r.sync_passes] == [
        (1, "full", 377, 12905), (2, "incremental", 6, 140), (3, "incremental", 65, 2205),
        (4, "incremental", 46, 1505), (5, "incremental", 47, 1575)]
    # lag before a pass: since the previous pass ended (23:01:31 + 0.672 s → 23:01:33)
    assert r.sync_passes[0].lag_s is None
    assert r.sync_passes[1].lag_s == pytest.approx(2 - 0.672)
    assert r.sync_passes[2].lag_s == pytest.approx(15 - 0.656)
    assert r.sync_passes[1].start_offset_s == 31.0


def test_pass_start_prefers_nanoseconds_and_reverse_passes_are_not_lag():
    passes = [a_pass("full", 1.0, started_at="2026-11-25T12:00:00Z"),
              a_pass("reverse", 5.0, started_at="2026-11-25T12:00:10Z"),
              a_pass("incremental", 0.5, started_at="2026-11-25T12:00:20Z")]
    passes[0]["started_at_ns"] = int((T0.timestamp() + 0.4) * 1e9)
    rec = record_dict(walk_to(new_record(), "sync")) | {"sync_passes": passes}
    points = model.build(rec, NOW).sync_passes
    assert points[0].start_offset_s == pytest.approx(0.4)
    assert points[1].lag_s is None
    assert points[2].lag_s == pytest.approx(20 - 1.4)  # from the full pass's end, not the reverse one's


def test_freeze_parts_when_recorded():
    r = model.build(with_freeze_fields(record(DONE)), NOW)
    f = r.freeze
    assert f.recorded and f.freeze_s == 0.78
    assert [(p.name, p.seconds) for p in f.parts] == [
        ("drain_s", 0.281), ("stop_s", 0.188), ("final_sync_s", 0.102), ("forwarder_s", 0.012),
        ("other_s", pytest.approx(0.78 - 0.583))]
    assert f.held_at == "2026-11-29T22:56:47.800Z" and f.released_at == "2026-11-29T22:56:48.580Z"
    assert f.final_pass_s == 0.1  # the final pass as sync_passes recorded it


def test_freeze_total_from_the_instants_and_no_other_part_when_parts_add_up():
    data = record(DONE) | {"freeze": {"held_at_ns": 1_000_000_000, "released_at_ns": 1_500_000_000,
                                      "drain_s": 0.2, "stop_s": 0.1, "final_sync_s": 0.15, "forwarder_s": 0.05}}
    f = model.build(data, NOW).freeze
    assert f.freeze_s == 0.5
    assert [p.name for p in f.parts] == ["drain_s", "stop_s", "final_sync_s", "forwarder_s"]


def test_freeze_not_recorded_still_gives_the_final_pass():
    f = model.build(record(DONE), NOW).freeze
    assert (f.recorded, f.freeze_s, f.parts, f.final_pass_s) == (False, None, (), 0.1)
    f = model.build(record(ROLLED_BACK), NOW).freeze
    assert (f.recorded, f.final_pass_s) == (False, None)


def test_checks_from_the_stage_messages():
    r = model.build(record(DONE), NOW)
    assert r.checks_origin == "history"
    assert [(c.stage, c.result) for c in r.checks] == [
        ("preflight", "ok"), ("sync", "ok"), ("verify", "ok"), ("awaiting_confirmation", "note"),
        ("cutover", "note"), ("cutover", "ok"), ("switched", "ok"), ("done", "ok")]  # "done" said once
    assert r.checks[2].detail.startswith("healthy on shop.example.test")


def test_a_failed_stage_is_a_failed_check():
    rec = walk_to(new_record(), "deploy")
    rec.transition("sync")
    rec.fail("sync", "rsync: connection refused")
    r = model.build(record_dict(rec), NOW)
    assert r.stages[-1].result == "failed"
    assert (r.checks[-1].stage, r.checks[-1].result, r.checks[-1].detail) == ("sync", "failed", "rsync: connection refused")


def test_structured_checks_replace_the_messages_when_recorded():
    data = record(DONE) | {"checks": [
        {"name": "target health", "stage": "verify", "at": "2026-11-29T22:56:35Z", "ok": True, "detail": "200"},
        {"name": "data complete", "stage": "cutover", "result": "failed"}, "not a check"]}
    r = model.build(data, NOW)
    assert r.checks_origin == "checks"
    assert [(c.name, c.result, c.origin) for c in r.checks] == [
        ("target health", "ok", "checks"), ("data complete", "failed", "checks")]


def test_stale_traffic_only_when_recorded():
    assert model.build(record(DONE), NOW).stale_traffic is None
    stale = {"requests": 12, "last_request_at": "2026-11-29T22:57:01Z"}
    assert model.build(record(DONE) | {"stale_traffic": stale}, NOW).stale_traffic == stale


def test_optional_fields_may_be_absent():
    data = {k: v for k, v in record(DONE).items() if k not in ("dns", "sync_passes", "warnings", "switched_at")}
    r = model.build(data, NOW)
    assert (r.dns, r.sync_passes, r.warnings, r.switched_at, r.switched_offset_s) == (None, (), (), None, None)
    assert r.freeze.final_pass_s is None


def test_to_dict_is_plain_json_data():
    import json

    data = model.build(with_freeze_fields(record(DONE)), NOW).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["freeze"]["parts"][0] == {"name": "drain_s", "label": "hold and drain", "seconds": 0.281}
