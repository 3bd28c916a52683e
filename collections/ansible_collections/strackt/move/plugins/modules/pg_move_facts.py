#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_facts
short_description: What a database server holds that matters for moving a database by logical replication
version_added: 0.2.0
description:
  - Run on either database server of a move, before and during it. Never changes anything.
  - Reports the server (installed and running majors, C(wal_level), C(listen_addresses), free
    replication slots and WAL senders, free disk for the data directory), the database (size,
    owner, encoding, tables without a primary key or replica identity, unlogged tables,
    materialized views, large objects), the replication objects of strackt moves on the server
    and, with O(move_id), the replication lag of the move's slot and the state of its subscription.
  - RV(leftovers) names objects of other moves; M(strackt.move.pg_move_preflight) refuses a move
    while any are left, because a forgotten slot keeps WAL on its server until the disk is full.
  - When PostgreSQL is not running (a new server before setup), only the installed majors and the
    free disk are reported.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
  - strackt.move.pg_move
options:
  move_id:
    description:
      - The move whose lag and subscription to report; its own objects are not RV(leftovers).
      - Without it every strackt replication object here is a leftover.
    type: str
    required: false
"""

EXAMPLES = r"""
- name: Facts of the database's home
  strackt.move.pg_move_facts:
    env: shop
    database: shop
    move_id: "{{ move.move_id }}"
  delegate_to: "{{ env_def.database.server }}"
  register: db_source

- name: Replication lag while the move waits (on the old server)
  strackt.move.pg_move_facts:
    env: shop
    database: shop
    move_id: "{{ move.move_id }}"
  delegate_to: srv1
  register: db_lag
"""

RETURN = r"""
installed_majors:
  description: PostgreSQL majors installed here (C(/usr/lib/postgresql/<major>/bin/postgres)).
  returned: always
  type: list
  elements: int
  sample: [15]
running:
  description: Whether PostgreSQL answers on O(port).
  returned: always
  type: bool
major:
  description: Major version of the running server, null when not running.
  returned: always
  type: int
version_num:
  description: C(server_version_num), null when not running.
  returned: always
  type: int
wal_level:
  description: C(wal_level) of the running server.
  returned: always
  type: str
listen_addresses:
  description: C(listen_addresses) of the running server.
  returned: always
  type: str
data_directory:
  description: The data directory (the Debian default when not running).
  returned: always
  type: str
free_replication_slots:
  description: C(max_replication_slots) minus slots in use.
  returned: always
  type: int
free_wal_senders:
  description: C(max_wal_senders) minus WAL senders running.
  returned: always
  type: int
disk:
  description: C(measured_at) (the data directory or its nearest existing parent) and C(free_bytes) there.
  returned: always
  type: dict
database_exists:
  description: Whether O(database) exists.
  returned: always
  type: bool
database_size:
  description: C(pg_database_size) in bytes, null when missing.
  returned: always
  type: int
database_owner:
  description: Owner role of the database.
  returned: always
  type: str
encoding:
  description: Encoding, C(collate) and C(ctype) of the database are in RV(locale).
  returned: always
  type: str
locale:
  description: C(collate) and C(ctype) of the database.
  returned: always
  type: dict
tables:
  description: Number of tables in user schemas.
  returned: always
  type: int
sequences:
  description: Number of sequences in user schemas.
  returned: always
  type: int
tables_without_identity:
  description: Tables (schema.table) whose UPDATEs and DELETEs logical replication cannot carry.
  returned: always
  type: list
  elements: str
unlogged_tables:
  description: Unlogged tables (never replicated).
  returned: always
  type: list
  elements: str
materialized_views:
  description: Materialized views (not replicated; refresh them after a switch).
  returned: always
  type: list
  elements: str
large_objects:
  description: Number of large objects (not replicated).
  returned: always
  type: int
objects:
  description:
    - Replication objects of strackt moves here, C(slots) (name, database, active,
      confirmed_flush_lsn, wal_retained_bytes), C(subscriptions) (name, database, enabled, slot),
      C(publications) (in O(database)), C(roles), C(hba_moves) (move ids of pg_hba rules) and
      C(orphan_sync_slots) (inactive table-sync slots a subscription dropped without its
      publisher left behind).
  returned: always
  type: dict
created_by_move:
  description: The move that created O(database) here (its marker names this very database), else null.
  returned: always
  type: str
