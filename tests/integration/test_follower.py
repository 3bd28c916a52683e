"""The follower on the testbed: while a move waits at the gate, the source's changes reach the
target with no sync pass run, also again after a freeze that gave up; the switch-over and a
rollback stop it first, and nothing of the source reaches the target after the switch."""

from __future__ import annotations

import shlex
import time

import pytest

from tests.faults._lib import on
from tests.integration.test_controller import PATIENCE_S, assert_nothing_lost, cli, status
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME

pytestmark = pytest.mark.testbed
DATA = "/srv/shop/data"


def follower_units(bed: Testbed, server: str) -> dict[str, str]:
    """{unit: active state} of the follower units on ``server``."""
    out = bed.ssh(server, "systemctl list-units --all --plain --no-legend 'strackt-follow-*'").stdout
    return {f[0]: f[2] for f in (line.split() for line in out.splitlines()) if len(f) >= 3}


def wait_for(bed: Testbed, server: str, test: str) -> float | None:
    """Seconds until the shell ``test`` holds on ``server``, None if not within PATIENCE_S."""
    began = time.monotonic()
    seen = bed.ssh(server, f"for i in $(seq {PATIENCE_S * 10}); do {test} && exit 0; sleep 0.1; done; exit 1",
                   check=False, timeout=PATIENCE_S + 60)
    return round(time.monotonic() - began, 2) if seen.returncode == 0 else None


def recorded_passes(bed: Testbed) -> int:
    return status(bed)["moves"][0]["sync"]["passes"]


def test_changes_stream_to_the_target_at_the_gate_again_after_a_freeze_gave_up_and_stop_with_the_switch(
        fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=0).start()
    try:
        assert cli(bed, "start", ENV_NAME, "--target", "srv2").returncode == 4  # waiting at the gate
        move_id = status(bed)["moves"][0]["move_id"]
        assert follower_units(bed, "srv1") == {f"strackt-follow-{move_id}.service": "active"}
        passes = recorded_passes(bed)

        # written, changed and deleted on the source while nothing but the follower runs
        made, changed, gone = (shlex.quote(f"{DATA}/follow-{what}-{time.time_ns()}") for what in ("made", "changed", "gone"))
        bed.ssh("srv1", f"echo one > {changed}; echo x > {gone}")
        assert wait_for(bed, "srv2", f"test -e {changed} -a -e {gone}") is not None
        bed.ssh("srv1", f"mkdir -p {DATA}/follow-dir/deep && echo new > {DATA}/follow-dir/deep/f && "
                        f"echo made > {made}; echo two > {changed}; rm {gone}")
        assert wait_for(bed, "srv2", f"test -e {made} -a ! -e {gone} -a \"$(cat {changed})\" = two "
                                     f"-a -e {DATA}/follow-dir/deep/f") is not None, \
            "the source's changes did not reach the target while the move waited"
        assert recorded_passes(bed) == passes, "a sync pass ran: the follower's work is not what was seen"

        # a freeze that gives up (a file of the env held open for writing) stops the follower
        # first; the move waits again, and so must the follower stream again
        held = f"{DATA}/held-{time.time_ns()}.log"
        on(bed, "srv1", "strackt-fault-held-open", f"exec 3>>{held}; exec sleep 600")
        time.sleep(0.5)
        gave_up = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        bed.ssh("srv1", "systemctl stop strackt-fault-held-open")
        assert gave_up.returncode == 1 and "open for writing" in gave_up.stdout + gave_up.stderr, gave_up.stderr
        assert status(bed)["moves"][0]["stage"] == "awaiting_confirmation"
        assert follower_units(bed, "srv1").get(f"strackt-follow-{move_id}.service") == "active", \
            "the move waits at the gate again but its follower is gone"
        again = shlex.quote(f"{DATA}/follow-again-{time.time_ns()}")
        bed.ssh("srv1", f"echo again > {again}")
        assert wait_for(bed, "srv2", f"test -e {again}") is not None, \
            "after the freeze gave up the source's changes no longer reach the target"

        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        assert confirmed.returncode == 0, confirmed.stderr
        assert all(state != "active" for state in follower_units(bed, "srv1").values())
        # after the release nothing of the source may reach the target: a file put there by hand stays there
        late = shlex.quote(f"{DATA}/after-switch-{time.time_ns()}")
        bed.ssh("srv1", f"echo late > {late}")
        time.sleep(3)
        assert bed.ssh("srv2", f"test -e {late}", check=False).returncode != 0
        bed.ssh("srv1", f"rm -f {late}")
    finally:
        client.stop()
    assert_nothing_lost(bed, client)


@pytest.mark.extended
def test_a_rollback_at_the_gate_stops_the_follower_before_cleaning_the_target(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    assert cli(bed, "start", ENV_NAME, "--target", "srv2").returncode == 4
    assert "active" in follower_units(bed, "srv1").values()
    rolled = cli(bed, "rollback", ENV_NAME)
    assert rolled.returncode == 0, rolled.stderr
    assert all(state != "active" for state in follower_units(bed, "srv1").values())
    # written on the source after the rollback: the target keeps nothing of the env
    bed.ssh("srv1", f"echo after > {DATA}/after-rollback")
    time.sleep(2)
    assert bed.ssh("srv2", "test -e /srv/shop", check=False).returncode != 0, "the target still holds the env"
    bed.ssh("srv1", f"rm -f {DATA}/after-rollback")
