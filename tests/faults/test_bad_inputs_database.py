"""Bad inputs of a move with the database (issue 15): one row per preflight refusal, driven as a
user does (`strackt-move start shop --target srv2 --with-database`, once through
`ansible-playbook playbooks/move.yml -e move_database=true`). Each row asserts the exit code, a
message naming what is wrong and what to do, and that nothing changed: no move record, the same
replication objects on both servers (none of a move), srv2 untouched (its PostgreSQL still
stopped and masked), srv1 serving.

One testbed for the module: srv1's PostgreSQL at wal_level=logical (so that each row meets its
own refusal only; the wal_level row puts it back to replica for itself), srv2's as booted. Each
row undoes its own setup; the module puts srv1's wal_level back at the end."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults._lib import (assert_unchanged, cli, copy_inventory, edit_env, fetch_json, playbook, snapshot,
                               state_dir)
from tests.testbed import Testbed
from tests.testbed import pg_move as tb
from tests.testbed.config import ENV_NAME

pytestmark = [pytest.mark.testbed, pytest.mark.extended]

PREFLIGHT_REFUSED = 3  # the controller's exit code for a refusal of preflight
LEFTOVER_ID = "shop_20261101t000000z"  # a previous move's name part (strackt_<id>)
# srv2's PostgreSQL as a new server might have it: which units run, which are masked
SRV2_PG_STATE = ("systemctl is-active postgresql@15-main.service postgresql.service; "
                 "systemctl is-enabled postgresql@15-main.service postgresql.service; "
                 "ls /var/lib/postgresql/15/main >/dev/null 2>&1 && echo cluster || echo no-cluster")


@pytest.fixture(scope="module")
def db_bed(testbed: Testbed) -> Iterator[Testbed]:
    testbed.reset()
    with tb.database_move_ready(testbed) as bed:
        yield bed


# ---- each row's setup and its undo ---------------------------------------------------------------

Setup = Callable[[Testbed, Path], "Path | None"]
Undo = Callable[[Testbed], None]


def _sql(server: str, sql: str, database: str = "shop") -> Setup:
    def setup(bed: Testbed, tmp: Path) -> None:
        tb.psql(bed, server, sql, database)
        return None
    return setup


def _undo_sql(server: str, sql: str, database: str = "shop") -> Undo:
    return lambda bed: tb.psql(bed, server, sql, database) and None


def _wal_replica(bed: Testbed, tmp: Path) -> None:
    tb.set_wal_level(bed, "srv1", "replica")
    bed.reset()  # the app reconnects after the restart
    return None


def _wal_logical(bed: Testbed) -> None:
    tb.set_wal_level(bed, "srv1", "logical")
    bed.reset()


SMALL_DISK = "/var/lib/postgresql"  # where srv2's facts measure the free disk (the cluster's parent)


def _small_disk(bed: Testbed, tmp: Path) -> None:
    """srv2's PostgreSQL data on a 16 MiB filesystem: less than the database + the headroom."""
    bed.ssh("srv2", f"mount -t tmpfs -o size=16M,mode=0755 strackt-small {SMALL_DISK} && "
                    f"chown postgres:postgres {SMALL_DISK}")
    return None


def _undo_small_disk(bed: Testbed) -> None:
    bed.ssh("srv2", f"umount {SMALL_DISK}")


def _env_database(key: str, value: Any) -> Setup:
    def setup(bed: Testbed, tmp: Path) -> Path:
        inv = copy_inventory(bed, tmp / "inventory")
        edit_env(inv, lambda e: e["database"].__setitem__(key, value))
        return inv
    return setup


@dataclass
class Row:
    id: str
    message: str                           # regex: what is wrong AND what to do
    setup: Setup | None = None
    undo: Undo | None = None
    via: str = "cli"                       # cli | playbook


NOKEY = "strackt_badinput_nokey"
ROWS = [
    Row("database: source not at wal_level=logical",
        r"srv1 has wal_level=replica; logical replication needs wal_level=logical, which takes a restart: "
        r"run ALTER SYSTEM SET wal_level = logical; on srv1, then restart PostgreSQL there",
        setup=_wal_replica, undo=_wal_logical),
    Row("database: table without primary key or replica identity",
        rf"tables without a primary key or replica identity in shop on srv1: .*{NOKEY}.*"
        r"Add a primary key, or run ALTER TABLE <table> REPLICA IDENTITY FULL",
        setup=_sql("srv1", f"CREATE TABLE public.{NOKEY} (note text)"),
        undo=_undo_sql("srv1", f"DROP TABLE public.{NOKEY}")),
    Row("database: large objects",
        r"shop on srv1 holds 1 large objects \(pg_largeobject\); logical replication does not carry them\. "
        r"Store them in bytea columns, or move this database with a dump",
        setup=_sql("srv1", "SELECT lo_from_bytea(0, 'a large object')"),
        undo=_undo_sql("srv1", "SELECT lo_unlink(oid) FROM pg_largeobject_metadata")),
    Row("database: large objects (playbook move.yml -e move_database=true)",
        r"holds 1 large objects.*Store them in bytea columns",
        setup=_sql("srv1", "SELECT lo_from_bytea(0, 'a large object')"),
        undo=_undo_sql("srv1", "SELECT lo_unlink(oid) FROM pg_largeobject_metadata"), via="playbook"),
    Row("database: not enough disk on the new database server",
        r"not enough disk for shop on srv2: [\d.]+ MiB free at /var/lib/postgresql, [\d.]+ MiB needed .*"
        r"free space there or move the database elsewhere",
        setup=_small_disk, undo=_undo_small_disk),
    Row("database: replication slot of a previous move left behind",
        rf"srv1 holds replication objects of another move: slot strackt_{LEFTOVER_ID}_fwd; a forgotten slot "
        r"keeps WAL until the disk is full\. Remove them with strackt\.move\.pg_move_cleanup",
        setup=_sql("srv1", f"SELECT pg_create_logical_replication_slot('strackt_{LEFTOVER_ID}_fwd', 'pgoutput')"),
        undo=_undo_sql("srv1", f"SELECT pg_drop_replication_slot('strackt_{LEFTOVER_ID}_fwd')")),
    Row("database: publication of a previous move left behind",
        rf"srv1 holds replication objects of another move: publication strackt_{LEFTOVER_ID};.*"
        r"Remove them with strackt\.move\.pg_move_cleanup \(move_id of that move\) on srv1, or drop them by hand",
        setup=_sql("srv1", f"CREATE PUBLICATION strackt_{LEFTOVER_ID} FOR ALL TABLES"),
        undo=_undo_sql("srv1", f"DROP PUBLICATION strackt_{LEFTOVER_ID}")),
    Row("database: not on the env's server",
        r"its database runs on srv3, not on the server the env runs on \(srv1\).*"
        r"move it without --with-database / move_database",
        setup=_env_database("server", "srv3")),
    Row("database: move_to other than the target",
        r"database\.move_to \(srv3\) differs from the target \(srv2\).*leave move_to out or move to srv3",
        setup=_env_database("move_to", "srv3")),
]


