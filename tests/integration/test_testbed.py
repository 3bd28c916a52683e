"""The testbed's promises, checked against the real servers (issue: foundation)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.tsig
import dns.update
import pytest

from tests.testbed import Testbed, TestbedConfig
from tests.testbed.config import ENV_DOMAIN, REPO_ROOT
from tests.testbed.dns import query_a


def http_get(address: str, host: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": host})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def test_ansible_reaches_every_server_with_host_key_checking(testbed: Testbed) -> None:
    result = subprocess.run(
        [".venv/bin/ansible", "-i", str(testbed.inventory_dir), "servers", "-m", "ansible.builtin.ping", "-o"],
        env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("srv1", "srv2", "srv3"):
        assert f"{name} | SUCCESS" in result.stdout


def test_each_server_is_a_booted_systemd_host_with_its_own_identity(testbed: Testbed) -> None:
    host_keys = set()
    for name in ("srv1", "srv2", "srv3"):
        state = testbed.ssh(name, "systemctl is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded")
        assert testbed.ssh(name, "hostname").stdout.strip() == name
        address = testbed.ssh(name, "ip -4 -o addr show eth0").stdout
        assert testbed.addresses[name] + "/24" in address
        host_keys.add(testbed.ssh(name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1])
    assert len(host_keys) == 3


def test_calls_share_one_kept_open_connection_per_server(testbed: Testbed) -> None:
    testbed.ssh("srv1", "true")
    check = subprocess.run(testbed.ssh_command("srv1", *testbed.mux_options(), "-O", "check"),
                           text=True, capture_output=True, timeout=30)
    assert check.returncode == 0 and "Master running" in check.stderr, check.stderr
    assert testbed.ssh("srv1", "cat", input="through the shared connection").stdout == "through the shared connection"


def test_a_changed_host_key_stops_ssh(testbed: Testbed, tmp_path) -> None:
    known = tmp_path / "known_hosts"
    other_key = testbed.ssh("srv2", "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    # srv1's address pinned to srv2's key: exactly what a swapped or spoofed server looks like.
    known.write_text(f"{testbed.addresses['srv1']} {' '.join(other_key)}\n")
    cmd = testbed.ssh_command("srv1")
    cmd[cmd.index(f"UserKnownHostsFile={testbed.cfg.known_hosts}")] = f"UserKnownHostsFile={known}"
    result = subprocess.run(cmd + ["true"], text=True, capture_output=True, timeout=30)
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_srv3_has_a_small_data_disk(testbed: Testbed) -> None:
    out = testbed.ssh("srv3", "df -B1 --output=size /srv | tail -1").stdout
    assert int(out) <= 64 * 1024 * 1024
    big = testbed.ssh("srv2", "df -B1 --output=size /srv | tail -1").stdout
    assert int(big) > 1024 * 1024 * 1024


def test_dns_answers_the_env_domain_with_srv1(testbed: Testbed) -> None:
    addresses, ttl = query_a(testbed.dns_server, ENV_DOMAIN)
    assert addresses == [testbed.addresses["srv1"]]
    assert ttl > 0
    response = dns.query.udp(dns.message.make_query(ENV_DOMAIN, "A"), testbed.dns_server, timeout=2)
    assert response.flags & dns.flags.AA


def _update(testbed: Testbed, keyring, name: str, address: str) -> int:
    update = dns.update.UpdateMessage("example.test", keyring=keyring, keyname="strackt-move",
                                      keyalgorithm="hmac-sha256") if keyring else \
        dns.update.UpdateMessage("example.test")
    update.replace(name + ".", 60, "A", address)
    try:
        return dns.query.tcp(update, testbed.dns_server, timeout=5).rcode()
    except dns.tsig.PeerError:  # BIND answers a bad signature with a TSIG error (BADSIG/BADKEY)
        return dns.rcode.NOTAUTH


def test_dns_takes_signed_updates_and_refuses_unsigned_and_wrong_key(testbed: Testbed) -> None:
    good = dns.tsigkeyring.from_text({"strackt-move": testbed.secrets["tsig_secret"]})
    wrong = dns.tsigkeyring.from_text({"strackt-move": "c3RyYWNrdC13cm9uZy1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="})
    name = f"probe-{uuid.uuid4().hex[:8]}.example.test"
    assert _update(testbed, None, name, "10.77.0.99") == dns.rcode.REFUSED
    assert _update(testbed, wrong, name, "10.77.0.99") == dns.rcode.NOTAUTH
    assert query_a(testbed.dns_server, name)[0] == []
    assert _update(testbed, good, name, "10.77.0.98") == dns.rcode.NOERROR
    assert query_a(testbed.dns_server, name)[0] == ["10.77.0.98"]


def test_postgresql_on_srv1_is_the_connected_service(testbed: Testbed) -> None:
    assert testbed.ssh("srv1", "systemctl is-active postgresql@15-main").stdout.strip() == "active"
    # Listening on the network, but only srv1 itself may use the env's database until a move
    # adds a narrow rule: from srv2 the server answers and refuses.
    ready = testbed.ssh("srv2", f"pg_isready -h {testbed.addresses['srv1']} -p 5432", check=False)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert testbed.ssh("srv2", "systemctl is-active postgresql@15-main", check=False).stdout.strip() != "active"


def test_shop_serves_through_its_domain_on_port_80(fresh_testbed: Testbed) -> None:
    address = query_a(fresh_testbed.dns_server, ENV_DOMAIN)[0][0]
    status, body = http_get(address, ENV_DOMAIN, "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["database"] is True
    assert health["server"] == "srv1"
    from tests.testbed.gitrepo import head
    assert health["commit"] == head(fresh_testbed.cfg)

    request = urllib.request.Request(f"http://{address}/write", data=b"note=hello&content=payload",
                                     headers={"Host": ENV_DOMAIN}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        written = json.loads(response.read())
    status, body = http_get(address, ENV_DOMAIN, f"/read/{written['id']}")
    assert json.loads(body)["content"] == "payload"
    stored = fresh_testbed.ssh("srv1", f"cat /srv/shop/data/{written['file']}").stdout
    assert stored == "payload"


def test_reset_puts_the_home_server_back_as_up_left_it(testbed: Testbed) -> None:
    """A cutover disables the env's unit on its old server and a test may stop PostgreSQL there;
    reset must undo both, or the next test (say, deploy's idempotence) sees changes it did not make."""
    unit, web = "strackt-env-shop.target", "strackt-env-shop-web.service"
    testbed.ssh("srv1", f"systemctl disable --now {unit} && systemctl stop postgresql@15-main")
    try:
        testbed.reset()
        state = testbed.ssh("srv1", f"systemctl is-enabled {unit}; systemctl is-active {unit} {web} postgresql@15-main",
                            check=False).stdout.split()
        assert state == ["enabled", "active", "active", "active"], state
    finally:
        testbed.ssh("srv1", f"systemctl enable --now {unit} postgresql@15-main", check=False)


def test_reset_deploys_again_an_env_whose_copy_a_retire_removed(testbed: Testbed) -> None:
    """After a finished move, `retire` removes the env's copy from its old server, code and data
    with it: putting back its units and site (what a reset does after a plain finished move) would
    leave nothing to run, and the reset waited 180 s for a health that never came (make test-all of
    2026-12-02, after the retire test). The reset must deploy it again instead."""
    testbed.ssh("srv1", "systemctl stop strackt-env-notes.target && "
                        "rm -rf /srv/notes /etc/caddy/sites/notes.caddy /etc/strackt/envs/notes.env")
    testbed.reset()
    health = testbed.ssh("srv1", "curl -sS -m 10 -o /dev/null -w '%{http_code}' -H 'Host: notes.example.test' "
                                 "http://127.0.0.1/up", check=False).stdout
    assert health == "200", health


def test_down_leaves_nothing_behind(spare_testbed_index: int) -> None:
    """A second, throw-away testbed (an index no other testbed of this run uses) booted and torn down."""
    bed = Testbed(TestbedConfig(spare_testbed_index))
    try:
        bed.up(deploy=False)
        assert bed.is_up()
        assert bed.leftovers()  # proves leftovers() sees a running testbed
    finally:
        bed.down()
    assert bed.leftovers() == []
