"""The progress view and the gate summary, fed with recorded ansible-runner events."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from controller_testlib import a_pass, failed_event, new_record, ok_event, task_event, walk_to

from strackt_move import gate
from strackt_move.playbook_run import ResultCollector, describe_failure
from strackt_move.progress import ProgressView, extract_pass, format_live
from strackt_move.units import human_bytes, human_duration

RECORDED = Path(__file__).parent / "data" / "runner_events_sync_stage.json"
NOW = datetime(2026, 11, 25, 12, 10, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)


def _view(**kw):
    lines: list[str] = []
    return ProgressView(stage="sync", emit=lines.append, **kw), lines


def test_recorded_runner_events():
    """Events as ansible-runner 2.4 delivered them for a 3-task play (pass figures, set_stats, failure)."""
    events = json.loads(RECORDED.read_text())
    view, lines = _view(passes_seen=1)
    collector = ResultCollector(view)
    for event in events:
        collector(event)
    assert lines == [
        "[sync] rsync data",
        "[sync]   sync pass 2 (incremental): 7 files / 1.0 MiB changed of 120 files / 5.0 MiB in 2.5s (409.6 KiB/s)",
        "[sync] health",
        "[sync] fails",
        "[sync]   FAILED localhost: fails: target has no room",
    ]
    assert view.passes[0]["files_changed"] == 7
    assert collector.artifact_data["target_health"]["status"] == "ok"
    assert collector.artifact_data["hkc"] == "True"  # host key checking was on inside the run
    assert collector.failures == ["localhost: fails: target has no room"]


def test_rsync_pass_module_result_and_eta_from_the_previous_pass():
    view, lines = _view(previous_pass=a_pass(duration=12.0, bytes_=12 * 1024 * 1024))
    view(task_event("Sync data to the target", "strackt.move.rsync_pass"))
    view(ok_event("Sync data to the target", {"changed": True, "files_changed": 2, "bytes_changed": 2048,
                                              "files_total": 10, "bytes_total": 4096, "duration_s": 0.5,
                                              "started_at": "2026-11-25T12:00:00Z", "kind": "incremental"}))
    assert lines[0] == "[sync] Sync data to the target — ETA ~12s (last pass 1.0 MiB/s)"
    assert lines[1] == ("[sync]   sync pass 1 (incremental): 2 files / 2.0 KiB changed of 10 files / 4.0 KiB "
                        "in 0.5s (4.0 KiB/s)")
    assert view.previous_pass["bytes_changed"] == 2048


def test_repeated_task_start_and_other_results_stay_quiet():
    view, lines = _view()
    for _ in range(3):  # one task start per host in a free/linear strategy
        view(task_event("Install packages"))
    view(ok_event("Install packages", {"changed": True}))
    view({"event": "runner_on_skipped", "event_data": {"task": "x"}})
    view({"event": "verbose", "stdout": "noise"})
    view(task_event("Validating arguments against arg spec 'main' - Copy data"))
    assert lines == ["[sync] Install packages"]


def test_ignored_errors_and_unreachable():
    view, lines = _view()
    ignored = failed_event("probe", "not there")
    ignored["event_data"]["ignore_errors"] = True
    view(ignored)
    view({"event": "runner_on_unreachable",
          "event_data": {"host": "srv2", "task": "ping", "res": {"msg": "Host key verification failed."}}})
    assert lines == ["[sync]   UNREACHABLE srv2: ping: Host key verification failed."]
    assert describe_failure(ignored) is None


def test_live_progress_from_async_poll():
    view, lines = _view()
    view({"event": "runner_on_async_poll", "event_data": {"res": {"progress": {
        "files_done": 40, "bytes_done": 50 * 1024 * 1024, "bytes_total": 100 * 1024 * 1024,
        "rate_bps": 10 * 1024 * 1024}}}})
    assert lines == ["[sync]   syncing: 40 files, 50.0 MiB of 100.0 MiB at 10.0 MiB/s, ETA 5.0s"]
    assert format_live({"bytes_done": 1}) == "syncing: ? files, 1 B"


def test_extract_pass_shapes():
    p = a_pass()
    assert extract_pass({"sync_pass": p}) is p
    assert extract_pass({"pass": p}) is p
    assert extract_pass(p) is p
    assert extract_pass({"files_changed": 1}) is None


def test_units():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_duration(0.25) == "0.2s"
    assert human_duration(75) == "1m15s"
    assert human_duration(26 * 3600) == "26h00m"
    assert human_duration(50 * 3600) == "2d02h"


# ---- the gate (its figures are move_status.summary's; test_move_status.py tests them)


def _record(passes, waiting_since=T0, warnings=()):
    rec = walk_to(new_record(), "verify", now=T0)
    rec.commit = "c" * 40
    for p in passes:
        rec.add_pass(p)
    rec.wait(now=waiting_since)
    for w in warnings:
        rec.warn(w)
    return rec


def test_gate_summary_lines():
    passes = [a_pass(kind="full", duration=40.0, started_at="2026-11-25T11:00:00Z"),
              a_pass(duration=2.0, files=5, bytes_=4096, started_at="2026-11-25T12:05:00Z")]
    health = {"status": "ok", "commit": "c" * 40, "database": True, "server": "srv2"}
    summary = gate.summarize(_record(passes, warnings=["sync loop: recovered"]), NOW, {"target_health": health})
    lines = summary.lines()
    assert lines[0] == "== shop: verified on srv2, waiting for confirmation"
    assert "  commit going live : cccccccccccc (source runs bbbbbbbbbbbb)" in lines
    assert "  target health     : ok (commit cccccccccccc, database ok, server srv2)" in lines
    assert any(line.startswith("  last sync pass    : 4m58s ago — sync pass 2 (incremental): 5 files") for line in lines)
    assert any(line.startswith("  predicted freeze  : 3.0s (slowest of last 1 catch-up") for line in lines)
    assert "  waiting for       : 10m00s" in lines
    assert "  warning           : sync loop: recovered" in lines
    assert not summary.stale


def test_gate_flags_wrong_commit_down_database_and_staleness():
    health = {"status": "degraded", "commit": "d" * 40, "database": False}
    day_before = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    summary = gate.summarize(_record([], waiting_since=day_before), NOW, {"strackt_verify": {"health": health}})
    text = "\n".join(summary.lines())
    assert "degraded (commit dddddddddddd MISMATCH, database DOWN)" in text
    assert "last sync pass    : none recorded" in text
    assert "predicted freeze  : unknown" in text
    assert summary.stale and "STALE" in text
    assert gate.summarize(_record([], day_before), NOW, None, stale_after_s=48 * 3600).stale is False
