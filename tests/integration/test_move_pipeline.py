"""The move pipeline on real servers: move.yml -> cutover.yml / rollback.yml / finish.yml (issue 3).

A client keeps writing and reading through the env's domain (resolved at the authoritative server
for every request) while the move runs. Every acknowledged write must survive.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.faults._lib import stop_follower
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME, ENV_SOURCE, ENV_TTL
from tests.testbed.dns import query_a

TARGET = "srv2"
MOVE = ("move.yml", "-e", f"env={ENV_NAME} target={TARGET}", "-e", "no_prompt=true")

# What must not change on the source when a move is rolled back before the switch-over.
SOURCE_SNAPSHOT = (
    "systemctl is-active strackt-env-{env}.target caddy; systemctl is-enabled strackt-env-{env}.target; "
    # Directories without their mtimes: the change journal's barrier file and a test's own
    # scratch file come and go in the data directory, touching only its mtime.
    "{{ find /srv/{env} /etc/caddy /etc/strackt /etc/systemd/system -xdev -type d -printf '%p %m %U %G\\n'; "
    "find /srv/{env} /etc/caddy /etc/strackt /etc/systemd/system -xdev ! -type d "
    "-printf '%p %m %U %G %s %T@ %l\\n'; }} | sort | sha256sum; "
    "systemctl list-units --state=active --plain --no-legend 'strackt-forward-*' | wc -l"
)


@pytest.fixture
def bed(fresh_testbed: Testbed) -> Testbed:
    return fresh_testbed


def run(bed: Testbed, *args: str, ok: bool = True):
    result = bed.playbook(*args, check=False)
    if ok:
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result


def record_path(bed: Testbed) -> Path:
    return bed.cfg.state_dir / "moves" / "moves" / f"{ENV_NAME}.json"


def record(bed: Testbed) -> dict | None:
    path = record_path(bed)
    return json.loads(path.read_text()) if path.exists() else None


def history(bed: Testbed) -> list[dict]:
    hist = bed.cfg.state_dir / "moves" / "moves" / "history"
    return [json.loads(p.read_text()) for p in sorted(hist.glob("*.json"))] if hist.exists() else []


def attached_to(bed: Testbed) -> str:
    data = yaml.safe_load((bed.inventory_dir / "group_vars" / "all" / "environments.yml").read_text())
    return data["strackt_environments"][ENV_NAME]["server"]


def health(address: str) -> dict:
    req = urllib.request.Request(f"http://{address}/health", headers={"Host": ENV_DOMAIN})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def readable(address: str, order_id: int) -> bool:
    req = urllib.request.Request(f"http://{address}/read/{order_id}", headers={"Host": ENV_DOMAIN})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["id"] == order_id
    except Exception:
        return False


def target_is_clean(bed: Testbed, server: str = TARGET) -> None:
    out = bed.ssh(server, f"ls -d /srv/{ENV_NAME} /etc/strackt/envs/{ENV_NAME}.env "
                          f"/etc/caddy/sites/{ENV_NAME}.caddy /etc/systemd/system/strackt-env-{ENV_NAME}.target "
                          f"/etc/systemd/system/strackt-env-{ENV_NAME}-* "
                          f"2>/dev/null; grep -c strackt-move: /root/.ssh/authorized_keys; "
                          f"id {ENV_NAME} 2>&1; true", check=False).stdout
    assert out.split("\n")[0].strip() == "0", out
    assert "no such user" in out, out
    hba = bed.ssh(ENV_SOURCE, "cat /etc/postgresql/15/main/pg_hba.conf").stdout
    assert bed.addresses[server] + "/32" not in hba


def forwarders(bed: Testbed) -> int:
    out = bed.ssh(ENV_SOURCE, f"systemctl list-units --state=active --plain --no-legend 'strackt-forward-{ENV_NAME}-*'")
    return len(out.stdout.split("\n")) - 1 if out.stdout.strip() else 0


def client(bed: Testbed) -> Client:
    return Client(dns_server=bed.dns_server, domain=ENV_DOMAIN, writes_per_s=5, reads_per_s=5).start()


def test_move_then_cutover_keeps_every_write_and_switches_everything(bed: Testbed) -> None:
    c = client(bed)
    try:
        run(bed, *MOVE)
        rec = record(bed)
        assert rec["stage"] == "awaiting_confirmation" and rec["state"] == "waiting"
        assert rec["waiting_since"] and len(rec["sync_passes"]) >= 2
        assert rec["dns"]["previous_ttl"] == ENV_TTL and rec["dns"]["move_ttl"] == 5
        assert query_a(bed.dns_server, ENV_DOMAIN) == ([bed.addresses[ENV_SOURCE]], 5)

        # never automatic
        refused = run(bed, "cutover.yml", "-e", f"env={ENV_NAME}", "-e", "no_prompt=true", ok=False)
        assert refused.returncode != 0 and "never automatic" in refused.stdout
        assert record(bed)["stage"] == "awaiting_confirmation"

        out = run(bed, "cutover.yml", "-e", f"env={ENV_NAME}", "-e", "confirm=true").stdout
        assert "freeze" in out
        time.sleep(2)  # the client's traffic now goes to the target
    finally:
        c.stop()

    rec = record(bed)
    assert rec["stage"] == "switched" and rec["switched_at"]
    assert rec["sync_passes"][-1]["kind"] == "final"
    target = bed.addresses[TARGET]
    # the TTL stays low until finish: a rollback must reach resolvers quickly
    assert query_a(bed.dns_server, ENV_DOMAIN) == ([target], rec["dns"]["move_ttl"])
    assert attached_to(bed) == TARGET
    h = health(target)
    assert h["server"] == TARGET and h["database"] is True and h["commit"] == rec["commit"]
    database_url = bed.ssh(TARGET, f"grep ^DATABASE_URL= /etc/strackt/envs/{ENV_NAME}.env").stdout
    assert f"@{bed.addresses[ENV_SOURCE]}:5432/{ENV_NAME}" in database_url
    acked = c.acknowledged_writes()
    assert acked, c.summary()
    lost = [i for i in acked if not readable(target, i)]
    assert lost == [], (lost, c.summary())
    files = bed.ssh(TARGET, f"ls /srv/{ENV_NAME}/data/uploads").stdout.split()
    assert {f"{i}.txt" for i in acked} <= set(files)
    # the old server forwards stale traffic to the new one
    assert health(bed.addresses[ENV_SOURCE])["server"] == TARGET

    # again: nothing to do
    again = run(bed, "cutover.yml", "-e", f"env={ENV_NAME}", "-e", "confirm=true").stdout
    assert "changed=0" in again.split("PLAY RECAP")[-1]

    # finish.yml alone does not end the move while the window is open (the request above was
    # stale: it reached the old server after the switch); it measures, says so, changes nothing
    waiting = run(bed, "finish.yml", "-e", f"env={ENV_NAME}").stdout
    assert "stays switched" in waiting and forwarders(bed) > 0, waiting[-3000:]
    measured = record(bed)
    assert measured["stage"] == "switched" and measured["stale"]["total"] >= 1, measured.get("stale")
    run(bed, "finish.yml", "-e", f"env={ENV_NAME}", "-e", "finish_now=true")
    assert record(bed) is None
    assert query_a(bed.dns_server, ENV_DOMAIN) == ([target], ENV_TTL)
    # the old server cannot start the env again nor reach its database
    old = bed.ssh(ENV_SOURCE, f"systemctl is-enabled strackt-env-{ENV_NAME}.target; ls /etc/caddy/sites "
                              f"/etc/strackt/envs; cat /var/lib/strackt-move/closed/{ENV_NAME}", check=False).stdout
    assert old.startswith("masked") and f"{ENV_NAME}.caddy" not in old and f"{ENV_NAME}.env" not in old, old
    assert f"{bed.addresses[ENV_SOURCE]}/32" not in bed.ssh(ENV_SOURCE, "grep 'strackt-move' "
                                                                        "/etc/postgresql/15/main/pg_hba.conf || true").stdout
    assert history(bed)[-1]["stage"] == "done"
    assert forwarders(bed) == 0
    assert bed.ssh(TARGET, "grep -c strackt-move: /root/.ssh/authorized_keys", check=False).stdout.strip() == "0"
    assert bed.ssh(ENV_SOURCE, "ls /root/.strackt-move 2>/dev/null | wc -l").stdout.strip() == "0"


def test_rollback_after_switch_keeps_writes_made_on_the_target(bed: Testbed) -> None:
    run(bed, *MOVE)
    run(bed, "cutover.yml", "-e", f"env={ENV_NAME}", "-e", "confirm=true")
    c = client(bed)  # resolves to the target now
    try:
        time.sleep(3)
        run(bed, "rollback.yml", "-e", f"env={ENV_NAME}")
        time.sleep(1)
    finally:
        c.stop()
    source = bed.addresses[ENV_SOURCE]
    written_on_target = [r.order_id for r in c.requests
                         if r.kind == "write" and r.status == 200 and r.address == bed.addresses[TARGET]]
    assert written_on_target, c.summary()
    lost = [i for i in c.acknowledged_writes() if not readable(source, i)]
    assert lost == [], (lost, c.summary())
    assert query_a(bed.dns_server, ENV_DOMAIN) == ([source], ENV_TTL)
    assert attached_to(bed) == ENV_SOURCE
    assert health(source)["server"] == ENV_SOURCE
    assert bed.ssh(ENV_SOURCE, f"systemctl is-enabled strackt-env-{ENV_NAME}.target").stdout.strip() == "enabled"
    assert forwarders(bed) == 0
    target_is_clean(bed)
    assert history(bed)[-1]["stage"] == "rolled_back"


EXTRA_MIGRATION = Path(__file__).resolve().parents[1] / "testbed" / "apps" / "shop_extra_migration" / "0002_order_customer.py"


@pytest.fixture(scope="class")
def waiting(testbed: Testbed):
    """One move waiting at the gate, and the source's snapshot from before it started."""
    testbed.reset()
    before = testbed.ssh(ENV_SOURCE, SOURCE_SNAPSHOT.format(env=ENV_NAME)).stdout
    run(testbed, *MOVE)
    yield testbed, before
    testbed.reset()


