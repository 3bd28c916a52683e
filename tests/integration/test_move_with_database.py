"""A move that carries the env's database (issue 15), driven by the controller on the testbed:
`strackt-move start shop --target srv2 --with-database`, `confirm`, under a client's load.

srv1 runs shop and its PostgreSQL (set to wal_level=logical here, put back after); srv2 has
PostgreSQL installed but masked, as a new server might. The figures (the freeze, its database
part) are printed (pytest -s)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ansible_collections.strackt.move.plugins.module_utils import move_status
from ansible_collections.strackt.move.plugins.module_utils.move_record import MoveRecord
from ansible_collections.strackt.move.plugins.module_utils.pg_move import names_for
from tests.faults._lib import kill_when, read_until
from tests.integration.test_controller import cli, fetch_json, spawn, status
from tests.testbed import Testbed
from tests.testbed import pg_move as tb
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed


@pytest.fixture
def db_bed(testbed: Testbed) -> Iterator[Testbed]:
    """shop on srv1 with wal_level=logical there; srv2's PostgreSQL as booted. Put back after."""
    testbed.reset()
    level = tb.psql(testbed, "srv1", "SHOW wal_level", "postgres")
    # the source first: its way-back subscription holds a slot on srv2
    tb.reset_source(testbed)
    tb.reset_new_server(testbed)
    if tb.set_wal_level(testbed, "srv1", "logical"):
        testbed.reset()  # the app back up after PostgreSQL's restart
    yield testbed
    tb.reset_source(testbed)
    tb.reset_new_server(testbed)
    tb.set_wal_level(testbed, "srv1", level)
    testbed.reset()


def history_record(bed: Testbed) -> dict[str, Any]:
    (move,) = [m for m in json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]]
    return move


def replication_left(bed: Testbed) -> dict[str, dict[str, list[str]]]:
    """The move kind of objects still on either server (slots, subscriptions, strackt roles,
    strackt publications, pg_hba lines of a move)."""
    left = {}
    for server in ("srv1", "srv2"):
        found = tb.replication_objects(bed, server)
        if "running" in found:
            continue
        left[server] = {key: [v for v in found[key] if "strackt" in v or key in ("slots", "subscriptions")]
                        for key in ("slots", "subscriptions", "roles", "publications", "hba")}
    return left


def nothing_left(bed: Testbed) -> None:
    for server, objects in replication_left(bed).items():
        assert all(v == [] for v in objects.values()), (server, objects)


def rows_on(bed: Testbed, server: str, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    out = tb.psql(bed, server, "SELECT id FROM shop_order WHERE id IN (%s)" % ",".join(str(i) for i in ids))
    return {int(line) for line in out.split()}


def test_move_with_its_database_under_load(db_bed: Testbed) -> None:
    bed = db_bed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=5, reads_per_s=2).start()
    try:
        started = cli(bed, "start", ENV_NAME, "--target", "srv2", "--with-database")
        assert started.returncode == 4, started.stderr
        (move,) = status(bed)["moves"]
        move_id = move["move_id"]
        names = names_for(move_id)
        # the new server follows the old one while it serves
        assert tb.replication_objects(bed, "srv1")["slots"] == [names.forward]
        assert tb.replication_objects(bed, "srv2")["subscriptions"] == [names.forward]
        assert "127.0.0.1:5432/shop" in bed.ssh("srv2", "cat /etc/strackt/envs/shop.env").stdout
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        assert confirmed.returncode == 0, confirmed.stderr
        time.sleep(2)
    finally:
        client.stop()
    # switched: srv2 serves from its own database; the old one follows it (the way back): once
    # the writes stop, every table's rows and every sequence are the same on both
    assert tb.replication_objects(bed, "srv1")["subscriptions"] == [names.back]
    deadline = time.monotonic() + 30
    while tb.table_checksums(bed, "srv1") != tb.table_checksums(bed, "srv2") and time.monotonic() < deadline:
        time.sleep(0.5)
    # the check at the switch: every table's row count and content checksum, both sides
    checksums = {server: tb.table_checksums(bed, server) for server in ("srv1", "srv2")}
    print("[db-move] tables after the switch (row count, md5 of the rows in order)", checksums)
    assert checksums["srv1"] == checksums["srv2"], "the old database does not follow the new one"
    # (sequences are not replicated: the way back carries rows; rollback's `back` copies them)
    finished = cli(bed, "finish", ENV_NAME, "--now")
    assert finished.returncode == 0, finished.stderr
    summary = client.summary()
    print("[db-move] client", summary)
    assert client.failed() == [], summary
    address = query_a(bed.dns_server, ENV_DOMAIN)[0][0]
    assert address == bed.addresses["srv2"]
    assert fetch_json(address, "/health")["server"] == "srv2"
    assert client.settled_lost_writes(address=address) == []
    acknowledged = [int(i) for i in client.acknowledged_writes()]
    assert rows_on(bed, "srv2", acknowledged) == set(acknowledged)
    done = history_record(bed)
    print("[db-move] freeze", json.dumps(done.get("freeze") or {}, default=str))
    nothing_left(bed)
    # the environments file names the database's new home
    environments = yaml.safe_load((bed.inventory_dir / "group_vars" / "all" / "environments.yml").read_text())
    assert environments["strackt_environments"]["shop"]["database"]["server"] == "srv2"


