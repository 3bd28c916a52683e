"""strackt-move on the testbed: a full move through the CLI with a client writing, SIGKILL in the
middle of deploy and of sync then `resume`, `confirm` refused before verify, the sync loop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.faults._lib import kill_when, passes, read_until
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME, REPO_ROOT
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed
# How long to wait for the sync loop to get somewhere: patience, not a speed bound.
PATIENCE_S = 300


def _env(testbed: Testbed) -> dict[str, str]:
    env = testbed.ansible_env()
    env["STRACKT_STATE_DIR"] = str(testbed.cfg.state_dir / "moves")  # testbed.reset() clears it
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "controller"), str(REPO_ROOT / "collections")])
    return env


def _cmd(testbed: Testbed, *args: str) -> list[str]:
    return [sys.executable, "-m", "strackt_move", "-i", str(testbed.inventory_dir), *args]


def cli(testbed: Testbed, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(_cmd(testbed, *args), env=_env(testbed), cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(f"$ strackt-move {' '.join(args)}  -> {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def spawn(testbed: Testbed, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(_cmd(testbed, *args), env=_env(testbed), cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            bufsize=1)


def status(testbed: Testbed) -> dict[str, Any]:
    result = cli(testbed, "status", ENV_NAME, "--json")
    return json.loads(result.stdout)


def fetch_json(address: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": ENV_DOMAIN})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def assert_nothing_lost(testbed: Testbed, client: Client) -> None:
    address = query_a(testbed.dns_server, ENV_DOMAIN)[0][0]
    assert address == testbed.addresses["srv2"]
    assert fetch_json(address, "/health")["server"] == "srv2"
    acknowledged = client.acknowledged_writes()
    assert acknowledged, "the client never got a write through"
    missing = [i for i in acknowledged if fetch_json(address, f"/read/{i}").get("id") != i]
    assert missing == [], f"acknowledged writes missing on srv2: {missing}"


def uploads(testbed: Testbed, server: str) -> set[str]:
    out = testbed.ssh(server, "ls -1 /srv/shop/data/uploads 2>/dev/null || true").stdout
    return {line for line in out.splitlines() if line}


def test_confirm_is_refused_without_a_move(fresh_testbed: Testbed) -> None:
    assert cli(fresh_testbed, "confirm", ENV_NAME, "--yes").returncode == 6


def test_preflight_refuses_the_source_as_target(fresh_testbed: Testbed) -> None:
    result = cli(fresh_testbed, "start", ENV_NAME, "--target", "srv1")
    assert result.returncode == 3, result.stderr  # srv1 is the source: refused, nothing changed
    assert "preflight refused" in result.stderr and "next:" in result.stderr
    assert cli(fresh_testbed, "list", "--json").stdout.count('"move_id"') == 0


def test_full_move_with_a_client_writing(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=2).start()
    try:
        started = cli(bed, "start", ENV_NAME, "--target", "srv2")
        assert started.returncode == 4, started.stderr
        for text in ("commit going live", "target health     : ok", "last sync pass", "predicted freeze",
                     "sync pass 1"):
            assert text in started.stdout
        doc = status(bed)
        (move,) = doc["moves"]
        assert (move["stage"], move["state"], move["next"].split()[1]) == ("awaiting_confirmation", "waiting", "confirm")
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--wait")  # then waits until stale traffic is gone
        assert confirmed.returncode == 0, confirmed.stderr
        assert "done: shop runs on srv2" in confirmed.stdout
        time.sleep(2)
    finally:
        client.stop()
    assert_nothing_lost(bed, client)
    assert json.loads(cli(bed, "list", "--json").stdout)["moves"] == []
    (done,) = [m for m in json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"] if m["stage"] == "done"]
    assert done["target"] == "srv2"


def test_sigkill_in_deploy_and_in_sync_then_resume(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=2).start()
    try:
        kill_when(spawn(bed, "start", ENV_NAME, "--target", "srv2"), "[deploy] Check out the commit")
        move = status(bed)["moves"][0]
        assert (move["stage"], move["state"]) == ("deploy", "running")
        assert move["next"].startswith("strackt-move resume shop")
        refused = cli(bed, "confirm", ENV_NAME, "--yes")
        assert refused.returncode == 7 and "not verified" in refused.stderr

        kill_when(spawn(bed, "resume", ENV_NAME), "[sync] Copy the data to the target (pass 1)")
        move = status(bed)["moves"][0]
        assert move["stage"] == "sync" and move["state"] in ("running", "failed")

        resumed = cli(bed, "resume", ENV_NAME)
        assert resumed.returncode == 4, resumed.stderr
        assert "[1/5] preflight" not in resumed.stdout and "[4/5] sync" in resumed.stdout
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        assert confirmed.returncode == 0, confirmed.stderr
        time.sleep(2)
    finally:
        client.stop()
    assert_nothing_lost(bed, client)
    assert status(bed)["moves"][0]["stage"] == "switched"


def _began(sync_pass: dict[str, Any]) -> float:
    """When a recorded pass began (whole seconds, rounded down: a pass recorded as beginning after
    an instant did)."""
    return datetime.strptime(sync_pass["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.extended
def test_sync_loop_keeps_the_target_current_and_stops_on_confirm(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    interval = 5
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=0).start()
    loop = None
    try:
        assert cli(bed, "start", ENV_NAME, "--target", "srv2").returncode == 4
        loop = spawn(bed, "sync", ENV_NAME, "--loop", "--interval", str(interval))
        read_until(loop, "== sync loop for")  # it holds the loop's lock now
        second = cli(bed, "sync", ENV_NAME, "--loop")
        assert second.returncode == 5 and "already running" in second.stderr
        passes_before = status(bed)["moves"][0]["sync"]["passes"]
        on_source = uploads(bed, "srv1")
        listed = time.time()
        # until a pass that began after the listing is recorded (and the loop made two passes)
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            done = passes(bed)
            if len(done) >= passes_before + 2 and any(_began(p) > listed for p in done):
                break
            time.sleep(1)
        # files the source had before a pass began and still has (the app writes NAME.tmp and
        # renames it: a listing can catch a .tmp that was gone before the pass; seen in a full run)
        kept_on_source = on_source & uploads(bed, "srv1")
        missed = kept_on_source - uploads(bed, "srv2")
        assert not missed, f"the target missed files the source had before a pass began: {sorted(missed)[:10]}"
        move = status(bed)["moves"][0]
        assert move["sync"]["passes"] >= passes_before + 2
        assert move["driver"]["sync_loop"] is not None
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        assert confirmed.returncode == 0, confirmed.stderr
        out, _ = loop.communicate(timeout=interval + 60)
        assert loop.returncode == 0, out
        assert "the sync loop ends" in out
    finally:
        client.stop()
        if loop is not None and loop.poll() is None:
            loop.send_signal(signal.SIGTERM)
            loop.wait(timeout=60)
    assert_nothing_lost(bed, client)
