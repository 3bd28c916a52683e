"""`make bench` as CI runs it: the quick benchmark on the testbed writes every key of issue 5.
No timing is asserted here (the figures are for the README, not for pass/fail)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.testbed.config import REPO_ROOT

SECONDS = ("freeze_s", "naive_freeze_s", "max_request_latency_s", "initial_copy_s", "bare_rsync_s",
           "final_sync_s")
COUNTS = ("failed_requests", "stale_client_failed_requests", "lost_writes")


def test_quick_bench_writes_every_key(testbed, tmp_path):
    out = tmp_path / "bench-results.json"
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--output", str(out)],
                          cwd=REPO_ROOT, env=testbed.ansible_env(), capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    for key in SECONDS:
        assert isinstance(results[key], (int, float)) and results[key] >= 0, (key, results[key])
    assert isinstance(results["freeze_ratio"], (int, float)) and results["freeze_ratio"] > 0
    for key in COUNTS:
        assert isinstance(results[key], int) and results[key] >= 0, (key, results[key])
    assert results["lost_writes"] == 0
    assert [p["files"] for p in results["scaling"]] == [200, 500, 1000]
    for point in results["scaling"]:
        assert point["changed"] == 100
        assert isinstance(point["final_sync_s"], (int, float)) and point["final_sync_s"] >= 0
    assert "freeze_s" in proc.stdout and "lost_writes" in proc.stdout  # the table was printed
    testbed.reset()
