#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_preflight
short_description: Decide, changing nothing, whether an env's database can be moved by logical replication
version_added: 0.2.0
description:
  - Runs anywhere (usually the control node). Compares the M(strackt.move.pg_move_facts) results of
    the database's home and of its new server and lists every refusal, each saying what to do.
  - Refuses when the old server is not at C(wal_level=logical) (needs a restart), the majors differ,
    tables have no primary key or replica identity (named), unlogged tables or large objects
    exist, the new server lacks disk (database size + O(headroom_mb)), has no free replication
    slot, is not at C(wal_level=logical) or does not listen on O(new_address) while it runs
    (the way back needs both), already holds a database of that name this move did not create,
    or either server holds replication objects of another move (a forgotten slot keeps WAL).
  - Fails the task when there is a refusal, unless O(fail_on_refusal=false).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  database:
    description: The env's database (C(database.name)).
    type: str
    required: true
  move_id:
    description: The move being prepared; its own objects (after a resume) are not leftovers.
    type: str
  source:
    description: M(strackt.move.pg_move_facts) result of the database's home.
    type: dict
    required: true
  new:
    description: M(strackt.move.pg_move_facts) result of the new server.
    type: dict
    required: true
  source_name:
    description: Inventory name of the database's home, for messages.
    type: str
    required: true
  new_name:
    description: Inventory name of the new server, for messages.
    type: str
    required: true
  new_address:
    description: The new server's address as the old one reaches it (checked against its C(listen_addresses)).
    type: str
  headroom_mb:
    description: Free disk (MiB) the new server needs beyond the database's size.
    type: int
    default: 256
  fail_on_refusal:
    description: Fail the task when there is a refusal (else only report them).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Refuse the database move when it cannot work
  strackt.move.pg_move_preflight:
    env: shop
    database: shop
    move_id: "{{ move.move_id }}"
    source: "{{ db_source }}"
    new: "{{ db_new }}"
    source_name: srv1
    new_name: srv2
    new_address: "{{ hostvars['srv2'].ansible_host }}"
"""

RETURN = r"""
refusals:
  description: Each reason the move cannot start, with what to do; empty when it may.
  returned: always
  type: list
  elements: str
warnings_found:
  description: What does not stop the move but needs attention (also shown as task warnings).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.strackt.move.plugins.module_utils import pg_files, pg_preflight
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils.environment import SQL_NAME_RE, env_module


def main() -> None:
    module, _env = env_module(
        dict(
            database=dict(type="str", required=True),
            move_id=dict(type="str"),
            source=dict(type="dict", required=True),
            new=dict(type="dict", required=True),
            source_name=dict(type="str", required=True),
            new_name=dict(type="str", required=True),
            new_address=dict(type="str"),
            headroom_mb=dict(type="int", default=pg.DEFAULT_HEADROOM_MB),
            fail_on_refusal=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        if not SQL_NAME_RE.fullmatch(p["database"]):
            raise pg.PgMoveError("database %r is not a database name strackt.move handles" % p["database"])
        if p["move_id"] is not None:
            pg.check_move_id(p["move_id"])
        if p["new_address"] is not None:
            pg_files.check_address(p["new_address"], "new_address")
        if p["headroom_mb"] < 0:
            raise pg.PgMoveError("headroom_mb must be 0 or more, got %d" % p["headroom_mb"])
        for side in ("source", "new"):
            if "running" not in p[side]:
                raise pg.PgMoveError("%s is not a pg_move_facts result (no 'running'): register the facts of "
                                     "that server and pass them" % side)
        refusals, warnings = pg_preflight.preflight(
            p["source"], p["new"], source_name=p["source_name"], new_name=p["new_name"], database=p["database"],
            move_id=p["move_id"], new_address=p["new_address"], headroom_mb=p["headroom_mb"])
    except pg.PgMoveError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    if refusals and p["fail_on_refusal"]:
        module.fail_json(msg="the database %s cannot be moved from %s to %s: %s" % (
            p["database"], p["source_name"], p["new_name"], " | ".join(refusals)),
            refusals=refusals, warnings_found=warnings)
    module.exit_json(changed=False, refusals=refusals, warnings_found=warnings)


if __name__ == "__main__":
    main()