def hold_tasks(bed: Testbed) -> list[tuple[str, float]]:
    """The tasks of the last rollback run from the target's hold to its forwarding, in order, with
    how long each took (ansible-runner's job events; includes' own tasks show, not the includes)."""
    (run,) = sorted((bed.cfg.state_dir / "moves" / "runs" / ENV_NAME).glob("*-rollback"))[-1:]
    done = []
    for path in (run / "artifacts").glob("*/job_events/*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("start"):
            # the source's one call inside the hold says how long each of its parts took
            parts = (data.get("res") or {}).get("timings") if data.get("task", "").startswith("Take the env back") else None
            done.append((str(data["start"]), str(data.get("task")) + (" %s" % parts if parts else ""),
                         float(data.get("duration") or 0)))
    done.sort()
    names = [name for _start, name, _took in done]
    first = names.index("Hold the env's requests on the target and stop every process of the env there")
    last = names.index("Forward what the target held, and what still reaches it, to the source")
    return [(name, round(took, 2)) for _start, name, took in done[first:last + 1]]


@pytest.mark.extended
def test_rollback_after_the_switch_keeps_the_targets_rows(db_bed: Testbed) -> None:
    bed = db_bed
    started = cli(bed, "start", ENV_NAME, "--target", "srv2", "--with-database")
    assert started.returncode == 4, started.stderr
    confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
    assert confirmed.returncode == 0, confirmed.stderr
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=5, reads_per_s=0).start()
    try:
        time.sleep(4)
        rolled_at = time.time()
        rolled = cli(bed, "rollback", ENV_NAME)
        assert rolled.returncode == 0, rolled.stderr
        time.sleep(1)
    finally:
        client.stop()
    # what failed, when (seconds after the rollback began), where it went and what it answered
    failed = [(round(r.at - rolled_at, 2), r.address, r.status, round(r.latency_s, 2), r.error[:80])
              for r in client.failed()]
    kinds: dict[tuple[str, int], list[float]] = {}
    for at, address, status_code, _latency, _error in failed:
        kinds.setdefault((address, status_code), []).append(at)
    print("[db-move] rollback client", client.summary(), "failed (address, status): (count, first s, last s)",
          {k: (len(v), min(v), max(v)) for k, v in kinds.items()})
    archived = json.loads((bed.cfg.state_dir / "moves" / "moves" / "history" / f"{history_record(bed)['move_id']}.json")
                          .read_text())
    print("[db-move] rollback (the record's last message):", archived["history"][-1].get("message"))
    print("[db-move] rollback: the target's hold, task by task (s)", hold_tasks(bed))
    assert failed == [], (client.summary(), failed[:20], rolled.stdout[-4000:])
    written_on_target = [int(r.order_id) for r in client.requests
                         if r.kind == "write" and r.status == 200 and r.address == bed.addresses["srv2"]]
    assert written_on_target, client.summary()
    assert rows_on(bed, "srv1", written_on_target) == set(written_on_target)
    source = bed.addresses["srv1"]
    assert fetch_json(source, "/health")["server"] == "srv1"
    assert client.settled_lost_writes(address=source) == []
    nothing_left(bed)
    assert "shop" not in tb.replication_objects(bed, "srv2").get("databases", [])


def wait_until_finish_may_end_it(bed: Testbed) -> None:
    """`finish --now` ends a switched move only once resolvers' caches of the old address expired
    (the record's DNS hold, move_status.dns_caches_expire_at): wait for that instant."""
    rec = MoveRecord.from_json((bed.cfg.state_dir / "moves" / "moves" / f"{ENV_NAME}.json").read_text())
    expire = move_status.dns_caches_expire_at(rec)
    assert expire is not None, "the move is not switched"
    time.sleep(max(0.0, expire.timestamp() - time.time()) + 1.0)