class TestOneWaitingMove:
    """What an operator does with a move waiting at the gate, in order, on ONE move (a move
    costs a minute or more on two cores): sync again in check mode and for real, look at its
    status and its key, try a cutover that must be refused, then roll it back."""

    def test_sync_in_check_mode_copies_nothing(self, waiting) -> None:
        bed, _ = waiting
        passes = len(record(bed)["sync_passes"])
        # what is judged is sync's check mode: the follower would stream the new file by itself
        stop_follower(bed, ENV_SOURCE)
        name = f"/srv/{ENV_NAME}/data/check-mode-{uuid.uuid4().hex}.txt"
        bed.ssh(ENV_SOURCE, f"echo new > {name} && chown {ENV_NAME}: {name}")
        try:
            out = run(bed, "sync.yml", "-e", f"env={ENV_NAME}", "--check").stdout
            assert "changed: [localhost -> srv1" in out or "changed: [localhost]" in out
            assert bed.ssh(TARGET, f"test -e {name}", check=False).returncode != 0
            assert len(record(bed)["sync_passes"]) == passes
        finally:
            bed.ssh(ENV_SOURCE, f"rm -f {name}", check=False)

    def test_sync_repeats_changing_only_what_changed_and_keeps_waiting(self, waiting) -> None:
        bed, _ = waiting
        waiting_since = record(bed)["waiting_since"]
        run(bed, "sync.yml", "-e", f"env={ENV_NAME}")
        second = run(bed, "sync.yml", "-e", f"env={ENV_NAME}").stdout
        rec = record(bed)
        assert rec["stage"] == "awaiting_confirmation" and rec["state"] == "waiting"
        assert rec["waiting_since"] == waiting_since
        assert rec["sync_passes"][-1]["files_changed"] == 0 and rec["sync_passes"][-1]["bytes_changed"] == 0
        assert "Copy the data to the target" in second
        # the pass itself changed nothing on the servers: only the record got a new pass
        recap = second.split("PLAY RECAP")[-1]
        assert "changed=1" in recap, recap
        # a move waiting for confirmation too long is flagged in the status output
        status = run(bed, "status.yml", "-e", f"env={ENV_NAME}", "-e", "wait_warn_hours=0.00001").stdout
        assert f"{ENV_NAME}: move " in status and "has waited" in status
        calm = run(bed, "status.yml", "-e", f"env={ENV_NAME}").stdout
        assert "has waited" not in calm and "stage awaiting_confirmation (waiting)" in calm

    def test_move_key_is_confined_and_record_is_private(self, waiting) -> None:
        bed, _ = waiting
        rec = record(bed)
        line = [ln for ln in bed.ssh(TARGET, "cat /root/.ssh/authorized_keys").stdout.splitlines()
                if ln.endswith("strackt-move:" + rec["move_id"])]
        assert len(line) == 1
        assert line[0].startswith(
            f'from="{bed.addresses[ENV_SOURCE]}",restrict,command="/usr/local/lib/strackt-move/rsync-guard.py '
            f'/srv/{ENV_NAME} {rec["move_id"]} data" ssh-ed25519 ')
        key_dir = f"/root/.strackt-move/{rec['move_id']}"
        assert bed.ssh(ENV_SOURCE, f"stat -c %a {key_dir}").stdout.strip() == "700"
        # the key runs rsync inside the env's data paths and nothing else
        shell = bed.ssh(ENV_SOURCE, f"ssh -i {key_dir}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
                                    f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={key_dir}/known_hosts "
                                    f"root@{bed.addresses[TARGET]} cat /etc/shadow", check=False)
        assert shell.returncode != 0 and "root:" not in shell.stdout
        path = record_path(bed)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        text = path.read_text()
        assert not any(v and v in text for v in bed.secrets.values())

    def test_cutover_refuses_pending_migrations_and_switches_nothing(self, waiting) -> None:
        bed, _ = waiting
        migration = f"/srv/{ENV_NAME}/app/shop/migrations/0002_order_customer.py"
        bed.ssh(TARGET, f"cat > {migration}", input=EXTRA_MIGRATION.read_text())
        try:
            refused = run(bed, "cutover.yml", "-e", f"env={ENV_NAME}", "-e", "confirm=true", ok=False)
        finally:
            bed.ssh(TARGET, f"rm -f {migration}")
        assert refused.returncode != 0
        assert "migrations waiting to run: Planned operations:, shop.0002_order_customer" in refused.stdout
        rec = record(bed)
        assert rec["stage"] == "cutover" and rec["state"] == "failed" and rec["switched_at"] is None
        assert query_a(bed.dns_server, ENV_DOMAIN)[0] == [bed.addresses[ENV_SOURCE]]
        assert attached_to(bed) == ENV_SOURCE
        assert health(bed.addresses[ENV_SOURCE])["server"] == ENV_SOURCE
        assert forwarders(bed) == 0

    def test_rollback_before_switch_leaves_the_source_as_it_was(self, waiting) -> None:
        bed, before = waiting
        move_id = record(bed)["move_id"]
        run(bed, "rollback.yml", "-e", f"env={ENV_NAME}")
        assert record(bed) is None
        assert history(bed)[-1]["move_id"] == move_id and history(bed)[-1]["stage"] == "rolled_back"
        assert bed.ssh(ENV_SOURCE, SOURCE_SNAPSHOT.format(env=ENV_NAME)).stdout == before
        assert query_a(bed.dns_server, ENV_DOMAIN) == ([bed.addresses[ENV_SOURCE]], ENV_TTL)
        assert attached_to(bed) == ENV_SOURCE
        target_is_clean(bed)
        assert health(bed.addresses[ENV_SOURCE])["server"] == ENV_SOURCE
        assert bed.ssh(ENV_SOURCE, f"test -e /root/.strackt-move/{move_id}", check=False).returncode != 0
        # and again: nothing left to do
        again = run(bed, "rollback.yml", "-e", f"env={ENV_NAME}").stdout
        assert "changed=0" in again.split("PLAY RECAP")[-1]
