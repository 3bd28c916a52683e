"""Security (issue 7): the per-move key is confined and removed, no secret leaks into records,
output or runner artifacts, state files are private, DNS updates must be signed with the right
key, and a changed host key stops a move."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest
import yaml

from tests.faults._lib import (assert_unchanged, cli, copy_inventory, edit_vars, snapshot, state_dir)
from tests.testbed import Testbed
from tests.testbed.config import DNS_ZONE, ENV_DOMAIN, ENV_NAME, REPO_ROOT
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

SOURCE, TARGET = "srv1", "srv2"


def _secrets(bed: Testbed) -> dict[str, str]:
    data = yaml.safe_load((bed.inventory_dir / "group_vars" / "all" / "secrets.yml").read_text())
    found = {"strackt_dns_tsig_secret": data["strackt_dns_tsig_secret"]}
    for env, values in data["strackt_env_secrets"].items():
        for key, value in values.items():
            found[f"{env}.{key}"] = value
    assert all(len(v) >= 12 for v in found.values())
    return found


def _leaks(bed: Testbed, texts: dict[str, str]) -> list[str]:
    """Every (secret, place) where a secret shows: the given texts and every file of the state dir."""
    secrets = _secrets(bed)
    places = dict(texts)
    for path in state_dir(bed).rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return [f"{name} in {where}" for name, value in secrets.items() for where, text in places.items() if value in text]


def _private(bed: Testbed) -> list[str]:
    wrong = []
    for path in [state_dir(bed), *state_dir(bed).rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir() and mode & 0o077:
            wrong.append(f"{path} {oct(mode)}")
        if path.is_file() and path.suffix == ".json" and "moves" in path.relative_to(state_dir(bed)).parts[:1] and mode != 0o600:
            wrong.append(f"{path} {oct(mode)}")
    return wrong


def _move_keys(bed: Testbed, server: str) -> str:
    return bed.ssh(server, "grep strackt-move: /root/.ssh/authorized_keys; ls -A /root/.strackt-move 2>/dev/null; true").stdout.strip()


@pytest.mark.extended
def test_move_key_is_confined_and_gone_after_rollback_and_after_done(fresh_testbed: Testbed,
                                                                    request: pytest.FixtureRequest) -> None:
    request.node.user_properties.append(("fault", "security: per-move key confined, removed; no secret leaks"))
    bed = fresh_testbed
    outputs: dict[str, str] = {}

    started = cli(bed, "start", ENV_NAME, "--target", TARGET)
    outputs["start (rollback case)"] = started.stdout + started.stderr
    assert started.returncode == 4, started.stderr
    move_id = json.loads(cli(bed, "status", ENV_NAME, "--json").stdout)["moves"][0]["move_id"]
    lines = [ln for ln in bed.ssh(TARGET, "cat /root/.ssh/authorized_keys").stdout.splitlines() if "strackt-move:" in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f'from="{bed.addresses[SOURCE]}",restrict,'
                               f'command="/usr/local/lib/strackt-move/rsync-guard.py /srv/{ENV_NAME} {move_id} data" ')
    assert lines[0].endswith(f"strackt-move:{move_id}")
    key_dir = f"/root/.strackt-move/{move_id}"
    assert bed.ssh(SOURCE, f"stat -c '%a' {key_dir} {key_dir}/id_ed25519").stdout.split() == ["700", "600"]
    ssh = (f"ssh -i {key_dir}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
           f"-o UserKnownHostsFile={key_dir}/known_hosts -o ConnectTimeout=5 root@{bed.addresses[TARGET]}")
    # no shell, no command but the guard's rsync, no path outside the env's data paths
    shell = bed.ssh(SOURCE, f"{ssh} cat /etc/shadow", check=False)
    assert shell.returncode != 0 and "root:" not in shell.stdout
    escape = bed.ssh(SOURCE, f"rsync -e '{ssh.split(' root@')[0]}' root@{bed.addresses[TARGET]}:../../etc/shadow /tmp/x", check=False)
    assert escape.returncode != 0, escape.stdout
    assert bed.ssh(SOURCE, "test -e /tmp/x", check=False).returncode != 0
    # from another server the same key is refused (from=)
    private = bed.ssh(SOURCE, f"cat {key_dir}/id_ed25519").stdout
    bed.ssh("srv3", "umask 077; mkdir -p /root/stolen && cat > /root/stolen/k", input=private)
    bed.ssh("srv3", f"ssh-keyscan -t ed25519 {bed.addresses[TARGET]} > /root/stolen/kh 2>/dev/null")
    stolen = bed.ssh("srv3", f"rsync -e 'ssh -i /root/stolen/k -o IdentitiesOnly=yes -o BatchMode=yes "
                             f"-o UserKnownHostsFile=/root/stolen/kh -o StrictHostKeyChecking=yes' "
                             f"root@{bed.addresses[TARGET]}:data/ /root/stolen/data/", check=False)
    bed.ssh("srv3", "rm -rf /root/stolen")
    assert stolen.returncode != 0 and "Permission denied" in stolen.stderr, stolen.stderr

    rolled = cli(bed, "rollback", ENV_NAME)
    outputs["rollback"] = rolled.stdout + rolled.stderr
    assert rolled.returncode == 0, rolled.stderr
    assert _move_keys(bed, SOURCE) == "" and _move_keys(bed, TARGET) == ""

    started = cli(bed, "start", ENV_NAME, "--target", TARGET)
    outputs["start (done case)"] = started.stdout + started.stderr
    assert started.returncode == 4, started.stderr
    assert "strackt-move:" in _move_keys(bed, TARGET)
    confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--wait")
    outputs["confirm"] = confirmed.stdout + confirmed.stderr
    assert confirmed.returncode == 0, confirmed.stderr
    assert _move_keys(bed, SOURCE) == "" and _move_keys(bed, TARGET) == ""

    listing = cli(bed, "list", "--all", "--json")
    outputs["list"] = listing.stdout + listing.stderr
    assert _leaks(bed, outputs) == []
    assert _private(bed) == []
    assert len(list(state_dir(bed).rglob("runs/*/*/artifacts"))) >= 2  # the artifacts were searched too
    request.node.user_properties.append(("survived", True))


def _dns_records(bed: Testbed, secret: str | None, address: str) -> subprocess.CompletedProcess[str]:
    args = {"server": bed.dns_server, "zone": DNS_ZONE, "names": [ENV_DOMAIN], "state": "present",
            "addresses": [address], "tsig_key_name": "strackt-move"}
    if secret is not None:
        args["tsig_secret"] = secret
    env = bed.ansible_env()
    return subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible"), "localhost", "-m", "strackt.move.dns_records",
                           "-a", json.dumps(args)], env=env, cwd=REPO_ROOT, text=True, capture_output=True)


def test_dns_updates_must_be_signed_with_the_right_key(fresh_testbed: Testbed, request: pytest.FixtureRequest) -> None:
    request.node.user_properties.append(("fault", "security: unsigned / wrongly signed DNS update refused"))
    bed = fresh_testbed
    before = query_a(bed.dns_server, ENV_DOMAIN)
    elsewhere = bed.addresses["srv3"]
    wrong = base64.b64encode(os.urandom(32)).decode()
    refused = _dns_records(bed, wrong, elsewhere)
    assert refused.returncode != 0
    assert re.search(r"rejected the TSIG signature of key strackt-move|NOTAUTH.*did not accept TSIG key", refused.stdout), refused.stdout
    assert wrong not in refused.stdout
    unsigned = _dns_records(bed, None, elsewhere)
    assert unsigned.returncode != 0 and "tsig_secret" in unsigned.stdout, unsigned.stdout
    # BIND itself refuses an update without a signature
    upd = dns.update.UpdateMessage(DNS_ZONE)
    upd.replace(ENV_DOMAIN + ".", 5, "A", elsewhere)
    answer = dns.query.tcp(upd, bed.dns_server, timeout=5)
    assert answer.rcode() == dns.rcode.REFUSED, dns.rcode.to_text(answer.rcode())
    assert query_a(bed.dns_server, ENV_DOMAIN) == before
    request.node.user_properties.append(("survived", True))


def test_a_changed_host_key_stops_the_move(fresh_testbed: Testbed, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    request.node.user_properties.append(("fault", "security: changed host key stops the move"))
    bed = fresh_testbed
    inv = copy_inventory(bed, tmp_path / "inventory")
    known = inv / ".ssh" / "known_hosts"
    lines = known.read_text().splitlines()

    def hosts(line: str) -> list[str]:
        return line.split()[0].split(",")
    srv3_key = next(ln.split(None, 1)[1] for ln in lines if bed.addresses["srv3"] in hosts(ln))
    changed = [(f"{ln.split()[0]} {srv3_key}" if bed.addresses[TARGET] in hosts(ln) else ln) for ln in lines]
    known.write_text("\n".join(changed) + "\n")

    def point(d: dict) -> None:
        d["ansible_ssh_common_args"] = d["ansible_ssh_common_args"].replace(str(bed.inventory_dir), str(inv))
    edit_vars(inv, "main.yml", point)
    before = snapshot(bed, extra_files=(inv / "group_vars/all/environments.yml",))
    # a fresh ssh ControlPath dir: a master connection Ansible keeps (ControlPersist) to the genuine
    # srv2 would be reused without looking at known_hosts again
    control = tmp_path / "cp"
    control.mkdir(mode=0o700)
    result = cli(bed, "start", ENV_NAME, "--target", TARGET, inventory=inv,
                 env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)})
    assert result.returncode == 3, result.stderr
    assert re.search(r"host key|HOST IDENTIFICATION HAS CHANGED|Host key verification failed", result.stdout + result.stderr, re.I)
    assert_unchanged(before, snapshot(bed, extra_files=(inv / "group_vars/all/environments.yml",)))
    request.node.user_properties.append(("survived", True))