def _world(bed: Testbed, extra: tuple[Path, ...]) -> dict[str, Any]:
    """The bad-input snapshot, plus what a database move would touch: the replication objects
    (slots, subscriptions, publications, strackt roles and pg_hba lines, databases, markers) of
    both servers, and srv2's PostgreSQL units and cluster."""
    world = snapshot(bed, extra_files=extra)
    for server in ("srv1", "srv2"):
        world[f"{server} replication"] = tb.replication_objects(bed, server)
    world["srv2 postgresql"] = bed.ssh("srv2", SRV2_PG_STATE, check=False).stdout
    return world


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_database_move_refused_and_nothing_changed(db_bed: Testbed, tmp_path: Path, row: Row,
                                                   request: pytest.FixtureRequest) -> None:
    bed = db_bed
    request.node.user_properties.append(("fault", f"bad input: {row.id}"))
    shutil.rmtree(state_dir(bed), ignore_errors=True)
    inventory = row.setup(bed, tmp_path) if row.setup else None
    try:
        extra = (inventory / "group_vars/all/environments.yml",) if inventory else ()
        before = _world(bed, extra)
        # nothing of a move before: only the row's own leftover, if it planted one
        assert before["srv2 replication"] == {"running": []}, before["srv2 replication"]
        if row.via == "cli":
            result = cli(bed, "start", ENV_NAME, "--target", "srv2", "--with-database", inventory=inventory)
            output = result.stderr
            assert result.returncode == PREFLIGHT_REFUSED, output
            assert "next:" in output, output
        else:
            result = playbook(bed, "move.yml", "-e", f"env={ENV_NAME} target=srv2 move_database=true no_prompt=true",
                              inventory=inventory)
            output = result.stdout + result.stderr
            assert result.returncode != 0, output
        flat = " ".join(output.split())
        assert re.search(row.message, flat, re.S), f"message does not say what and what to do ({row.message!r}):\n" \
                                                   f"{output[-3000:]}"
        assert_unchanged(before, _world(bed, extra))
        assert not (state_dir(bed) / "moves" / f"{ENV_NAME}.json").exists(), "a move record was written"
        assert fetch_json(bed.addresses["srv1"], "/health")["server"] == "srv1"
    finally:
        if row.undo:
            row.undo(bed)
    request.node.user_properties.append(("survived", True))


def test_database_majors_differ_refused(db_bed: Testbed, request: pytest.FixtureRequest) -> None:
    """Different majors: the testbed's servers have PostgreSQL 15 only (Debian 12's; another major
    needs the PGDG repository in the servers' package list and a second cluster), so this row is
    preflight's refusal over srv1's real facts (pg_move_facts through Ansible) and a new server as
    a user meets it: already running PostgreSQL 16 (what srv2's facts would say), nothing else
    different. The end-to-end path to that refusal is the same task as in the rows above."""
    from ansible_collections.strackt.move.plugins.module_utils import pg_preflight

    bed = db_bed
    request.node.user_properties.append(("fault", "bad input: database: different major versions (srv1's facts, "
                                                  "srv2 said to run 16: the testbed has one major)"))
    source = tb.run_module(bed, "srv1", "pg_move_facts", {"env": ENV_NAME, "database": "shop", "port": 5432})
    assert not source.failed, source.msg
    assert source["major"] == 15 and source["wal_level"] == "logical", source.result
    new = {**{k: v for k, v in source.result.items() if k not in ("database_exists", "database_size")},
           "major": 16, "version_num": 160004, "database_exists": False, "created_by_move": None,
           "objects": {}, "listen_addresses": "*"}
    refusals, _warnings = pg_preflight.preflight(source.result, new, source_name="srv1", new_name="srv2",
                                                 database="shop", new_address=bed.addresses["srv2"])
    assert len(refusals) == 1, refusals
    assert re.search(r"srv2 runs PostgreSQL 16 on port 5432 and srv1 runs 15; .*give the new server PostgreSQL 15 "
                     r"\(another cluster or server\), or upgrade one side first", refusals[0]), refusals
    request.node.user_properties.append(("survived", True))
