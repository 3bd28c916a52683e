# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a move may carry an env's database, decided before anything is changed: the opt-in
and the new home (``database_plan``), and the refusals over the facts of both servers
(``preflight``, over two pg_move_facts results). Pure functions, no Ansible."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ansible_collections.strackt.move.plugins.module_utils.pg_move import (
    DEFAULT_HEADROOM_MB,
    MIB,
    PgMoveError,
    name_list,
    names_for,
)

# ---------------------------------------------------------------------------------------------
# opt-in and the new home (the env definition's database.move / database.move_to, per move
# move_database)


@dataclass(frozen=True)
class DatabasePlan:
    move: bool
    new_server: str | None


def database_plan(database: Mapping[str, Any] | None, env_server: str, target: str,
                  move_database: bool | None = None) -> DatabasePlan:
    """Whether this move carries the env's database, and where to: the one rule for every stage
    (module pg_move_plan; the controller's ``--with-database`` only passes ``move_database``).

    ``move_database`` (per move) overrides ``database.move`` (per env, default false). The new
    home is the move's target (``database.move_to``, when set, must name it). Raises
    PgMoveError, saying what to do, for a database this move cannot carry."""
    wants = (database or {}).get("move", False) if move_database is None else move_database
    if not isinstance(wants, bool):
        raise PgMoveError("database.move must be true or false, got %r" % (wants,))
    if not wants:
        return DatabasePlan(move=False, new_server=None)
    without = "move it without --with-database / move_database"
    if database is None or database.get("engine", "postgresql") != "postgresql":
        raise PgMoveError("it has no PostgreSQL database (database.engine postgresql); " + without)
    if database.get("server") != env_server:
        raise PgMoveError(
            "its database runs on %s, not on the server the env runs on (%s); strackt.move switches a "
            "database inside the freeze of the server it runs on: %s" % (database.get("server"), env_server, without))
    move_to = database.get("move_to") or target
    if move_to != target:
        raise PgMoveError(
            "database.move_to (%s) differs from the target (%s): a database moves to the move target only; "
            "leave move_to out or move to %s" % (move_to, target, move_to))
    if target == database.get("server"):
        raise PgMoveError("the database of this env already lives on %s: moving it there changes nothing; "
                          "leave the database where it is" % target)
    return DatabasePlan(move=True, new_server=target)


# ---------------------------------------------------------------------------------------------
# preflight: a pure function over the facts of both servers (pg_move_facts results)


def _listens_on(listen_addresses: str | None, address: str | None) -> bool:
    entries = [a.strip() for a in (listen_addresses or "").split(",")]
    return "*" in entries or "0.0.0.0" in entries or (address is not None and address in entries)


def leftover_sentences(facts: Mapping[str, Any], server: str, move_id: str | None) -> list[str]:
    """Objects of other moves (or unowned strackt objects) on a server, one sentence each."""
    own = names_for(move_id) if move_id else None
    found = []
    objects = facts.get("objects") or {}
    for kind in ("slots", "subscriptions", "publications", "roles"):
        for item in objects.get(kind) or []:
            name = item["name"] if isinstance(item, Mapping) else item
            if own is not None and own.owns(name):
                continue
            found.append("%s %s" % (kind[:-1], name))
    for rule_move in objects.get("hba_moves") or []:
        if rule_move != move_id:
            found.append("pg_hba rule of move %s" % rule_move)
    for name in objects.get("orphan_sync_slots") or []:
        found.append("table-sync slot %s" % name)
    if not found:
        return []
    return ["%s holds replication objects of another move: %s; a forgotten slot keeps WAL until "
            "the disk is full. Remove them with strackt.move.pg_move_cleanup (move_id of that move) "
            "on %s, or drop them by hand" % (server, name_list(found), server)]


