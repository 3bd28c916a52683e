"""`strackt-move evacuate` on the testbed: the plan from the real servers (srv3 has no room for
shop), the refusals that change nothing, and an evacuation of srv1 under client load that is
SIGKILLed mid-way and continued, with a second evacuation of srv1 refused meanwhile.

The testbed deploys one env (shop) with the product; the three-env evacuation of issue 16 waits
for the other sample apps to be deployable by the product (issue 13)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults._lib import read_until
from tests.integration.test_controller import assert_nothing_lost, cli, spawn
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME

pytestmark = pytest.mark.testbed


def _state(bed: Testbed) -> dict[str, object]:
    evacs = bed.cfg.state_dir / "moves" / "evacuations"
    return {"evacuations": sorted(p.name for p in evacs.glob("*.json")) if evacs.is_dir() else [],
            "moves": json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]}


def test_plans_and_refusals_change_nothing(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    before = _state(bed)

    plan = cli(bed, "evacuate", "srv1", "--plan")
    assert plan.returncode == 0, plan.stderr
    assert f"{ENV_NAME}  → srv2" in plan.stdout  # srv3's /srv is too small for shop

    nothing = cli(bed, "evacuate", "srv2", "--yes")
    assert nothing.returncode == 3 and "no env is attached to srv2" in nothing.stderr

    no_room = cli(bed, "evacuate", "srv1", "--to", "srv3", "--yes")
    assert no_room.returncode == 3, no_room.stderr
    assert f"no room for {ENV_NAME} (srv3 has" in no_room.stderr and "nothing was changed" in no_room.stderr

    itself = cli(bed, "evacuate", "srv1", "--to", "srv1,srv2", "--yes")
    assert itself.returncode == 2 and "srv1 cannot be evacuated to itself" in itself.stderr

    unknown = cli(bed, "evacuate", "srv1", "--to", "srv9", "--yes")
    assert unknown.returncode == 3 and "srv9 are not servers of the inventory" in unknown.stderr

    assert _state(bed) == before
    assert bed.ssh("srv2", f"test -e /srv/{ENV_NAME}", check=False).returncode != 0


def test_evacuation_under_load_survives_a_sigkill_and_refuses_a_second_driver(fresh_testbed: Testbed) -> None:
    bed = fresh_testbed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=2).start()
    try:
        first = spawn(bed, "evacuate", "srv1", "--parallel", "2", "--yes")
        read_until(first, f"[{ENV_NAME}] start: strackt-move start {ENV_NAME} --target srv2")
        second = cli(bed, "evacuate", "srv1", "--yes")
        assert second.returncode == 5 and "evacuation of srv1 is driven by" in second.stderr
        read_until(first, f"[{ENV_NAME}] == [4/5] sync")
        first.send_signal(signal.SIGKILL)  # the evacuation dies; its child move goes on by itself
        first.wait(timeout=30)

        status = cli(bed, "status", "--server", "srv1")
        assert status.returncode == 0 and f"{ENV_NAME}  → srv2" in status.stdout

        again = cli(bed, "evacuate", "srv1", timeout=1500)  # continues: the plan was confirmed already
        assert again.returncode == 0, again.stdout + again.stderr
        assert "continuing the evacuation of srv1" in again.stdout and "srv1 is empty" in again.stdout
        time.sleep(2)
    finally:
        client.stop()
    assert client.failed() == [], client.summary()
    assert_nothing_lost(bed, client)
    (done,) = [m for m in _state(bed)["moves"] if m["stage"] == "done"]  # type: ignore[union-attr]
    assert done["target"] == "srv2"
    assert _state(bed)["evacuations"] == []
    history = list((bed.cfg.state_dir / "moves" / "evacuations" / "history").glob("srv1-*.json"))
    assert len(history) == 1 and json.loads(history[0].read_text())["state"] == "done"
