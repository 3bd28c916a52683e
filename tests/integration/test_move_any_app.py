"""notes (Flask + Alembic on MariaDB, a worker and a timer) and drop (Node.js + Redis) moved by the
product, under client load, up to the confirmation gate: preflight, provision, deploy, sync and
verify of an app the collection's code does not know, with the other envs on srv1 undisturbed.

On the target the move leaves the web process running and nothing else (workers and timers start
at the cutover), the site closed to the public, and the connected services open for the target's
address. The switch itself (cutover: start the target's units, open its site) is issue 12's.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.testbed import Testbed, inventory
from tests.testbed.client import Client, DropApp, NotesApp
from tests.testbed.config import APP_DOMAINS, DROP_NAME, ENV_DOMAIN, ENV_SOURCE, NOTES_NAME

pytestmark = pytest.mark.testbed

TARGET = "srv2"
APPS: dict[str, Any] = {NOTES_NAME: lambda: NotesApp(), DROP_NAME: lambda: DropApp(file_bytes=50_000)}


def answers(address: str, domain: str, path: str) -> int:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": domain})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("name", [NOTES_NAME, DROP_NAME])
def test_moved_to_the_gate_under_load_with_the_others_undisturbed(testbed: Testbed, name: str) -> None:
    testbed.reset()
    definitions = inventory.all_environments(testbed.cfg)
    source, target = testbed.addresses[ENV_SOURCE], testbed.addresses[TARGET]
    client = Client(testbed.dns_server, APP_DOMAINS[name], app=APPS[name](), writes_per_s=3, reads_per_s=3)
    others = {other: Client(testbed.dns_server, APP_DOMAINS[other], app=APPS[other](), writes_per_s=1, reads_per_s=1)
              for other in APPS if other != name}
    started = time.monotonic()
    client.start()
    for other in others.values():
        other.start()
    try:
        move = testbed.playbook("move.yml", "-e", f"env={name} target={TARGET}", "-e", "no_prompt=true", check=False)
        time.sleep(2)
    finally:
        client.stop()
        for other in others.values():
            other.stop()
    try:
        assert move.returncode == 0, move.stdout[-6000:]
        record = json.loads((testbed.cfg.state_dir / "moves" / "moves" / f"{name}.json").read_text())
        assert (record["stage"], record["state"]) == ("awaiting_confirmation", "waiting"), record
        assert client.failed() == [], client.failed()[:5]
        assert len(client.acknowledged_writes()) >= 5, client.summary()
        assert client.lost_writes(source) == [], client.summary()
        assert client.summary()["servers"] == [ENV_SOURCE]
        for other, other_client in others.items():
            assert other_client.failed() == [], (other, other_client.failed()[:5])
            assert other_client.lost_writes(source) == [], other
        assert answers(source, ENV_DOMAIN, "/health") == 200  # shop, on the same server, too

        # the target: its web process only, its site closed to everyone but the servers
        units = [f"strackt-env-{name}-{p}.service" for p in definitions[name]["processes"]]
        units += [f"strackt-env-{name}-{s}.timer" for s in definitions[name].get("schedule", {})]
        active = dict(zip(units, testbed.ssh(TARGET, "systemctl is-active " + " ".join(units), check=False).stdout.split()))
        assert {u: s for u, s in active.items() if s == "active"} == {f"strackt-env-{name}-web.service": "active"}, active
        health = definitions[name]["health"]["path"]
        assert answers(target, APP_DOMAINS[name], health) == 503  # closed until the release
        # ... while the source keeps running everything of the env
        assert testbed.ssh(ENV_SOURCE, f"systemctl is-active strackt-env-{name}.target").stdout.strip() == "active"
    finally:
        testbed.reset()
    print(f"{name}: moved to the gate in {time.monotonic() - started:.0f}s; {client.summary()}")

