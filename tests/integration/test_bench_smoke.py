"""`make bench BENCH_ARGS=--quick` as `make test` runs it (shop, the default env) and `make
bench-smoke` adds (--env notes: Flask, MariaDB, a worker and a timer): the quick benchmark on the
testbed writes every key of issues 5 and 17 and fails only on a correctness figure (a failed
request, a lost write). No timing is asserted here: the figures are printed and compared, for the
README, never pass/fail."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.testbed.config import REPO_ROOT

SECONDS = ("freeze_s", "naive_freeze_s", "max_request_latency_s", "initial_copy_s", "bare_rsync_s",
           "final_sync_s",
           # issue 17's figures (the sync lag may be None: not seen within its window)
           "freeze_p95_s", "client_pause_s", "bare_rsync_haxs_s", "start_to_gate_s", "initial_copy_vs_haxs")
COUNTS = ("failed_requests", "stale_client_failed_requests", "lost_writes")


# shop in `make test` (issue 17: the quick bench is part of it), notes in `make test-all`
@pytest.mark.parametrize("env", ["shop", pytest.param("notes", marks=pytest.mark.extended)])
def test_quick_bench_writes_every_key(testbed, tmp_path, env, record_property):
    out = tmp_path / "bench-results.json"
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--env", env, "--output", str(out)],
                          cwd=REPO_ROOT, env=testbed.ansible_env(), capture_output=True, text=True,
                          timeout=3600)
    # the bench itself exits 1 on a failed request or a lost write, naming them
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(proc.stdout[-3000:])  # the summary, for `pytest -s`
    # ... and at the end of `make test` (conftest.BenchFigures), with how long the bench took
    record_property("bench table", proc.stdout[proc.stdout.rfind("\nenv: ") + 1:].strip())
    results = json.loads(out.read_text())
    assert results["env"] == env and results["options"]["env"] == env
    for key in SECONDS:
        assert isinstance(results[key], (int, float)) and results[key] >= 0, (key, results[key])
    assert isinstance(results["freeze_ratio"], (int, float)) and results["freeze_ratio"] > 0
    for key in COUNTS:
        assert isinstance(results[key], int) and results[key] >= 0, (key, results[key])
    assert results["lost_writes"] == 0 and results["failed_requests"] == 0
    # the stale-cache client ran through the finish: the old server forwarded its tail, measured it,
    # and the move ended by itself once it stopped, with none of its requests failed
    assert results["stale_client_failed_requests"] == 0, results["runs"][0]
    assert results["stale_requests_forwarded"] > 0 and results["runs"][0]["stale_measured"]["total"] > 0
    assert results["runs"][0]["writes_acknowledged"] > 0  # the env's own writes were checked
    assert "srv2" in results["runs"][0]["servers"]        # ... and the moved env served them
    assert [p["files"] for p in results["scaling"]] == [1000]
    for point in results["scaling"]:
        assert point["changed"] == 100
        assert isinstance(point["final_sync_s"], (int, float)) and point["final_sync_s"] >= 0
    assert "sync_lag_waiting_s" in results and results["sync_lag_window_s"] > 0
    lever = results["levers"]["manifest_compare"]  # timed both ways in this run
    assert lever["as_argument_s"] > 0 and lever["as_file_s"] > 0
    stop = results["levers"]["app_stop"]
    assert stop["graceful_s"] > 0 and stop["kill_s"] > 0
    assert "with_s" in results["levers"]["follower"] and "without_s" in results["levers"]["follower"]
    assert "freeze_s" in proc.stdout and "lost_writes" in proc.stdout  # the table was printed
    assert "issue 17 (faster than a VM live migration):" in proc.stdout
    assert f"env: {env}\n" in proc.stdout
    testbed.reset()
