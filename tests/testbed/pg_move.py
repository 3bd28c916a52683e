"""Test helpers for the database move: run the pg_move_* modules through Ansible on testbed
servers, and look at PostgreSQL there directly (psql as postgres over ssh)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from .config import REPO_ROOT
from .testbed import Testbed

PSQL = "runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1"
SRV2_UNITS = "postgresql.service postgresql@15-main.service"


@dataclass
class ModuleRun:
    """One module call: its result (what Ansible registered) and how long the whole call took."""

    result: dict[str, Any]
    wall_s: float

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))

    def __getitem__(self, key: str) -> Any:
        return self.result[key]


def run_module(bed: Testbed, host: str, module: str, args: dict[str, Any], *, check: bool = False,
               crash_at: str | None = None) -> ModuleRun:
    """strackt.move.<module> on ``host`` through ansible-playbook; the registered result.
    ``crash_at`` names a crash point (pg_move.CRASH_ENV): the module SIGKILLs itself there."""
    environment = {"STRACKT_PG_MOVE_CRASH_AT": crash_at} if crash_at else {}
    with tempfile.TemporaryDirectory(prefix="pgmove-") as tmp:
        out = Path(tmp) / "result.json"
        play = [{
            "name": f"{module} on {host}", "hosts": host, "gather_facts": False,
            "tasks": [
                {"name": module, f"strackt.move.{module}": args, "environment": environment,
                 "check_mode": check, "register": "result", "ignore_errors": True, "ignore_unreachable": True},
                {"name": "keep the result", "ansible.builtin.copy": {"content": "{{ result | to_json }}",
                                                                       "dest": str(out), "mode": "0600"},
                 "delegate_to": "localhost"},
            ],
        }]
        playbook = Path(tmp) / "play.yml"
        playbook.write_text(json.dumps(play))
        started = time.monotonic()
        proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(bed.inventory_dir),
                               str(playbook)], env=bed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT,
                              timeout=900)
        wall = time.monotonic() - started
        if not out.exists():
            raise RuntimeError(f"ansible-playbook ended without a result ({proc.returncode}):\n"
                               f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return ModuleRun(json.loads(out.read_text()), wall)


def psql(bed: Testbed, server: str, sql: str, database: str = "shop", check: bool = True) -> str:
    result = bed.ssh(server, f"cd / && {PSQL} -d {database}", input=sql, check=check)
    return result.stdout.strip()


def psql_rows(bed: Testbed, server: str, sql: str, database: str = "shop") -> list[list[str]]:
    out = psql(bed, server, sql, database)
    return [line.split("|") for line in out.splitlines() if line]


def pg_running(bed: Testbed, server: str) -> bool:
    return bed.ssh(server, "pg_isready -q", check=False).returncode == 0


def set_wal_level(bed: Testbed, server: str, level: str) -> bool:
    """ALTER SYSTEM and a restart when the running level differs; True when it restarted."""
    if psql(bed, server, "SHOW wal_level", "postgres") == level:
        return False
    psql(bed, server, f"ALTER SYSTEM SET wal_level = '{level}'", "postgres")
    bed.ssh(server, "systemctl restart postgresql@15-main && until pg_isready -q; do sleep 0.1; done", timeout=120)
    assert psql(bed, server, "SHOW wal_level", "postgres") == level
    return True


def replication_objects(bed: Testbed, server: str) -> dict[str, list[str]]:
    """Everything of the move kind on a server: slots, subscriptions, publications (every
    database), strackt roles, strackt pg_hba lines, and the databases."""
    if not pg_running(bed, server):
        return {"running": []}
    found: dict[str, list[str]] = {
        "slots": psql(bed, server, "SELECT slot_name FROM pg_replication_slots ORDER BY 1", "postgres").split(),
        "subscriptions": psql(bed, server, "SELECT subname FROM pg_subscription ORDER BY 1", "postgres").split(),
        "roles": psql(bed, server, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'strackt%' ORDER BY 1",
                      "postgres").split(),
        "databases": psql(bed, server, "SELECT datname FROM pg_database ORDER BY 1", "postgres").split(),
        "hba": bed.ssh(server, "grep -h 'strackt-move db' /etc/postgresql/15/main/pg_hba.conf || true").stdout.split("\n"),
        "markers": bed.ssh(server, "ls /var/lib/strackt-move-db 2>/dev/null || true").stdout.split(),
    }
    found["hba"] = [line for line in found["hba"] if line]
    publications = []
    for database in found["databases"]:
        if database != "template0":
            publications += [f"{database}:{p}" for p in psql(bed, server, "SELECT pubname FROM pg_publication",
                                                            database).split()]
    found["publications"] = sorted(publications)
    return found


def table_checksums(bed: Testbed, server: str, database: str = "shop") -> dict[str, str]:
    """Every user table: its row count and an md5 over its rows in a stable order."""
    tables = psql(bed, server, "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                               "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                  database).split()
    sql = "\n".join(f"SELECT '{t}', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                    f"FROM {t} x;" for t in tables)
    return {row[0]: f"{row[1]} rows, md5 {row[2]}" for row in psql_rows(bed, server, sql, database)}


def sequence_values(bed: Testbed, server: str, database: str = "shop") -> dict[str, str]:
    names = psql(bed, server, "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences "
                              "ORDER BY 1", database).split()
    sql = "\n".join(f"SELECT '{n}', last_value, is_called FROM {n};" for n in names)
    return {row[0]: f"{row[1]} called={row[2]}" for row in psql_rows(bed, server, sql, database)}


def reset_new_server(bed: Testbed, server: str = "srv2", database: str = "shop", owner: str = "shop") -> None:
    """Put a new server back as the testbed boots it: no replication objects, no database of the
    env, no strackt pg_hba lines or markers, settings reset, PostgreSQL stopped and masked."""
    if pg_running(bed, server):
        for sub in psql(bed, server, "SELECT subname FROM pg_subscription", "postgres").split():
            db = psql(bed, server, f"SELECT d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                                   f"WHERE subname = '{sub}'", "postgres")
            psql(bed, server, f"ALTER SUBSCRIPTION {sub} DISABLE; ALTER SUBSCRIPTION {sub} SET (slot_name = NONE); "
                              f"DROP SUBSCRIPTION {sub};", db)
        psql(bed, server, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots", "postgres")
        psql(bed, server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", "postgres")
        for role in psql(bed, server, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'strackt%'", "postgres").split():
            psql(bed, server, f"DROP ROLE {role}", "postgres")
        psql(bed, server, f"DROP ROLE IF EXISTS {owner}; ALTER SYSTEM RESET ALL;", "postgres")
    bed.ssh(server, f"systemctl stop {SRV2_UNITS}; systemctl disable postgresql.service 2>/dev/null; "
                    f"systemctl mask {SRV2_UNITS} >/dev/null 2>&1; "
                    "sed -i '/strackt-move db/d' /etc/postgresql/15/main/pg_hba.conf; rm -rf /var/lib/strackt-move-db")


def reset_source(bed: Testbed, server: str = "srv1", database: str = "shop") -> None:
    """Remove every replication object of a move from the database's home (not the database)."""
    for sub in psql(bed, server, "SELECT subname FROM pg_subscription", "postgres").split():
        psql(bed, server, f"ALTER SUBSCRIPTION {sub} DISABLE; ALTER SUBSCRIPTION {sub} SET (slot_name = NONE); "
                          f"DROP SUBSCRIPTION {sub};", database)
    psql(bed, server, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL",
         "postgres")
    time.sleep(0.5)
    psql(bed, server, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots", "postgres")
    for pub in psql(bed, server, "SELECT pubname FROM pg_publication", database).split():
        psql(bed, server, f"DROP PUBLICATION {pub}", database)
    for role in psql(bed, server, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'strackt%'", "postgres").split():
        psql(bed, server, f"DROP OWNED BY {role}; DROP ROLE {role};", database)
    bed.ssh(server, "if grep -q 'strackt-move db' /etc/postgresql/15/main/pg_hba.conf; then "
                    "sed -i '/strackt-move db/d' /etc/postgresql/15/main/pg_hba.conf; systemctl reload postgresql@15-main; fi")
    # rows a test's way back brought here without a rollback's `back` (which copies the sequences)
    # leave the sequences behind them: the next move would carry that and its target's first
    # writes would collide (duplicate key, answered 500)
    psql(bed, server, "SELECT setval(pg_get_serial_sequence('shop_order', 'id'), "
                      "GREATEST((SELECT max(id) FROM shop_order), 1))", database)


def clean_database_move(bed: Testbed, source: str = "srv1", new: str = "srv2", database: str = "shop") -> None:
    """No replication objects of a move on either server: the source's first (its way-back
    subscription holds a slot on the new server), then the new server as the testbed boots it."""
    reset_source(bed, source, database)
    reset_new_server(bed, new, database)


@contextlib.contextmanager
def database_move_ready(bed: Testbed, source: str = "srv1", new: str = "srv2",
                        database: str = "shop") -> Iterator[Testbed]:
    """The testbed ready for a move with the database: nothing of a move on either server, the
    source at wal_level=logical; afterwards cleaned again and the source's wal_level put back
    (the testbed reset after each PostgreSQL restart: the apps reconnect)."""
    level = psql(bed, source, "SHOW wal_level", "postgres")
    clean_database_move(bed, source, new, database)
    if set_wal_level(bed, source, "logical"):
        bed.reset()
    try:
        yield bed
    finally:
        clean_database_move(bed, source, new, database)
        if set_wal_level(bed, source, level):
            bed.reset()
