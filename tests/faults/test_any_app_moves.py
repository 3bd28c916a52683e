"""Any app moves (issue 13): each sample env other than shop is moved srv1 -> srv2 and finished
under client load, while clients of the other envs on srv1 go on. notes is Flask + Alembic on
MariaDB with a worker (renders every note's file from a queue) and a timer (culls cache
entries), and takes chunked uploads; drop is Node.js on Redis with multipart uploads.

A stale-cache client of the moved env (pinned to srv1, as a resolver that kept the old address)
runs through the whole move: after the switch srv1 forwards it for its tail (STALE_TAIL_S), then it
re-resolves; `confirm --wait` finishes the move by itself once srv1 saw no stale request for the
testbed's quiet window.

At the gate, before the confirmation, the target runs the env's web process and nothing else
(workers and timers start at the switch-over), its site is closed to everyone but the servers,
and the source still runs all of the env.

Each row: 0 failed requests (the stale client's included) and 0 lost acknowledged writes (database
rows and files, read back through the new server), no rollback, the env's every unit running on the new server and
retired on the old, and the envs left on srv1 undisturbed (0 failed requests, 0 lost writes,
their workers and timers still running)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults._lib import cli, finish, http_status, read_until, spawn
from tests.testbed import Testbed, inventory
from tests.testbed.client import Client, DropApp, NotesApp, ShopApp
from tests.testbed.config import APP_DOMAINS, DROP_NAME, ENV_DOMAIN, ENV_NAME, ENV_SOURCE, NOTES_NAME
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

TARGET = "srv2"
DOMAINS = {ENV_NAME: ENV_DOMAIN, **APP_DOMAINS}
#: how long the stale client's resolver keeps srv1's address after the switch, then asks again
STALE_TAIL_S = 15.0


def client_of(bed: Testbed, env: str, rate: float, pinned_address: str | None = None) -> Client:
    app: Any = {ENV_NAME: ShopApp, NOTES_NAME: lambda: NotesApp(upload_every=4), DROP_NAME: DropApp}[env]()
    return Client(bed.dns_server, DOMAINS[env], writes_per_s=rate, reads_per_s=rate, app=app,
                  pinned_address=pinned_address)


def unit_states(bed: Testbed, server: str, units: list[str]) -> list[str]:
    return bed.ssh(server, "systemctl is-active " + " ".join(units) + "; true", check=False).stdout.split()


def at_the_gate(bed: Testbed, env: str, units: list[str], health_path: str) -> dict[str, Any]:
    """What the move left on both servers while it waits for the confirmation."""
    return {
        "active on the target": [u for u, s in zip(units, unit_states(bed, TARGET, units)) if s == "active"],
        "the target's site": http_status(bed.addresses[TARGET], DOMAINS[env], health_path),
        "the env on the source": unit_states(bed, ENV_SOURCE, [f"strackt-env-{env}.target"]),
    }


@pytest.mark.parametrize("env", [NOTES_NAME, DROP_NAME])
def test_a_sample_app_moves_under_load_with_the_other_envs_undisturbed(fresh_testbed: Testbed,
                                                                        request: pytest.FixtureRequest,
                                                                        env: str) -> None:
    bed = fresh_testbed
    definitions = inventory.all_environments(bed.cfg)
    others = [name for name in definitions if name != env]
    units = {name: [f"strackt-env-{name}-{process}.service" for process in definitions[name]["processes"]]
             + [f"strackt-env-{name}-{job}.timer" for job in definitions[name].get("schedule") or {}]
             for name in definitions}
    mover = client_of(bed, env, 3).start()
    stale = client_of(bed, env, 1, pinned_address=bed.addresses[ENV_SOURCE]).start()
    bystanders = {name: client_of(bed, name, 1).start() for name in others}
    try:
        started = cli(bed, "start", env, "--target", TARGET)
        assert started.returncode == 4, started.stdout[-3000:] + started.stderr  # waiting at the gate
        gate = at_the_gate(bed, env, units[env], definitions[env]["health"]["path"])
        # the web process only, the site closed until the release, the source running all of it
        assert gate == {"active on the target": [f"strackt-env-{env}-web.service"], "the target's site": 503,
                        "the env on the source": ["active"]}, gate
        confirm = spawn(bed, "confirm", env, "--yes", "--wait")
        read_until(confirm, "== switched")
        stale.re_resolve_after(STALE_TAIL_S)   # its tail: srv1 forwards it, the finish waits for it
        confirmed_rc, confirmed_out = finish(confirm)
        time.sleep(2)
    finally:
        mover.stop()
        stale.stop()
        for client in bystanders.values():
            client.stop()
    address = query_a(bed.dns_server, DOMAINS[env])[0][0]
    failed = mover.failed()
    lost = mover.settled_lost_writes()
    stale_failed = stale.failed()
    stale_lost = stale.settled_lost_writes(address=bed.addresses[TARGET])
    forwarded = [r for r in stale.requests if r.address == bed.addresses[ENV_SOURCE] and r.server == TARGET]
    disturbed = {name: (len(c.failed()), len(c.settled_lost_writes())) for name, c in bystanders.items()}
    on_target = unit_states(bed, TARGET, units[env])
    on_source = bed.ssh(ENV_SOURCE, "systemctl is-enabled " + " ".join(units[env]) + "; true", check=False).stdout.split()
    others_running = {name: unit_states(bed, ENV_SOURCE, units[name]) for name in others}
    ok = (confirmed_rc == 0 and address == bed.addresses[TARGET] and failed == [] and lost == []
          and stale_failed == [] and stale_lost == [] and len(forwarded) > 0
          and all(v == (0, 0) for v in disturbed.values()) and set(on_target) == {"active"}
          and set(on_source) == {"masked"} and all(set(s) == {"active"} for s in others_running.values()))
    summary = mover.summary()
    request.node.user_properties.append(("row", {
        "fault": f"{env} moved and finished under load, the other envs on srv1 undisturbed",
        "survived": ok, "lost": len(lost) + len(stale_lost),
        "note": f"{summary['writes_acknowledged']} writes, {len(failed)} failed requests; stale-cache client: "
                f"{len(stale.requests)} requests, {len(forwarded)} forwarded by srv1 (from the release to the end "
                f"of its {STALE_TAIL_S:g} s tail), {len(stale_failed)} failed"}))
    assert confirmed_rc == 0, confirmed_out[-4000:]
    assert f"done: {env} runs on {TARGET}" in confirmed_out, confirmed_out[-3000:]
    assert address == bed.addresses[TARGET]
    assert failed == [], [(r.kind, r.status, r.error) for r in failed[:10]]
    assert lost == [], lost[:10]
    assert stale_failed == [], [(r.kind, r.status, r.address, r.error) for r in stale_failed[:10]]
    assert stale_lost == [], stale_lost[:10]
    assert forwarded, "srv1 forwarded none of the stale client's requests after the switch"
    assert summary["writes_acknowledged"] >= 10, summary
    assert all(v == (0, 0) for v in disturbed.values()), f"(failed, lost) of the other envs: {disturbed}"
    assert set(on_target) == {"active"}, dict(zip(units[env], on_target))
    assert set(on_source) == {"masked"}, dict(zip(units[env], on_source))
    assert all(set(s) == {"active"} for s in others_running.values()), others_running