def kill_in_the_hold(bed: Testbed, proc: subprocess.Popen[str]) -> None:
    """SIGKILL the controller once the source holds the env's requests (inside the freeze: the
    app stopping, the final pass, the database's hand-over). The freeze module runs on there."""
    read_until(proc, "[cutover] Freeze on the source")
    deadline = time.monotonic() + 60
    while bed.ssh("srv1", f"test -e /run/strackt-move/hold/{ENV_NAME}", check=False).returncode != 0:
        assert time.monotonic() < deadline and proc.poll() is None, "the source never held the requests"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.extended
def test_sigkill_during_catch_up_in_the_freeze_and_after_the_switch_then_resume(db_bed: Testbed) -> None:
    """One move with its database, a client writing; the controller SIGKILLed during the initial
    copy (catch-up), inside the freeze (the database hand-over), after the switch (DNS) and in the
    finish (the way back ending), `resume` (or the finish again) after each. The end: srv2 serves
    from its own database, every acknowledged row is there, and no slot, publication,
    subscription, role or pg_hba rule of the move is left on either server."""
    bed = db_bed
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=3, reads_per_s=1).start()
    took: dict[str, float] = {}
    began = time.monotonic()

    def lap(where: str) -> None:
        nonlocal began
        took[where] = round(time.monotonic() - began, 1)
        began = time.monotonic()

    try:
        kill_when(spawn(bed, "start", ENV_NAME, "--target", "srv2", "--with-database"),
                  "[provision] Copy the schema and subscribe on the new server", delay=1.0)
        resumed = cli(bed, "resume", ENV_NAME)
        assert resumed.returncode == 4, resumed.stderr  # at the gate
        (move,) = status(bed)["moves"]
        names = names_for(move["move_id"])
        assert tb.replication_objects(bed, "srv1")["slots"] == [names.forward]
        assert tb.replication_objects(bed, "srv2")["subscriptions"] == [names.forward]
        lap("catch-up")

        kill_in_the_hold(bed, spawn(bed, "confirm", ENV_NAME, "--yes", "--no-finish"))
        stage = status(bed)["moves"][0]["stage"]
        print(f"[db-move] killed in the freeze: stage {stage}")
        assert stage in ("cutover", "switched"), stage
        if stage == "cutover":
            lap("freeze")
            kill_when(spawn(bed, "resume", ENV_NAME), "[cutover] Point the env's domains at the target", delay=0.3)
            resumed = cli(bed, "resume", ENV_NAME)
            assert resumed.returncode == 0, resumed.stderr
            lap("after the switch (DNS)")
        assert status(bed)["moves"][0]["stage"] == "switched"
        assert tb.replication_objects(bed, "srv1")["subscriptions"] == [names.back]

        wait_until_finish_may_end_it(bed)
        kill_when(spawn(bed, "finish", ENV_NAME, "--now"), "Remove the move's replication objects from the old server",
                  delay=0.2)
        finished = cli(bed, "finish", ENV_NAME, "--now")
        assert finished.returncode == 0, finished.stderr
        lap("finish")
        time.sleep(2)
    finally:
        client.stop()
    print("[db-move] sigkill/resume: seconds per part", took, client.summary())
    assert json.loads(cli(bed, "list", "--json").stdout)["moves"] == []
    assert history_record(bed)["stage"] == "done"
    # one serving database: srv2's app uses its own, srv1's app is stopped
    address = query_a(bed.dns_server, ENV_DOMAIN)[0][0]
    assert address == bed.addresses["srv2"] and fetch_json(address, "/health")["server"] == "srv2"
    assert "127.0.0.1:5432/shop" in bed.ssh("srv2", "cat /etc/strackt/envs/shop.env").stdout
    assert bed.ssh("srv1", "systemctl is-active strackt-env-shop.target", check=False).stdout.strip() != "active"
    assert client.settled_lost_writes(address=address) == []
    acknowledged = [int(i) for i in client.acknowledged_writes()]
    assert rows_on(bed, "srv2", acknowledged) == set(acknowledged)
    nothing_left(bed)


@pytest.mark.extended
def test_preflight_refuses_a_database_that_cannot_move_and_changes_nothing(db_bed: Testbed) -> None:
    bed = db_bed
    tb.set_wal_level(bed, "srv1", "replica")
    bed.reset()  # the app back up after PostgreSQL's restart
    before = {server: tb.replication_objects(bed, server) for server in ("srv1", "srv2")}
    refused = cli(bed, "start", ENV_NAME, "--target", "srv2", "--with-database")
    assert refused.returncode == 3, refused.stderr
    assert "wal_level" in refused.stderr and "ALTER SYSTEM SET wal_level = logical" in refused.stderr
    assert {server: tb.replication_objects(bed, server) for server in ("srv1", "srv2")} == before
    assert json.loads(cli(bed, "list", "--json").stdout)["moves"] == []
