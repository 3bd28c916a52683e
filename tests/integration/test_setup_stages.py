"""provision, deploy and preflight against the real testbed servers.

The sample app's endpoints, deploy's idempotence and its cross-server database access, and
every refusal of preflight (which must change nothing) plus its success path.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.testbed import Testbed
from tests.testbed.config import ENV_DOMAIN, ENV_TTL, REPO_ROOT
from tests.testbed.dns import query_a

EXTRA_MIGRATION = REPO_ROOT / "tests" / "testbed" / "apps" / "shop_extra_migration" / "0002_order_customer.py"


def http(address: str, path: str, data: dict[str, str] | None = None) -> tuple[int, dict]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(f"http://{address}{path}", data=body, headers={"Host": ENV_DOMAIN})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_playbook(testbed: Testbed, tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(text)
    return subprocess.run(
        [".venv/bin/ansible-playbook", "-i", str(testbed.inventory_dir), str(playbook), *extra],
        env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT,
    )


def changed_tasks(output: str) -> list[str]:
    """The TASK headers of an ansible-playbook output followed by a `changed:` line."""
    return re.findall(r"^TASK \[(.*?)\] \**\n(?:(?!TASK ).*\n)*?changed: ", output, re.M)


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(r"^%s\s*:\s*(.*)$" % re.escape(host), output, re.M)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


DEPLOY_ELSEWHERE = """
- name: Deploy shop on {server}, its database stays on srv1
  hosts: {server}
  gather_facts: false
  roles:
    - role: strackt.move.provision
      vars: {{provision_env: shop}}
    - role: strackt.move.deploy
      vars: {{deploy_env: shop}}
"""

PREFLIGHT = """
- name: Preflight
  hosts: localhost
  gather_facts: false
  module_defaults:  # the DNS server, once per play (as the collection's playbooks set it)
    group/strackt.move.dns:
      server: "{{ strackt_dns_server }}"
      port: "{{ strackt_dns_port }}"
      zone: "{{ strackt_dns_zone }}"
      tsig_key_name: "{{ strackt_dns_tsig_key_name }}"
      tsig_secret: "{{ strackt_dns_tsig_secret }}"
      tsig_algorithm: "{{ strackt_dns_tsig_algorithm }}"
  roles:
    - role: strackt.move.preflight
      vars:
        preflight_env: shop
        preflight_target: "{{ target }}"
