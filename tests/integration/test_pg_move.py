"""Moving shop's database by logical replication, on the testbed's real PostgreSQL servers.

srv1 holds shop's database (PostgreSQL 15, the app writing); srv2 has PostgreSQL 15 installed
but masked, as a new server might. Each module runs through ansible-playbook, as the stages
will run it. The figures (catch-up lag, the switch's parts) are printed (pytest -s) and written
to $STRACKT_PG_MOVE_FIGURES when set.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils.pg_move import names_for
from tests.testbed import Testbed
from tests.testbed import pg_move as tb
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, REPO_ROOT

pytestmark = [pytest.mark.testbed, pytest.mark.extended]

PASSWORD = "pg-move-test-Vq3xF9a2LmZ8"
PROBES = """
CREATE TABLE IF NOT EXISTS strackt_probe_full (k int, v text);
ALTER TABLE strackt_probe_full REPLICA IDENTITY FULL;
ALTER TABLE strackt_probe_full OWNER TO shop;
CREATE TABLE IF NOT EXISTS strackt_probe_ids (id bigserial PRIMARY KEY, v text);
ALTER TABLE strackt_probe_ids OWNER TO shop;
INSERT INTO strackt_probe_full SELECT g, 'row ' || g FROM generate_series(1, 50) g;
INSERT INTO strackt_probe_ids (v) SELECT 'id row ' || g FROM generate_series(1, 20) g;
"""
DROP_PROBES = "DROP TABLE IF EXISTS strackt_probe_full, strackt_probe_ids, strackt_probe_nopk, strackt_probe_unlogged;"
FIGURES: dict[str, Any] = {}


def figure(name: str, value: Any) -> None:
    FIGURES[name] = value
    print(f"[pg-move figure] {name}: {json.dumps(value, default=str)}", flush=True)
    path = os.environ.get("STRACKT_PG_MOVE_FIGURES")
    if path:
        with open(path, "w") as handle:
            json.dump(FIGURES, handle, indent=2, default=str)


class Move:
    """One database move of shop from srv1 to srv2 on the testbed, step by step."""

    def __init__(self, bed: Testbed, move_id: str) -> None:
        self.bed = bed
        self.move_id = move_id
        self.base = dict(env="shop", move_id=move_id, database="shop")
        self.addr = bed.addresses

    def module(self, host: str, name: str, args: dict[str, Any], **kwargs: Any) -> tb.ModuleRun:
        return tb.run_module(self.bed, host, name, dict(self.base, **args), **kwargs)

    def setup_source(self, **kwargs: Any) -> tb.ModuleRun:
        return self.module("srv1", "pg_move_setup", dict(side="source", peer_address=self.addr["srv2"],
                                                          password=PASSWORD), **kwargs)

    def setup_new(self, wait_s: float = 120, owner_password: str | None = None, **kwargs: Any) -> tb.ModuleRun:
        return self.module("srv2", "pg_move_setup", dict(
            side="new", major=15, listen_address=self.addr["srv2"], peer_address=self.addr["srv1"], password=PASSWORD,
            owner_password=owner_password or self.bed.secrets["database_password"], wait_s=wait_s), **kwargs)

    def switch(self, action: str, **kwargs: Any) -> tb.ModuleRun:
        return self.module("srv1", "pg_move_switch", dict(action=action, peer_address=self.addr["srv2"],
                                                           password=PASSWORD, timeout_s=30), **kwargs)

    def cleanup(self, host: str, **kwargs: Any) -> tb.ModuleRun:
        return self.module(host, "pg_move_cleanup", dict(drop_database=host == "srv2"), **kwargs)

    def preflight(self, headroom_mb: int = 64) -> dict[str, Any]:
        """pg_move_facts on both servers and pg_move_preflight over them, in one playbook run."""
        return run_preflight(self.bed, self.move_id, headroom_mb)


def run_preflight(bed: Testbed, move_id: str, headroom_mb: int) -> dict[str, Any]:
    facts = {"env": "shop", "database": "shop", "move_id": move_id}
    with tempfile.TemporaryDirectory(prefix="pgmove-") as tmp:
        out = Path(tmp) / "result.json"
        play = [
            {"name": "facts", "hosts": "srv1,srv2", "gather_facts": False, "tasks": [
                {"name": "facts", "strackt.move.pg_move_facts": facts, "register": "db_facts"}]},
            {"name": "preflight", "hosts": "localhost", "gather_facts": False, "tasks": [
                {"name": "preflight", "strackt.move.pg_move_preflight": {
                    "env": "shop", "database": "shop", "move_id": move_id, "source_name": "srv1",
                    "new_name": "srv2", "new_address": bed.addresses["srv2"], "headroom_mb": headroom_mb,
                    "source": "{{ hostvars.srv1.db_facts }}", "new": "{{ hostvars.srv2.db_facts }}"},
                 "register": "verdict", "ignore_errors": True},
                {"name": "keep", "ansible.builtin.copy": {
                    "content": "{{ {'verdict': verdict, 'srv1': hostvars.srv1.db_facts, 'srv2': hostvars.srv2.db_facts}"
                               " | to_json }}", "dest": str(out), "mode": "0600"}}]},
        ]
        playbook = Path(tmp) / "play.yml"
        playbook.write_text(json.dumps(play))
        proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(bed.inventory_dir),
                               str(playbook)], env=bed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
        assert out.exists(), proc.stdout[-4000:] + proc.stderr[-2000:]
        return json.loads(out.read_text())


def everything(bed: Testbed) -> dict[str, Any]:
    """What a refusal must not change: replication objects, databases, settings of both servers."""
    return {server: dict(tb.replication_objects(bed, server),
                         wal_level=tb.psql(bed, server, "SHOW wal_level", "postgres") if tb.pg_running(bed, server)
                         else None) for server in ("srv1", "srv2")}


def expected_after_setup(move_id: str) -> dict[str, dict[str, list[str]]]:
    n = names_for(move_id)
    return {
        "srv1": {"slots": [n.forward], "subscriptions": [], "roles": [n.role], "publications": [f"shop:{n.publication}"],
                 "markers": []},
        "srv2": {"slots": [], "subscriptions": [n.forward], "roles": [n.role], "publications": [f"shop:{n.publication}"],
                 "markers": [f"{move_id}.json"]},
    }


def expected_after_switch(move_id: str) -> dict[str, dict[str, list[str]]]:
    n = names_for(move_id)
    return {
        "srv1": {"slots": [], "subscriptions": [n.back], "roles": [n.role], "publications": [f"shop:{n.publication}"],
                 "markers": []},
        "srv2": {"slots": [n.back], "subscriptions": [n.forward], "roles": [n.role],
                 "publications": [f"shop:{n.publication}"], "markers": [f"{move_id}.json"]},
    }


def state_of(bed: Testbed, keys: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    return {server: {k: v for k, v in tb.replication_objects(bed, server).items() if k in wanted}
            for server, wanted in keys.items()}


def nothing_left(bed: Testbed) -> None:
    for server in ("srv1", "srv2"):
        objects = tb.replication_objects(bed, server)
        if "running" in objects:
            continue
        assert objects["slots"] == [] and objects["subscriptions"] == [] and objects["roles"] == [], (server, objects)
        assert [p for p in objects["publications"] if "strackt" in p] == [] and objects["hba"] == [], (server, objects)
        assert objects["markers"] == [], (server, objects)


def wait_equal(bed: Testbed, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        one, two = tb.table_checksums(bed, "srv1"), tb.table_checksums(bed, "srv2")
        if one == two or time.monotonic() > deadline:
            assert one == two, (one, two)
            return one
        time.sleep(0.3)


@pytest.fixture(scope="module")
def db_bed(testbed: Testbed) -> Iterator[Testbed]:
    """The testbed with shop on srv1, wal_level=logical there, and two probe tables in shop's
    database (one without a key but with REPLICA IDENTITY FULL, one with its own sequence).
    Afterwards: srv2 as booted, srv1 without probes or move objects, wal_level as it was."""
    testbed.reset()
    level = tb.psql(testbed, "srv1", "SHOW wal_level", "postgres")
    tb.reset_new_server(testbed)
    tb.reset_source(testbed)
    tb.psql(testbed, "srv1", DROP_PROBES + PROBES)
    yield testbed
    tb.reset_new_server(testbed)
    tb.reset_source(testbed)
    tb.psql(testbed, "srv1", DROP_PROBES)
    tb.set_wal_level(testbed, "srv1", level)
    testbed.reset()


def start_app(bed: Testbed) -> None:
    bed.ssh("srv1", "systemctl start strackt-env-shop.target && for i in $(seq 100); do curl -fsS -o /dev/null "
                    f"http://127.0.0.1/health -H 'Host: {ENV_DOMAIN}' && exit 0; sleep 0.2; done; exit 1")


# ---- preflight: each refusal says what to do and changes nothing ----------------------------


def refused(bed: Testbed, move_id: str = "shop-20261129T100000Z", headroom_mb: int = 64) -> str:
    before = everything(bed)
    verdict = run_preflight(bed, move_id, headroom_mb)["verdict"]
    assert everything(bed) == before
    assert verdict.get("failed"), verdict
    return " | ".join(verdict["refusals"])


def test_preflight_refuses_without_wal_level_logical(db_bed: Testbed) -> None:
    tb.set_wal_level(db_bed, "srv1", "replica")
    start_app(db_bed)
    text = refused(db_bed)
    assert "srv1 has wal_level=replica" in text
    assert "ALTER SYSTEM SET wal_level = logical" in text and "restart PostgreSQL there" in text


def test_preflight_refuses_tables_without_identity_unlogged_tables_and_large_objects(db_bed: Testbed) -> None:
    tb.set_wal_level(db_bed, "srv1", "logical")
    start_app(db_bed)
    tb.psql(db_bed, "srv1", "CREATE TABLE strackt_probe_nopk (a int); CREATE UNLOGGED TABLE strackt_probe_unlogged "
                            "(id int PRIMARY KEY); SELECT lo_create(424242);")
    try:
        text = refused(db_bed)
    finally:
        tb.psql(db_bed, "srv1", "DROP TABLE strackt_probe_nopk, strackt_probe_unlogged; SELECT lo_unlink(424242);")
    assert "tables without a primary key or replica identity in shop on srv1: public.strackt_probe_nopk" in text
    assert "REPLICA IDENTITY FULL" in text
    assert "unlogged tables in shop on srv1: public.strackt_probe_unlogged" in text and "SET LOGGED" in text
    assert "shop on srv1 holds 1 large objects" in text
    # strackt_probe_full has no key but REPLICA IDENTITY FULL: not refused
    assert "strackt_probe_full" not in text


def test_preflight_refuses_a_new_server_without_room(db_bed: Testbed) -> None:
    tb.set_wal_level(db_bed, "srv1", "logical")
    db_bed.ssh("srv2", "mount -t tmpfs -o size=4m strackt-small /var/lib/postgresql")
    try:
        text = refused(db_bed, headroom_mb=0)
    finally:
        db_bed.ssh("srv2", "umount /var/lib/postgresql")
    assert "not enough disk for shop on srv2" in text and "free at /var/lib/postgresql," in text
    assert "free space there or move the database elsewhere" in text


def test_preflight_refuses_leftovers_of_another_move_until_cleaned_up(db_bed: Testbed) -> None:
    tb.set_wal_level(db_bed, "srv1", "logical")
    old = Move(db_bed, "shop-20261001T000000Z")
    assert not old.setup_source().failed
    tb.psql(db_bed, "srv1", "SELECT pg_create_logical_replication_slot('strackt_shop_20261001t000000z_fwd', 'pgoutput')")
    text = refused(db_bed)
    assert "srv1 holds replication objects of another move" in text
    for name in ("slot strackt_shop_20261001t000000z_fwd", "publication strackt_shop_20261001t000000z",
                 "role strackt_shop_20261001t000000z", "pg_hba rule of move shop-20261001T000000Z"):
        assert name in text
    assert "pg_move_cleanup" in text and "keeps WAL" in text
    cleaned = old.cleanup("srv1")
    assert not cleaned.failed and cleaned["left"] == [], cleaned.result
    assert "replication slot strackt_shop_20261001t000000z_fwd" in cleaned["removed"]
    assert old.cleanup("srv1")["changed"] is False
    nothing_left(db_bed)


def test_bad_input_is_refused_before_anything_changes(db_bed: Testbed) -> None:
    before = everything(db_bed)
    move = Move(db_bed, "shop-20261129T110000Z")
    wrong = move.module("srv1", "pg_move_setup", dict(side="source", peer_address="srv2.example.test",
                                                      password=PASSWORD))
    assert wrong.failed and "peer_address 'srv2.example.test' is not an IP address" in wrong.msg
    short = move.module("srv1", "pg_move_switch", dict(action="switch", peer_address=db_bed.addresses["srv2"],
                                                       password="short"))
    assert short.failed and "16 to 200 printable ASCII" in short.msg
    assert "short" not in json.dumps(short.result.get("invocation", {}))  # no_log
    no_setup = move.switch("switch")
    assert no_setup.failed and "cannot connect to the new server" in no_setup.msg
    assert everything(db_bed) == before


# ---- rollback before the switch: the new server gives its copy up, the old one is as before --


def test_rollback_before_the_switch_removes_everything_the_move_made(db_bed: Testbed) -> None:
    bed = db_bed
    tb.set_wal_level(bed, "srv1", "logical")
    start_app(bed)
    move = Move(bed, "shop-20261129T115000Z")
    before = everything(bed)
    sums = tb.table_checksums(bed, "srv1")
    dry = move.setup_source(check=True)
    assert not dry.failed and dry["changed"] and dry["actions"], dry.result
    assert all(a.startswith("would ") for a in dry["actions"]), dry["actions"]
    assert everything(bed) == before
    assert not move.setup_source().failed
    assert not move.setup_new().failed
    assert state_of(bed, expected_after_setup(move.move_id)) == expected_after_setup(move.move_id)
    set_up = everything(bed)
    wrong = move.setup_new(owner_password="not-the-envs-password-42")
    assert wrong.failed and not wrong["changed"], wrong.result
    assert "owner role shop exists on this server with another password" in wrong.msg
    assert everything(bed) == set_up
    for host in ("srv2", "srv1"):
        done = move.cleanup(host)
        assert not done.failed and done["left"] == [], done.result
    nothing_left(bed)
    assert "shop" not in tb.replication_objects(bed, "srv2")["databases"]
    assert tb.table_checksums(bed, "srv1") == sums
    assert Client(bed.dns_server, ENV_DOMAIN).write("after a rollback before the switch").status == 200


# ---- the whole way: catch up under load, switch, write on srv2, roll back, clean up ----------


def test_database_moves_under_load_and_comes_back_with_the_rows_written_on_srv2(db_bed: Testbed) -> None:
    bed = db_bed
    tb.set_wal_level(bed, "srv1", "logical")
    start_app(bed)
    move = Move(bed, "shop-20261129T120000Z")
    verdict = move.preflight()["verdict"]
    assert not verdict.get("failed") and verdict["refusals"] == [], verdict
    client = Client(bed.dns_server, ENV_DOMAIN, writes_per_s=10, reads_per_s=2).start()
    try:
        src = move.setup_source()
        assert not src.failed, src.result
        new = move.setup_new()
        assert not new.failed, new.result
        assert new["subscription"]["tables_not_ready"] == [], new.result
        figure("setup_new_s", new["duration_s"])
        assert state_of(bed, expected_after_setup(move.move_id)) == expected_after_setup(move.move_id)
        # catch-up under load: the app writes, the probe rows change (UPDATE/DELETE need the identity)
        samples = []
        for i in range(20):
            tb.psql(bed, "srv1", f"UPDATE strackt_probe_full SET v = v || '+' WHERE k = {i + 1}; "
                                 f"DELETE FROM strackt_probe_full WHERE k = {50 - i}; "
                                 f"INSERT INTO strackt_probe_ids (v) VALUES ('during catch-up {i}')")
            row = tb.psql_rows(bed, "srv1", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), "
                                            "coalesce(extract(epoch FROM r.replay_lag), 0) FROM pg_replication_slots s "
                                            "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid", "postgres")[0]
            samples.append((int(float(row[0])), float(row[1])))
            time.sleep(0.25)
        lag = move.module("srv1", "pg_move_facts", {})
        assert lag["lag"]["slot"].endswith("_fwd") and lag["lag"]["active"], lag.result
        assert lag["lag"]["bytes"] >= 0 and (lag["lag"]["seconds"] is None or lag["lag"]["seconds"] >= 0)
        figure("catchup_lag", {"samples": len(samples), "max_bytes": max(s[0] for s in samples),
                               "max_replay_lag_s": max(s[1] for s in samples),
                               "module_lag": {k: lag["lag"][k] for k in ("bytes", "seconds")}})
    finally:
        client.stop()
    assert client.failed() == [], client.failed()[:5]
    acknowledged = client.acknowledged_writes()
    assert acknowledged

    # the freeze's part: the app stopped, then the switch
    bed.ssh("srv1", "systemctl stop strackt-env-shop.target")
    switched = move.switch("switch")
    assert not switched.failed, switched.result
    assert switched["state"] == "switched" and not switched["already"]
    figure("switch_total_s", switched["total_s"])
    figure("switch_parts_s", switched["timings"])
    assert state_of(bed, expected_after_switch(move.move_id)) == expected_after_switch(move.move_id)
    sums = tb.table_checksums(bed, "srv1")
    assert sums == tb.table_checksums(bed, "srv2")
    assert set(sums) >= {"public.shop_order", "public.strackt_probe_full", "public.strackt_probe_ids"}
    assert tb.sequence_values(bed, "srv1") == tb.sequence_values(bed, "srv2")
    ids = {int(r[0]) for r in tb.psql_rows(bed, "srv2", "SELECT id FROM shop_order")}
    assert set(acknowledged) <= ids

    # the app's role writes on srv2 (its own sequence values: no key clash if they were copied)
    written = tb.psql_rows(bed, "srv2", "INSERT INTO shop_order (note, filename, created) SELECT 'written on srv2 ' || g,"
                                        " '', now() FROM generate_series(1, 5) g RETURNING id")
    written_ids = [int(r[0]) for r in written]
    assert min(written_ids) > max(ids)
    tb.psql(bed, "srv2", "UPDATE strackt_probe_full SET v = 'changed on srv2' WHERE k = 1; "
                         "DELETE FROM strackt_probe_full WHERE k = 2; INSERT INTO strackt_probe_ids (v) VALUES ('srv2')")
    app_login = bed.ssh("srv2", "cd / && PGPASSWORD='%s' psql -X -q -A -t -h 127.0.0.1 -U shop -d shop -c "
                                "\"INSERT INTO shop_order (note, filename, created) VALUES ('by the app role', '', now()) "
                                "RETURNING id\"" % bed.secrets["database_password"])
    written_ids.append(int(app_login.stdout.strip()))

    # rollback after the switch: the app stopped on srv2 (it never ran there), then back
    came_back = move.switch("back")
    assert not came_back.failed, came_back.result
    assert came_back["state"] == "back"
    figure("back_total_s", came_back["total_s"])
    figure("back_parts_s", came_back["timings"])
    home = {int(r[0]) for r in tb.psql_rows(bed, "srv1", "SELECT id FROM shop_order")}
    assert set(written_ids) <= home
    assert tb.table_checksums(bed, "srv1") == tb.table_checksums(bed, "srv2")
    assert tb.sequence_values(bed, "srv1") == tb.sequence_values(bed, "srv2")

    for host in ("srv1", "srv2"):
        done = move.cleanup(host)
        assert not done.failed and done["left"] == [], done.result
    nothing_left(bed)
    assert "shop" not in tb.replication_objects(bed, "srv2")["databases"]
    assert tb.psql(bed, "srv2", "SELECT count(*) FROM pg_roles WHERE rolname = 'shop'", "postgres") == "0"
    start_app(bed)
    after = Client(bed.dns_server, ENV_DOMAIN).write("after the rollback")
    assert after.status == 200 and after.order_id > max(written_ids)


# ---- interrupted at every step, then run again: the same end --------------------------------


def crashed(run: tb.ModuleRun) -> bool:
    """The module process was SIGKILLed (128 + 9 through the remote shell): no result of its own."""
    return run.failed and run.result.get("rc") in (-9, 137) and "Killed" in run.result.get("module_stderr", "")


def test_each_step_killed_midway_then_rerun_reaches_the_same_end(db_bed: Testbed) -> None:
    bed = db_bed
    tb.reset_new_server(bed)
    tb.reset_source(bed)
    tb.set_wal_level(bed, "srv1", "logical")
    start_app(bed)
    move = Move(bed, "shop-20261129T130000Z")
    assert not move.setup_source().failed

    for point in ("setup:after_database", "setup:after_schema", "setup:after_subscription"):
        run = move.setup_new(crash_at=point)
        assert crashed(run), (point, run.result)
    rerun = move.setup_new()
    assert not rerun.failed, rerun.result
    assert state_of(bed, expected_after_setup(move.move_id)) == expected_after_setup(move.move_id)
    assert move.setup_new(wait_s=0)["changed"] is False  # set up is set up
    tb.psql(bed, "srv1", "INSERT INTO strackt_probe_ids (v) VALUES ('after the crashed setups')")
    wait_equal(bed)

    # DDL during the move: the switch refuses, nothing changed, until both sides have it
    bed.ssh("srv1", "systemctl stop strackt-env-shop.target")
    tb.psql(bed, "srv1", "ALTER TABLE strackt_probe_ids ADD COLUMN note text")
    before = everything(bed)
    drift = move.switch("switch")
    assert drift.failed and not drift["changed"]
    assert "only on this server: column public.strackt_probe_ids.note text" in drift.msg
    assert "make the same change on the other server" in drift.msg.lower()
    assert everything(bed) == before
    tb.psql(bed, "srv2", "ALTER TABLE strackt_probe_ids ADD COLUMN note text")

    for point in ("switch:after_sequences", "switch:after_stop_forward", "switch:after_way_back"):
        run = move.switch("switch", crash_at=point)
        assert crashed(run), (point, run.result)
    switched = move.switch("switch")
    assert not switched.failed and switched["state"] == "switched", switched.result
    assert state_of(bed, expected_after_switch(move.move_id)) == expected_after_switch(move.move_id)
    assert tb.table_checksums(bed, "srv1") == tb.table_checksums(bed, "srv2")
    assert tb.sequence_values(bed, "srv1") == tb.sequence_values(bed, "srv2")
    again = move.switch("switch")
    assert again["already"] and not again["changed"]

    # the freeze failed before the app ran on srv2: undo, srv1 serves and srv2 follows it again
    undone = move.switch("undo")
    assert not undone.failed and undone["state"] == "not_switched", undone.result
    start_app(bed)
    ack = Client(bed.dns_server, ENV_DOMAIN).write("after the undo")
    assert ack.status == 200
    wait_equal(bed)
    bed.ssh("srv1", "systemctl stop strackt-env-shop.target")
    assert not move.switch("switch").failed

    tb.psql(bed, "srv2", "INSERT INTO strackt_probe_ids (v, note) VALUES ('on srv2', 'before back')")
    run = move.switch("back", crash_at="back:after_sequences")
    assert crashed(run), run.result
    back = move.switch("back")
    assert not back.failed and back["state"] == "back", back.result
    assert tb.psql(bed, "srv1", "SELECT count(*) FROM strackt_probe_ids WHERE note = 'before back'") == "1"
    assert tb.sequence_values(bed, "srv1") == tb.sequence_values(bed, "srv2")

    run = move.cleanup("srv2", crash_at="cleanup:after_subscriptions")
    assert crashed(run), run.result
    for host in ("srv2", "srv1"):
        done = move.cleanup(host)
        assert not done.failed and done["left"] == [], done.result
    nothing_left(bed)
    tb.psql(bed, "srv1", "ALTER TABLE strackt_probe_ids DROP COLUMN note")
    start_app(bed)