def preflight(source: Mapping[str, Any], new: Mapping[str, Any], *, source_name: str, new_name: str,
              database: str, move_id: str | None = None, new_address: str | None = None,
              headroom_mb: int = DEFAULT_HEADROOM_MB) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for moving ``database`` from ``source_name`` to ``new_name``.

    Each refusal names what is wrong and what to do; an empty list means the move may start."""
    refusals: list[str] = []
    warnings: list[str] = []
    if not source.get("running"):
        return (["PostgreSQL is not running on %s (the database's home): start it and try again" % source_name], [])
    if not source.get("database_exists"):
        return (["database %s does not exist on %s: check database.name and database.server of the env"
                 % (database, source_name)], [])
    if source.get("wal_level") != "logical":
        refusals.append(
            "%s has wal_level=%s; logical replication needs wal_level=logical, which takes a restart: "
            "run ALTER SYSTEM SET wal_level = logical; on %s, then restart PostgreSQL there "
            "(systemctl restart postgresql) at a quiet moment, and start the move again"
            % (source_name, source.get("wal_level"), source_name))
    if (source.get("free_replication_slots") or 0) < 1 or (source.get("free_wal_senders") or 0) < 1:
        refusals.append(
            "%s has no free replication slot or WAL sender (max_replication_slots=%s, max_wal_senders=%s, "
            "both in use): raise them (takes a restart) or drop unused slots"
            % (source_name, source.get("max_replication_slots"), source.get("max_wal_senders")))
    tables = source.get("tables_without_identity") or []
    if tables:
        refusals.append(
            "tables without a primary key or replica identity in %s on %s: %s; logical replication "
            "cannot carry their UPDATEs and DELETEs. Add a primary key, or run ALTER TABLE <table> "
            "REPLICA IDENTITY FULL; for each, then start the move again" % (database, source_name, name_list(tables)))
    unlogged = source.get("unlogged_tables") or []
    if unlogged:
        refusals.append(
            "unlogged tables in %s on %s: %s; logical replication does not carry them, their rows would "
            "be lost. Run ALTER TABLE <table> SET LOGGED; for each (or empty them), then start again"
            % (database, source_name, name_list(unlogged)))
    if source.get("large_objects"):
        refusals.append(
            "%s on %s holds %d large objects (pg_largeobject); logical replication does not carry them. "
            "Store them in bytea columns, or move this database with a dump in a maintenance window"
            % (database, source_name, source["large_objects"]))
    matviews = source.get("materialized_views") or []
    if matviews:
        warnings.append(
            "materialized views in %s are not replicated (%s): refresh them on %s after the switch"
            % (database, name_list(matviews), new_name))

    src_major = source.get("major")
    if new.get("running"):
        if new.get("major") != src_major:
            refusals.append(
                "%s runs PostgreSQL %s on port %s and %s runs %s; logical replication between majors "
                "is not what this move does: give the new server PostgreSQL %s (another cluster or "
                "server), or upgrade one side first"
                % (new_name, new.get("major"), new.get("port"), source_name, src_major, src_major))
        if new.get("wal_level") != "logical":
            refusals.append(
                "%s has wal_level=%s; the way back (the old database following the new one until the "
                "move is finished) needs wal_level=logical there: run ALTER SYSTEM SET wal_level = logical; "
                "on %s and restart PostgreSQL there, then start again" % (new_name, new.get("wal_level"), new_name))
        if new_address and not _listens_on(new.get("listen_addresses"), new_address):
            refusals.append(
                "PostgreSQL on %s listens on %r only; the way back needs connections from %s to %s: "
                "run ALTER SYSTEM SET listen_addresses = '%s'; on %s and restart PostgreSQL there"
                % (new_name, new.get("listen_addresses"), source_name, new_address,
                   ",".join(a for a in [new.get("listen_addresses") or "localhost", new_address] if a), new_name))
        if (new.get("free_replication_slots") or 0) < 1:
            refusals.append("%s has no free replication slot for the way back: raise max_replication_slots "
                            "(takes a restart) or drop unused slots" % new_name)
    elif src_major not in (new.get("installed_majors") or []):
        warnings.append("PostgreSQL %s is not installed on %s: setup installs it (apt)" % (src_major, new_name))
    if new.get("database_exists") and new.get("created_by_move") != move_id:
        refusals.append(
            "%s already has a database %s that this move did not create: drop or rename it there, or "
            "move the database to another server (database.move_to)" % (new_name, database))

    need = int(source.get("database_size") or 0) + headroom_mb * MIB
    disk = new.get("disk") or {}
    free = disk.get("free_bytes")
    if free is not None and free < need:
        refusals.append(
            "not enough disk for %s on %s: %.1f MiB free at %s, %.1f MiB needed (the database's %.1f MiB "
            "+ %d MiB headroom); free space there or move the database elsewhere (database.move_to)"
            % (database, new_name, free / MIB, disk.get("measured_at"), need / MIB,
               int(source.get("database_size") or 0) / MIB, headroom_mb))

    refusals += leftover_sentences(source, source_name, move_id)
    refusals += leftover_sentences(new, new_name, move_id)
    return refusals, warnings
