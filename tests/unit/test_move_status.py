"""The one status summary and the one freeze prediction (move_status)."""

import datetime

import pytest

from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_status as st

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
NS = 10**9


def a_pass(kind="incremental", duration=1.5, started_at="2026-11-25T12:00:00Z", started_at_ns=None):
    p = {"started_at": started_at, "duration_s": duration, "files_changed": 3, "bytes_changed": 3000,
         "files_total": 100, "bytes_total": 100_000, "kind": kind}
    if started_at_ns is not None:
        p["started_at_ns"] = started_at_ns
    return p


def waiting(passes=(), since=T0):
    rec = mr.MoveRecord.new("shop", "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40, now=T0)
    rec.complete("preflight", now=T0)
    for stage in ("provision", "deploy", "sync", "verify"):
        rec.transition(stage, now=T0)
        rec.complete(stage, now=T0 + datetime.timedelta(seconds=10))
    for p in passes:
        rec.add_pass(p)
    rec.wait(now=since)
    return rec


def test_freeze_prediction():
    assert st.predict_freeze([]).seconds is None
    first_only = st.predict_freeze([a_pass(kind="full", duration=40.0)])
    assert first_only.seconds == 40.0 + st.FREEZE_OVERHEAD_S and "upper bound" in first_only.basis
    passes = [a_pass(kind="full", duration=40.0)] + [a_pass(duration=d) for d in (9.0, 1.0, 2.0, 3.0)]
    pred = st.predict_freeze(passes)
    assert pred.seconds == 3.0 + st.FREEZE_OVERHEAD_S  # the 9 s pass is older than the last three
    assert "last 3 catch-up" in pred.basis
    # every pass after the first is a catch-up pass, whatever its label; reverse passes do not count
    labelled_full = [a_pass(kind="full", duration=40.0), a_pass(kind="full", duration=2.0),
                     a_pass(kind="reverse", duration=30.0)]
    assert st.predict_freeze(labelled_full).seconds == 2.0 + st.FREEZE_OVERHEAD_S
    # records' passes and their dicts predict the same
    objects = [mr.SyncPass.from_dict(p) for p in passes]
    assert st.predict_freeze(objects) == pred


def test_waiting_too_long_is_stale_once_past_the_threshold():
    rec = waiting()
    assert st.DEFAULT_WAIT_WARN_S == 24 * 3600
    assert st.is_stale(rec, T0 + datetime.timedelta(hours=23)) is False
    late = T0 + datetime.timedelta(hours=25)
    assert st.is_stale(rec, late) is True
    assert st.stale_message(rec, late) == (
        "shop: move shop-20261125T120000Z has waited 25h00m for confirmation (more than 24h00m); confirm it or "
        "roll it back — the target drifts and the source keeps the lowered DNS TTL meanwhile")
    assert st.is_stale(rec, T0 + datetime.timedelta(hours=2), wait_warn_s=3600)
    assert st.stale_message(rec, T0 + datetime.timedelta(hours=23)) is None
    rec.transition("cutover")
    assert st.is_stale(rec, late) is False and st.waiting_seconds(rec, late) is None


def test_instants_the_roles_compare_data_with():
    rec = waiting()
    assert st.last_pass_started_ns(rec) is None and st.target_writes_since_ns(rec) is None
    rec.add_pass(a_pass(started_at="2026-11-25T12:01:00Z"))  # recorded without ns: to the second
    assert st.last_pass_started_ns(rec) == int((T0 + datetime.timedelta(minutes=1)).timestamp()) * NS
    exact = int((T0 + datetime.timedelta(minutes=2)).timestamp()) * NS + 250_000_000
    rec.add_pass(a_pass(kind="final", started_at="2026-11-25T12:02:00Z", started_at_ns=exact))
    assert st.last_pass_started_ns(rec) == exact
    assert st.target_writes_since_ns(rec) == exact  # no freeze recorded: the last pass's start
    rec.transition("cutover")
    rec.set_freeze(mr.Freeze(released_at_ns=exact + 900_000_000, held_at_ns=exact - 100_000_000))
    assert st.target_writes_since_ns(rec) == exact + 900_000_000


def test_stage_timings_end_the_wait_at_the_confirmation():
    history = [
        {"stage": "verify", "event": "started", "at": "2026-11-25T12:00:00Z"},
        {"stage": "verify", "event": "completed", "at": "2026-11-25T12:00:05Z"},
        {"stage": "awaiting_confirmation", "event": "started", "at": "2026-11-25T12:00:05Z"},
        {"stage": "cutover", "event": "started", "at": "2026-11-25T12:10:05Z"},
        {"stage": "deploy", "event": "started", "at": "2026-11-25T12:10:06Z"},
        {"stage": "cutover", "event": "completed", "at": "2026-11-25T12:10:20Z"},
    ]
    timings = {t["stage"]: t for t in st.stage_timings(history)}
    assert timings["awaiting_confirmation"]["result"] == "completed"
    assert timings["awaiting_confirmation"]["duration_s"] == 600.0
    # the stage started last is still running
    assert timings["deploy"]["result"] == "running"
    assert timings["cutover"]["duration_s"] == 15.0
    assert timings["verify"]["duration_s"] == 5.0
    # the record's own events give the same
    events = [mr.StageEvent(**e, message="") for e in history]
    assert st.stage_timings(events) == st.stage_timings(history)


def test_summary_of_a_waiting_move():
    passes = [a_pass(kind="full", duration=40.0, started_at="2026-11-25T11:00:00Z"),
              a_pass(duration=2.0, started_at="2026-11-25T12:05:00Z")]
    rec = waiting(passes, since=T0 + datetime.timedelta(minutes=6))
    rec.warn("the source runs another commit")
    now = T0 + datetime.timedelta(minutes=10)
    s = st.summary(rec, now)
    assert s["as_of"] == "2026-11-25T12:10:00Z"
    assert (s["env"], s["move_id"], s["stage"], s["state"]) == ("shop", "shop-20261125T120000Z",
                                                                 "awaiting_confirmation", "waiting")
    assert (s["started_at"], s["elapsed_s"]) == ("2026-11-25T12:00:00Z", 600.0)
    assert [t["stage"] for t in s["stage_timings"]] == ["preflight", "provision", "deploy", "sync", "verify",
                                                        "awaiting_confirmation"]
    assert (s["waiting_since"], s["waiting_s"], s["stale"], s["stale_message"]) == \
        ("2026-11-25T12:06:00Z", 240.0, False, None)
    assert s["sync"] == {"passes": 2, "last_pass": passes[-1], "lag_s": 298.0, "database": None}
    assert s["predicted_freeze_s"] == 3.0 and s["predicted_freeze_basis"].startswith("slowest of last 1")
    assert s["freeze"] is None
    assert s["last_pass_started_ns"] == s["target_writes_since_ns"] == \
        int((T0 + datetime.timedelta(minutes=5)).timestamp()) * NS
    assert s["warnings"] == ["the source runs another commit"]
    assert st.summary(rec, now, wait_warn_s=60)["stale"] is True


@pytest.mark.parametrize("seconds, text", [(None, "?"), (-3, "0.0s"), (0.25, "0.2s"), (42, "42s"), (75, "1m15s"),
                                           (26 * 3600, "26h00m"), (50 * 3600, "2d02h")])
def test_human_duration(seconds, text):
    assert st.human_duration(seconds) == text


def test_a_move_carrying_the_database_shows_the_lag_the_last_pass_saw() -> None:
    rec = mr.MoveRecord.new("shop", "srv1", "srv2", "10.0.0.1", "10.0.0.2", "a" * 40,
                            database={"server": "srv2", "address": "10.0.0.2"})
    assert st.database_lag(rec) == {"server": "srv2", "lag_bytes": None, "lag_s": None, "seen_at": None}
    base = dict(started_at="2026-11-25T12:00:00Z", duration_s=1.0, files_changed=1, bytes_changed=1,
                files_total=1, bytes_total=1, kind="full")
    rec.add_pass(mr.SyncPass.from_dict(dict(base, database_lag_bytes=408, database_lag_s=0.03)))
    rec.add_pass(mr.SyncPass.from_dict(dict(base, started_at="2026-11-25T12:01:00Z")))  # no lag seen
    again = mr.MoveRecord.from_json(rec.to_json())  # kept in the record
    assert st.database_lag(again) == {"server": "srv2", "lag_bytes": 408, "lag_s": 0.03,
                                               "seen_at": "2026-11-25T12:00:00Z"}
    assert again.database == {"server": "srv2", "address": "10.0.0.2"}


def test_a_move_leaving_the_database_shows_none_and_a_bad_database_field_is_refused() -> None:
    rec = mr.MoveRecord.new("shop", "srv1", "srv2", "10.0.0.1", "10.0.0.2", "a" * 40)
    assert st.database_lag(rec) is None
    assert "database" not in rec.to_dict()
    data = rec.to_dict(with_checksum=False)
    data["database"] = {"server": "srv2"}
    data["checksum"] = mr.checksum_of(data)
    with pytest.raises(mr.RecordError, match="database.address"):
        mr.MoveRecord.from_dict(data)


SWITCHED = T0 + datetime.timedelta(minutes=2)
TESTBED_FORWARDING = {"min_s": 0, "quiet_s": 10, "max_s": 600}


def switched(forwarding=None):
    rec = mr.MoveRecord.new("shop", "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40, now=T0,
                            forwarding=forwarding)
    rec.complete("preflight", now=T0)
    for stage in ("provision", "deploy", "sync", "verify"):
        rec.transition(stage, now=T0)
        rec.complete(stage, now=T0)
    rec.wait(now=T0)
    rec.transition("cutover", now=SWITCHED)
    rec.complete("cutover", now=SWITCHED)
    rec.transition("switched", now=SWITCHED)
    rec.complete("switched", now=SWITCHED)
    return rec


def test_before_the_first_measurement_the_finish_is_judged_by_the_envs_own_forwarding():
    """Right after the switch nothing is measured yet: status must name the env's own forwarding.max
    (recorded with the move), not the default 72 h; a move whose max passed may finish."""
    now = SWITCHED + datetime.timedelta(minutes=1)
    own = switched(TESTBED_FORWARDING)
    decision = st.finish_decision(own, now)
    assert decision.finish is False
    assert "forwarding until 2026-11-25T12:12:00Z (forwarding.max)" in decision.why, decision.why
    at_max = st.finish_decision(own, SWITCHED + datetime.timedelta(seconds=600))
    assert at_max.finish is True and "forwarding.max 10m00s" in at_max.why, at_max.why
    # a record written before the env's settings were recorded: the defaults, as before
    old = switched()
    assert "forwarding until 2026-11-28T12:02:00Z (forwarding.max)" in st.finish_decision(old, now).why
    # once measured, the settings that measurement was judged by (the env's at that finish) decide
    own.set_stale(mr.StaleTraffic(measured_at="2026-11-25T12:03:00Z", since="2026-11-25T12:02:00Z", total=3,
                                  last_seen="2026-11-25T12:02:50Z", per_minute=[3], log_found=True,
                                  forwarding={"min_s": 0, "quiet_s": 20, "max_s": 900}))
    assert "at the latest 2026-11-25T12:17:00Z" in st.finish_decision(own, now).why


def test_the_recorded_forwarding_settings_survive_the_record_file_and_are_checked():
    rec = switched(TESTBED_FORWARDING)
    again = mr.MoveRecord.from_json(rec.to_json())
    assert again.forwarding == TESTBED_FORWARDING
    assert "forwarding" not in switched().to_dict()   # older records stay as they were
    bad = rec.to_dict(with_checksum=False)
    bad["forwarding"] = {"min_s": 0, "quiet_s": -1, "max_s": 600}
    bad["checksum"] = mr.checksum_of(bad)
    with pytest.raises(mr.RecordError, match="forwarding.quiet_s"):
        mr.MoveRecord.from_dict(bad)
    with pytest.raises(ValueError, match="forwarding"):
        mr.MoveRecord.new("shop", "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40, forwarding={"min_s": 0})
