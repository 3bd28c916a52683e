"""The sample apps notes and drop (issue 13) on a real server, deployed by the product (`up`
runs playbooks/deploy.yml for each) from their stack-neutral definitions, and used through Caddy
by the same client as shop, with each app's adapter.

Also the connected services' per-address access, which a move to another server needs:
MariaDB accounts per address, Redis guarded by an nftables set inside srv1's network namespace;
and a deploy of both on another server (a move's target): access granted, only the web process
started, the site closed to everyone but the servers.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults._lib import http_status
from tests.testbed import Testbed, handdeploy, inventory, services
from tests.testbed.client import Client, DropApp, NotesApp
from tests.testbed.config import APP_DOMAINS, DROP_NAME, ENV_SOURCE, NOTES_NAME, REPO_ROOT
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

EXTRA_MIGRATION = REPO_ROOT / "tests" / "testbed" / "apps" / "notes_extra_migration" / "0002_note_tags.py"
# The definition culls every 30 s what is older than 20 s; the test wants to see it within seconds.
CULL_EVERY_S = 2
CACHE_TTL_S = 5


@pytest.fixture(scope="module")
def apps(testbed: Testbed) -> Iterator[dict[str, dict[str, Any]]]:
    """notes and drop as `up` deployed them, notes redeployed (by the product) with a fast cull."""
    testbed.reset()
    definitions = inventory.sample_app_environments(testbed.cfg)
    notes = definitions[NOTES_NAME]
    notes["schedule"] = {name: dict(job, every=f"{CULL_EVERY_S}s") for name, job in notes["schedule"].items()}
    notes["env"] = dict(notes["env"], NOTES_CACHE_TTL=str(CACHE_TTL_S))
    inventory.write_environments(testbed.cfg, overrides={NOTES_NAME: notes})
    try:
        testbed.playbook("deploy.yml", "-e", f"env={NOTES_NAME}")
        yield definitions
    finally:
        services.reset_sample_data(testbed.ssh, testbed.secrets)
        inventory.write_environments(testbed.cfg)
        testbed.playbook("deploy.yml", "-e", f"env={NOTES_NAME}")  # its tables again, its own schedule
        testbed.reset()


def client_for(testbed: Testbed, name: str, app: Any, **rates: float) -> Client:
    return Client(testbed.dns_server, APP_DOMAINS[name], app=app, **rates)


def run_load(client: Client, seconds: float) -> Client:
    client.start()
    time.sleep(seconds)
    client.stop()
    return client


def srv1(testbed: Testbed, command: str, **kwargs: Any) -> str:
    return testbed.ssh(ENV_SOURCE, command, **kwargs).stdout


def test_the_sample_apps_domains_point_at_srv1(testbed: Testbed) -> None:
    for name in (NOTES_NAME, DROP_NAME):
        assert query_a(testbed.dns_server, APP_DOMAINS[name])[0] == [testbed.addresses[ENV_SOURCE]]


def test_mariadb_and_redis_run_on_srv1_only(testbed: Testbed) -> None:
    units = "mariadb.service mariadb.socket redis-server.service"
    assert srv1(testbed, f"systemctl is-active {units}").split() == ["active"] * 3
    for other in ("srv2", "srv3"):
        enabled = testbed.ssh(other, f"systemctl is-enabled {units}", check=False).stdout.split()
        assert enabled == ["masked"] * 3, (other, enabled)


def test_notes_acknowledged_writes_read_back_and_the_worker_writes_their_files(
        testbed: Testbed, apps: dict[str, dict[str, Any]]) -> None:
    client = run_load(client_for(testbed, NOTES_NAME, NotesApp(upload_every=4), writes_per_s=4, reads_per_s=3), 5)

    assert client.failed() == [], client.failed()[:5]
    acknowledged = client.acknowledged_writes()
    note_ids = [i for i in acknowledged if isinstance(i, int)]
    upload_ids = [i for i in acknowledged if isinstance(i, str)]
    assert len(note_ids) >= 5 and len(upload_ids) >= 2, client.summary()
    assert client.settled_lost_writes() == []
    assert client.summary()["servers"] == [ENV_SOURCE]

    # the worker's files: one per note, rendered from its row; the queue is empty
    on_disk = set(srv1(testbed, "ls /srv/notes/data/notes").split())
    assert {f"{i}.txt" for i in note_ids} <= on_disk
    first = min(note_ids)
    title = next(r.expected for r in client.requests if r.order_id == first).removeprefix("body of ")
    assert srv1(testbed, f"cat /srv/notes/data/notes/{first}.txt") == f"{title}\n{'=' * len(title)}\n\nbody of {title}\n"
    pending = services.mariadb_as(testbed.ssh, ENV_SOURCE, "notes", testbed.secrets["notes_db_password"],
                                  "SELECT COUNT(*) FROM jobs WHERE done_at IS NULL", host="127.0.0.1")
    assert pending.stdout.strip() == "0"

    # sessions: the client's cookie keeps one session, its file replaced on every request
    sessions = json.loads(srv1(testbed, "python3 -c 'import glob, json; print(json.dumps("
                                        "[json.load(open(p)) for p in glob.glob(\"/srv/notes/data/sessions/*.json\")]))'"))
    assert max(s["requests"] for s in sessions) > len(client.requests) / 2
    assert len(sessions) < len(client.requests) / 4


def test_notes_timer_culls_expired_cache_entries(testbed: Testbed, apps: dict[str, dict[str, Any]]) -> None:
    client = client_for(testbed, NOTES_NAME, NotesApp())
    written = client.write("to be cached")
    assert written.status == 200, written
    client.requests.append(written)
    assert client.settled_lost_writes() == []  # rendered, so the next read caches it
    client.send(client.app.read_back(written.order_id))
    entry = f"/srv/notes/data/cache/{hashlib.md5(f'note:{written.order_id}'.encode()).hexdigest()}.cache"
    assert testbed.ssh(ENV_SOURCE, f"test -f {entry}", check=False).returncode == 0, "reading did not cache"

    deadline = time.monotonic() + CACHE_TTL_S + CULL_EVERY_S + 10
    while testbed.ssh(ENV_SOURCE, f"test -f {entry}", check=False).returncode == 0:
        assert time.monotonic() < deadline, f"{entry} is still there: the timer did not cull it"
        time.sleep(0.5)
    journal = srv1(testbed, "journalctl --no-pager -o cat -u strackt-env-notes-cull-cache.service")
    assert re.search(r"notes cull: deleted [1-9][0-9]* cache entries", journal), journal[-2000:]
    assert srv1(testbed, "systemctl is-active strackt-env-notes-cull-cache.timer").strip() == "active"


def test_notes_chunked_upload_is_assembled_when_the_last_chunk_arrives(
        testbed: Testbed, apps: dict[str, dict[str, Any]]) -> None:
    app = NotesApp()
    client = client_for(testbed, NOTES_NAME, app)
    upload_id = uuid.uuid4().hex
    upload = app.upload("chunked", chunks=3, chunk_bytes=64 * 1024, upload_id=upload_id)
    base = f"/srv/notes/data/uploads/{upload_id}"

    for index in (2, 0):  # out of order, as parallel chunk uploads arrive
        answer = client.send(upload.calls[index]).json()
        assert answer["complete"] is False, answer
    assert srv1(testbed, f"ls /srv/notes/data/uploads | grep {upload_id} | sort").split() == [
        f"{upload_id}.part-0", f"{upload_id}.part-2"]

    last = client.send(upload.calls[1]).json()
    assert last["complete"] is True and "sha256:" + last["sha256"] == upload.expected, last
    assert srv1(testbed, f"ls /srv/notes/data/uploads | grep {upload_id}").split() == [upload_id]
    assert srv1(testbed, f"sha256sum {base}").split()[0] == upload.expected.removeprefix("sha256:")
    assert app.check(upload_id, upload.expected, client.send(app.read_back(upload_id))) == ""
    again = client.send(upload.calls[1]).json()  # a retried last chunk finds the upload done
    assert again["complete"] is True and again["sha256"] == last["sha256"]


def test_notes_pending_migration_makes_its_check_fail_naming_the_revision(
        testbed: Testbed, apps: dict[str, dict[str, Any]]) -> None:
    definition = apps[NOTES_NAME]
    check = handdeploy.run_as_env(NOTES_NAME, definition, definition["migrations_check"])
    target = "/srv/notes/app/migrations/versions/0002_note_tags.py"

    clean = testbed.ssh(ENV_SOURCE, check, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no pending migrations (database at 0001_initial)" in clean.stdout
    testbed.ssh(ENV_SOURCE, f"cat > {target}", input=EXTRA_MIGRATION.read_text())
    try:
        pending = testbed.ssh(ENV_SOURCE, check, check=False)
        assert pending.returncode == 1, pending.stdout + pending.stderr
        assert "0002_note_tags" in pending.stdout
    finally:
        testbed.ssh(ENV_SOURCE, f"rm -f {target}")
    assert testbed.ssh(ENV_SOURCE, check, check=False).returncode == 0


def test_drop_acknowledged_uploads_read_back_with_their_metadata_in_redis(
        testbed: Testbed, apps: dict[str, dict[str, Any]]) -> None:
    client = run_load(client_for(testbed, DROP_NAME, DropApp(file_bytes=100_000), writes_per_s=4, reads_per_s=3), 5)

    assert client.failed() == [], client.failed()[:5]
    acknowledged = client.acknowledged_writes()
    assert len(acknowledged) >= 10, client.summary()
    assert client.settled_lost_writes(within_s=0) == []
    assert client.summary()["servers"] == [ENV_SOURCE]

    password = testbed.secrets["redis_password"]
    for written_id in (acknowledged[0], acknowledged[-1]):
        recorded = services.redis_cli(testbed.ssh, ENV_SOURCE, password, f"-n 0 HGET drop:file:{written_id} sha256")
        on_disk = srv1(testbed, f"sha256sum /srv/drop/data/files/{written_id}").split()[0]
        assert recorded.stdout.strip() == on_disk
    durability = services.redis_cli(testbed.ssh, ENV_SOURCE, password, "CONFIG GET appendonly appendfsync")
    pairs = durability.stdout.split()  # name, value, name, value ... in an order Redis does not fix
    assert dict(zip(pairs[::2], pairs[1::2])) == {"appendonly": "yes", "appendfsync": "always"}


def test_mariadb_and_redis_access_is_granted_per_server_address(testbed: Testbed) -> None:
    """What a move of notes or drop to srv2 needs: srv2 gets in by its address, srv3 does not."""
    source = testbed.addresses[ENV_SOURCE]
    db_password, redis_password = testbed.secrets["notes_db_password"], testbed.secrets["redis_password"]

    def mariadb_from(server: str) -> Any:
        return services.mariadb_as(testbed.ssh, server, "notes", db_password, "SELECT CURRENT_USER()",
                                   host=source, check=False)

    def redis_from(server: str) -> Any:
        return services.redis_cli(testbed.ssh, server, redis_password, "PING", host=source, check=False)

    srv2 = testbed.addresses["srv2"]
    assert "is not allowed to connect" in mariadb_from("srv2").stderr
    try:
        srv1(testbed, "mariadb --batch", input=services.mariadb_account_sql("notes", "notes", srv2, db_password))
        assert mariadb_from("srv2").stdout.strip() == f"notes@{srv2}"
        assert "is not allowed to connect" in mariadb_from("srv3").stderr
    finally:
        srv1(testbed, "mariadb --batch", input=services.mariadb_drop_account_sql("notes", srv2))
    assert "is not allowed to connect" in mariadb_from("srv2").stderr

    # `up` put the guard in place with nobody in its set: the other servers are refused at once
    assert "Connection refused" in redis_from("srv2").stderr
    try:
        srv1(testbed, services.redis_allow_command(srv2, allow=True))
        assert redis_from("srv2").stdout.strip() == "PONG"
        assert "Connection refused" in redis_from("srv3").stderr
        assert services.redis_cli(testbed.ssh, ENV_SOURCE, redis_password, "PING").stdout.strip() == "PONG"
        srv1(testbed, services.redis_allow_command(srv2, allow=False))
        assert "Connection refused" in redis_from("srv2").stderr
    finally:
        srv1(testbed, "nft -f -", input=services.redis_guard_script([]))


DEPLOY_ELSEWHERE = """
- name: Deploy notes and drop on srv2 (a move's target); their services stay on srv1
  hosts: srv2
  gather_facts: false
  tasks:
    - name: Provision and deploy each
      ansible.builtin.include_role:
        name: "{{ item.0 }}"
      vars:
        provision_env: "{{ item.1 }}"
        deploy_env: "{{ item.1 }}"
        provision_close_unattached: true
      loop: "{{ ['strackt.move.provision', 'strackt.move.deploy'] | product(['notes', 'drop']) | list }}"
"""


@pytest.mark.extended
def test_the_product_deploys_notes_and_drop_on_a_moves_target(testbed: Testbed, tmp_path: Path) -> None:
    """On srv2 (not attached): MariaDB account and Redis access for srv2's address, only the web
    process running, the site closed to everyone but loopback and the servers; then closed again
    for srv2 by service_access (what finish does for the old server)."""
    testbed.reset()
    srv2 = testbed.addresses["srv2"]
    playbook = tmp_path / "play.yml"
    playbook.write_text(DEPLOY_ELSEWHERE)
    try:
        result = subprocess.run([".venv/bin/ansible-playbook", "-i", str(testbed.inventory_dir), str(playbook)],
                                env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stdout[-5000:]
        accounts = srv1(testbed, f"mariadb --batch --skip-column-names -e \"SELECT User FROM mysql.user WHERE Host='{srv2}'\"")
        assert accounts.split() == ["notes"]
        assert srv2 in srv1(testbed, f"nft list set {inventory.REDIS_ALLOW_SET}")
        active = testbed.ssh("srv2", "systemctl is-active strackt-env-notes-web.service strackt-env-notes-worker.service "
                                     "strackt-env-notes-cull-cache.timer strackt-env-notes.target "
                                     "strackt-env-drop-web.service", check=False).stdout.split()
        assert active == ["active", "inactive", "inactive", "inactive", "active"]
        for name, path in ((NOTES_NAME, "/up"), (DROP_NAME, "/healthz")):
            domain = APP_DOMAINS[name]
            assert http_status(srv2, domain, path) == 503  # closed: the controller is no server
            from_srv1 = testbed.ssh(ENV_SOURCE, f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {domain}' "
                                                f"http://{srv2}{path}").stdout
            assert from_srv1 == "200"
        # the app on srv2 really uses srv1's services: notes reads its database, drop pings Redis
        notes_up = testbed.ssh("srv2", f"curl -s -H 'Host: {APP_DOMAINS[NOTES_NAME]}' http://127.0.0.1/up").stdout
        assert json.loads(notes_up)["server"] == "srv2"

        playbook.write_text(REVOKE.format())
        result = subprocess.run([".venv/bin/ansible-playbook", "-i", str(testbed.inventory_dir), str(playbook)],
                                env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stdout[-5000:]
        assert "changed=2" in result.stdout, result.stdout[-3000:]
        assert srv1(testbed, f"mariadb --batch --skip-column-names -e \"SELECT COUNT(*) FROM mysql.user WHERE Host='{srv2}'\"").strip() == "0"
        assert srv2 not in srv1(testbed, f"nft list set {inventory.REDIS_ALLOW_SET}")
    finally:
        testbed.reset()


REVOKE = """
- name: Take srv2's access to notes' MariaDB and drop's Redis away (as finish does for the old server)
  hosts: srv2
  gather_facts: false
  tasks:
    - name: Through the deploy role's access entry point
      ansible.builtin.include_role:
        name: strackt.move.deploy
        tasks_from: access
      vars:
        deploy_env: "{{{{ item }}}}"
        deploy_access_state: absent
      loop: [notes, drop]
"""


@pytest.mark.extended
def test_a_pending_migration_of_notes_refuses_its_move(testbed: Testbed) -> None:
    """notes' own migrations_check fails on the source: preflight refuses, showing its output
    (the revision), and nothing is changed: no record, nothing of notes on the target."""
    testbed.reset()
    target = "/srv/notes/app/migrations/versions/0002_note_tags.py"
    testbed.ssh(ENV_SOURCE, f"cat > {target}", input=EXTRA_MIGRATION.read_text())
    try:
        refused = subprocess.run([".venv/bin/ansible-playbook", "-i", str(testbed.inventory_dir), "strackt.move.stages.preflight",
                                  "-e", f"env={NOTES_NAME} target=srv2"],
                                 env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
    finally:
        testbed.ssh(ENV_SOURCE, f"rm -f {target}")
    assert refused.returncode != 0
    output = " ".join(refused.stdout.split())
    assert re.search(r"notes has migrations waiting to run on srv1: .*0002_note_tags", output), refused.stdout[-4000:]
    moves = testbed.cfg.state_dir / "moves"
    assert not (sorted(moves.rglob("*.json")) if moves.exists() else [])
    assert testbed.ssh("srv2", "ls /srv/notes /etc/strackt/envs/notes.env 2>/dev/null | wc -l").stdout.strip() == "0"
