"""After the switch-over (issue 14): the old server forwards until stale traffic is measured gone.

shop moves srv1 -> srv2 while a DNS-following client and a stale-cache client (it resolved once
and keeps srv1's address) run. `confirm` returns once switched; `finish` refuses to finish while
the stale client keeps coming (exit 0, still switched, srv1 still forwarding, no failed request);
`finish --wait` finishes by itself once the stale client stopped and the testbed's quiet window
(tests/testbed/inventory.py TEST_FORWARDING: 10 s) passed."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.faults._lib import cli, spawn
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME
from tests.testbed.inventory import TEST_FORWARDING

pytestmark = [pytest.mark.testbed, pytest.mark.extended]
SOURCE, TARGET = "srv1", "srv2"


def record(bed: Testbed) -> dict:
    return json.loads(cli(bed, "status", ENV_NAME, "--json").stdout)["moves"][0]


def forwarding(bed: Testbed) -> bool:
    out = bed.ssh(SOURCE, f"systemctl list-units --state=active --plain --no-legend 'strackt-forward-{ENV_NAME}-*'")
    return bool(out.stdout.strip())


def test_finish_waits_for_the_stale_client_then_finishes_by_itself(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    live = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=1).start()
    stale = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=1, reads_per_s=1,
                   pinned_address=bed.addresses[SOURCE]).start()
    waiter: subprocess.Popen[str] | None = None
    try:
        assert cli(bed, "start", ENV_NAME, "--target", TARGET).returncode == 4
        began = time.monotonic()
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes")
        assert confirmed.returncode == 0, confirmed.stderr
        assert "strackt-move finish shop --wait" in confirmed.stdout
        print(f"confirm returned {time.monotonic() - began:.0f} s after it began, the move switched")
        assert record(bed)["stage"] == "switched"

        # the stale client keeps coming: each look measures it and refuses to finish yet
        looks = []
        quiet_s = int(TEST_FORWARDING["quiet"].rstrip("s"))
        deadline = time.monotonic() + 600  # patience: each look is a playbook run (20-60 s on a shared machine)
        while len(looks) < 2 and time.monotonic() < deadline:
            looked = cli(bed, "finish", ENV_NAME)
            assert looked.returncode == 0, looked.stderr
            move = record(bed)
            assert move["stage"] == "switched", move["stage"]
            measured = move["stale_traffic"]
            if measured is not None and (not looks or measured["measured_at"] != looks[-1]["measured_at"]):
                looks.append(measured)  # a new measurement (a look the record answered measures nothing)
                assert "not finished yet" in looked.stdout or "not finishing yet" in looked.stdout, looked.stdout
            assert forwarding(bed), "srv1 stopped forwarding while stale traffic came"
            time.sleep(3)
        assert len(looks) >= 2 and looks[-1]["total"] > looks[0]["total"] >= 1, looks
        shown = cli(bed, "status", ENV_NAME).stdout
        assert "stale     :" in shown and "finish    : not yet" in shown, shown

        # unattended: finish --wait looks again until the stale client is gone
        waiter = spawn(bed, "finish", ENV_NAME, "--wait", "--poll-max", "5s")
        time.sleep(2 * quiet_s)
        assert waiter.poll() is None, "finish --wait ended while the stale client still came"
        assert record(bed)["stage"] == "switched" and forwarding(bed)
        stale.stop()
        stopped = time.monotonic()
        out, _ = waiter.communicate(timeout=300)
        took = time.monotonic() - stopped
        print(out)
        assert waiter.returncode == 0, out
        assert f"done: {ENV_NAME} runs on {TARGET}" in out
        print(f"finished {took:.0f} s after the stale client stopped (quiet window {quiet_s} s)")
        assert took >= quiet_s, took
        assert not forwarding(bed)
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
        stale.stop()
        live.stop()
    archived = json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]
    done = [m for m in archived if m["stage"] == "done"][-1]
    tail = done["stale_traffic"]
    print(f"stale tail measured: {tail}")
    print(f"stale client: {len(stale.requests)} requests, {len(stale.failed())} failed; "
          f"live client: {len(live.requests)} requests, {len(live.failed())} failed")
    assert tail["total"] >= len(looks) and tail["log_found"] is True
    assert stale.failed() == [], [r for r in stale.failed()][:5]
    assert live.failed() == [], [r for r in live.failed()][:5]
    assert stale.settled_lost_writes(address=bed.addresses[TARGET]) == []
    assert live.settled_lost_writes(address=bed.addresses[TARGET]) == []