lag:
  description:
    - With O(move_id), on the server that publishes (the old one before the switch, the new one
      after) - C(slot), C(active), C(bytes) (WAL written here the subscriber has not confirmed),
      C(seconds) (0 when caught up, else the WAL sender's replay lag; null when unknown),
      C(current_lsn), C(confirmed_flush_lsn), C(last_reply_s). Null when no slot of the move is here.
  returned: always
  type: dict
subscription:
  description:
    - With O(move_id), on the server that subscribes - C(name), C(enabled), C(workers),
      C(tables_not_ready) (initial copy still running for them), C(latest_end_lsn),
      C(last_message_s). Null when no subscription of the move is here.
  returned: always
  type: dict
leftovers:
  description: One sentence naming the replication objects of other moves on this server, with what to do.
  returned: always
  type: list
  elements: str
"""

import os

from ansible_collections.strackt.move.plugins.module_utils import pg_files as files
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_module, pg_preflight, pg_session

PG_LIB = "/usr/lib/postgresql"
PG_DATA_ROOT = "/var/lib/postgresql"


def installed_majors(lib: str = PG_LIB) -> list[int]:
    try:
        entries = os.listdir(lib)
    except FileNotFoundError:
        return []
    return sorted(int(e) for e in entries if e.isdigit() and os.path.exists(os.path.join(lib, e, "bin", "postgres")))


def free_disk(path: str) -> dict:
    where = path
    while not os.path.exists(where) and where != "/":
        where = os.path.dirname(where)
    vfs = os.statvfs(where)
    return {"measured_at": where, "free_bytes": vfs.f_bavail * vfs.f_frsize}


def empty_facts(port: int) -> dict:
    return dict(
        changed=False, installed_majors=installed_majors(), running=False, major=None, version_num=None,
        wal_level=None, listen_addresses=None, port=port, data_directory=None, free_replication_slots=None,
        free_wal_senders=None, max_replication_slots=None, max_wal_senders=None, pending_restart=False,
        database_exists=False, database_size=None, database_owner=None, encoding=None, locale=None,
        tables=0, sequences=0, tables_without_identity=[], unlogged_tables=[], materialized_views=[],
        large_objects=0, objects=dict(slots=[], subscriptions=[], publications=[], roles=[], hba_moves=[],
                                      orphan_sync_slots=[]),
        created_by_move=None, lag=None, subscription=None, leftovers=[], disk=None,
    )


def gather(database: str, port: int, move_id: str | None) -> dict:
    facts = empty_facts(port)
    names = pg.names_for(move_id) if move_id else None
    try:
        server = pg_session.connect_local("postgres", port)
    except pg_session.PgConnectError as exc:
        if not exc.refused:
            raise
        majors = facts["installed_majors"]
        default = os.path.join(PG_DATA_ROOT, str(majors[-1]), "main") if majors else PG_DATA_ROOT
        facts.update(data_directory=default, disk=free_disk(default))
        return facts
    with server:
        settings = pg.server_settings(server)
        facts.update({k: settings[k] for k in (
            "major", "version_num", "wal_level", "listen_addresses", "data_directory", "max_replication_slots",
            "max_wal_senders", "free_replication_slots", "free_wal_senders", "pending_restart")})
        facts.update(running=True, disk=free_disk(settings["data_directory"]))
        objects = pg.strackt_objects(server)
        objects["publications"] = []
        with open(settings["hba_file"], encoding="utf-8") as handle:
            objects["hba_moves"] = files.hba_moves(handle.read())
        info = pg.database_info(server, database)
    if info is not None:
        facts.update(database_exists=True, database_size=info["size"], database_owner=info["owner"],
                     encoding=info["encoding"], locale=dict(collate=info["collate"], ctype=info["ctype"]),
                     created_by_move=files.created_by(files.read_markers(), database, info["oid"], port))
        with pg_session.connect_local(database, port) as db:
            facts.update(pg.database_content_facts(db))
            objects["publications"] = pg.strackt_objects(db)["publications"]
            if names is not None:
                for slot_name in (names.forward, names.back):
                    lag = pg.publisher_lag(db, slot_name)
                    if lag is not None:
                        facts["lag"] = lag
                for sub_name in (names.forward, names.back):
                    state = pg.subscription_state(db, sub_name)
                    if state is not None:
                        state["name"] = sub_name
                        facts["subscription"] = state
    facts["objects"] = objects
    facts["leftovers"] = pg_preflight.leftover_sentences(facts, "this server", move_id)
    return facts


def main() -> None:
    module, _env = pg_module.pg_module({}, move_id_required=False, supports_check_mode=True)
    p = module.params
    pg_module.run(module, lambda: gather(p["database"], p["port"], p["move_id"]))


if __name__ == "__main__":
    main()