"""


def record_files(testbed: Testbed) -> list[Path]:
    root = testbed.cfg.state_dir / "moves"
    return sorted(root.rglob("*.json")) if root.exists() else []


def test_sample_app_endpoints(fresh_testbed: Testbed) -> None:
    srv1 = fresh_testbed.addresses["srv1"]
    status, health = http(srv1, "/health")
    assert status == 200 and health["status"] == "ok" and health["database"] is True
    assert health["server"] == "srv1" and re.fullmatch(r"[0-9a-f]{40}", health["commit"])
    status, written = http(srv1, "/write", {"note": "n1", "content": "hello\nworld"})
    assert status == 200 and written == {"id": written["id"], "file": "uploads/%d.txt" % written["id"], "server": "srv1"}
    assert http(srv1, "/read/%d" % written["id"]) == (
        200, {"id": written["id"], "note": "n1", "content": "hello\nworld", "server": "srv1"})
    status, orders = http(srv1, "/orders")
    assert status == 200 and written["id"] in orders["ids"] and orders["count"] == len(orders["ids"])
    assert http(srv1, "/read/999999")[0] == 404
    assert http(srv1, "/write", {"note": "no content"})[0] == 400
    on_disk = fresh_testbed.ssh("srv1", "cat /srv/shop/data/uploads/%d.txt" % written["id"]).stdout
    assert on_disk == "hello\nworld"


def test_deploy_is_idempotent(fresh_testbed: Testbed) -> None:
    result = fresh_testbed.playbook("deploy.yml", "-e", "env=shop")
    assert recap(result.stdout, "srv1")["changed"] == 0, changed_tasks(result.stdout)


def test_deploy_elsewhere_uses_a_narrow_pg_hba_rule(fresh_testbed: Testbed, tmp_path: Path) -> None:
    result = run_playbook(fresh_testbed, tmp_path, DEPLOY_ELSEWHERE.format(server="srv2"))
    assert result.returncode == 0, result.stdout[-4000:]
    # a server the env is not attached to serves it closed: to the servers, not to this host
    closed = fresh_testbed.ssh("srv1", f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {ENV_DOMAIN}' "
                                       f"http://{fresh_testbed.addresses['srv2']}/health").stdout
    health = json.loads(fresh_testbed.ssh("srv2", f"curl -s -H 'Host: {ENV_DOMAIN}' http://127.0.0.1/health").stdout)
    assert closed == "200" and health["server"] == "srv2" and health["database"] is True
    refused = urllib.request.Request(f"http://{fresh_testbed.addresses['srv2']}/health", headers={"Host": ENV_DOMAIN})
    with pytest.raises(urllib.error.HTTPError, match="503"):
        urllib.request.urlopen(refused, timeout=15)
    hba = fresh_testbed.ssh("srv1", "grep 'strackt-move' /etc/postgresql/15/main/pg_hba.conf").stdout
    assert hba.strip() == "host shop shop %s/32 scram-sha-256 # strackt-move shop" % fresh_testbed.addresses["srv2"]
    env_file = fresh_testbed.ssh("srv2", "stat -c '%a %U %G' /etc/strackt/envs/shop.env; grep ^DATABASE_URL= /etc/strackt/envs/shop.env").stdout
    mode, url = env_file.splitlines()
    assert mode == "640 root shop" and "@%s:5432/shop\"" % fresh_testbed.addresses["srv1"] in url
    again = run_playbook(fresh_testbed, tmp_path, DEPLOY_ELSEWHERE.format(server="srv2"))
    assert recap(again.stdout, "srv2")["changed"] == 0, again.stdout[-3000:]


def assert_refused(testbed: Testbed, tmp_path: Path, target: str, message: str) -> None:
    result = run_playbook(testbed, tmp_path, PREFLIGHT, "-e", "target=%s" % target)
    assert result.returncode != 0
    assert re.search(message, " ".join(result.stdout.split())), result.stdout[-4000:]
    assert record_files(testbed) == []
    assert query_a(testbed.dns_server, ENV_DOMAIN) == ([testbed.addresses["srv1"]], ENV_TTL)


@pytest.mark.parametrize(
    "target, message",
    [
        ("srv1", "target srv1 is the server shop already runs on"),
        ("srv9", "target srv9 is not a server of the inventory"),
        ("srv3", r"target srv3 has no room for shop: not enough disk for /srv/shop, /srv/shop/data: .* at /srv"),
    ],
)
def test_preflight_refuses_bad_targets(fresh_testbed: Testbed, tmp_path: Path, target: str, message: str) -> None:
    assert_refused(fresh_testbed, tmp_path, target, message)


def test_preflight_refuses_a_target_that_has_the_env(fresh_testbed: Testbed, tmp_path: Path) -> None:
    assert run_playbook(fresh_testbed, tmp_path, DEPLOY_ELSEWHERE.format(server="srv2")).returncode == 0
    assert_refused(fresh_testbed, tmp_path, "srv2", r"target srv2 already has env shop \(root /srv/shop")


def test_preflight_refuses_pending_migrations(fresh_testbed: Testbed, tmp_path: Path) -> None:
    fresh_testbed.ssh("srv1", "cat > /srv/shop/app/shop/migrations/0002_order_customer.py",
                      input=EXTRA_MIGRATION.read_text())
    assert_refused(fresh_testbed, tmp_path, "srv2",
                   "shop has migrations waiting to run on srv1: Planned operations:, shop.0002_order_customer")


def test_preflight_starts_the_move_then_refuses_a_second(fresh_testbed: Testbed, tmp_path: Path) -> None:
    head = subprocess.run(["git", "ls-remote", fresh_testbed.cfg.repo_url, "refs/heads/main"],
                          text=True, capture_output=True, check=True).stdout.split()[0]
    result = run_playbook(fresh_testbed, tmp_path, PREFLIGHT, "-e", "target=srv2")
    assert result.returncode == 0, result.stdout[-4000:]
    [path] = [p for p in record_files(fresh_testbed) if "history" not in p.parts]
    record = json.loads(path.read_text())
    assert (record["env"], record["source"], record["target"]) == ("shop", "srv1", "srv2")
    assert record["commit"] == head
    assert record["dns"]["previous_ttl"] == ENV_TTL and record["dns"]["move_ttl"] == 5
    assert record["history"][-1]["stage"] == "preflight" and record["history"][-1]["event"] == "completed"
    assert query_a(fresh_testbed.dns_server, ENV_DOMAIN) == ([fresh_testbed.addresses["srv1"]], 5)
    # nothing of the env on the target yet
    assert fresh_testbed.ssh("srv2", "test -e /srv/shop", check=False).returncode == 1

    again = run_playbook(fresh_testbed, tmp_path, PREFLIGHT, "-e", "target=srv3")
    assert again.returncode != 0
    assert "a move of shop is already in progress: %s" % record["move_id"] in " ".join(again.stdout.split())
