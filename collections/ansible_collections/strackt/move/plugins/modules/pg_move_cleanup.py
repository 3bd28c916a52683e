#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_cleanup
short_description: Remove everything a database move put on one server
version_added: 0.2.0
description:
  - Removes, on the server it runs on, the replication objects of one move - its subscriptions
    (with their slots on the other server when it can reach them), its slots (their WAL senders
    stopped first), its publication, its role (after C(DROP OWNED BY) wherever it holds
    privileges) and its pg_hba rules - and the marker of the database the move created here.
  - With O(drop_database=true) it also drops the database, but only when the move created it
    here (the marker names this very database) - a rollback before the switch, or after it once
    M(strackt.move.pg_move_switch) brought everything back. At finish, leave it false (the
    database stays), and losing its marker means no later run can drop it.
  - Idempotent and safe after a crash at any point; run it on both servers (the old one first
    saves a failed connection attempt). A subscription whose publisher cannot drop its slot is
    detached and dropped alone; cleanup on the publisher then drops the slot by its name.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
  - strackt.move.pg_move
options:
  drop_database:
    description: Drop O(database) as well when this move created it here.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Rollback before the switch - the new server first gives up its copy
  strackt.move.pg_move_cleanup:
    env: shop
    move_id: "{{ move.move_id }}"
    database: shop
    drop_database: true
  delegate_to: srv2

- name: Then the old server
  strackt.move.pg_move_cleanup:
    env: shop
    move_id: "{{ move.move_id }}"
    database: shop
  delegate_to: srv1
"""

RETURN = r"""
removed:
  description: What was removed (in check mode, what would be), in order.
  returned: always
  type: list
  elements: str
notes:
  description: What was kept and why, or what is left for the other server.
  returned: always
  type: list
  elements: str
left:
  description: Replication objects of this move still on the server afterwards (empty on success).
  returned: success
  type: list
  elements: str
"""

import time

from ansible_collections.strackt.move.plugins.module_utils import pg_files as files
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_module, pg_session

SLOT_RELEASE_S = 10.0


class Cleanup:
    def __init__(self, database: str, port: int, names: pg.MoveNames, drop_database: bool, check: bool,
                 removed: list[str]) -> None:
        self.database = database
        self.port = port
        self.names = names
        self.drop_database = drop_database
        self.check = check
        self.removed = removed
        self.notes: list[str] = []

    def did(self, what: str) -> None:
        self.removed.append(("would remove " if self.check else "") + what)

    def subscriptions(self, server: pg.Session) -> None:
        subs = [s for s in pg.strackt_objects(server)["subscriptions"] if self.names.owns(s["name"])]
        for sub in subs:
            if self.check:
                self.did("subscription %s" % sub["name"])
                continue
            with pg_session.connect_local(sub["database"], self.port) as db:
                outcome = pg.drop_subscription(db, sub["name"])
            if outcome == "detached":
                self.notes.append("subscription %s was dropped without reaching its slot on the other server "
                                  "(dropped at the switch already, or that server unreachable): pg_move_cleanup "
                                  "there removes it if it is left" % sub["name"])
            self.did("subscription %s" % sub["name"])
        pg.crash_point("cleanup:after_subscriptions")

    def slots(self, server: pg.Session) -> None:
        for name in (self.names.forward, self.names.back):
            if pg.slot(server, name) is None:
                continue
            if self.check:
                self.did("replication slot %s" % name)
                continue
            pg.terminate_slot_users(server, name)
            deadline = time.monotonic() + SLOT_RELEASE_S
            while pg.slot(server, name) is not None and not pg.drop_slot_if_inactive(server, name):
                if time.monotonic() > deadline:
                    raise pg.PgMoveError("replication slot %s is still in use %.0f s after its sender was told to "
                                         "stop; run this again" % (name, SLOT_RELEASE_S), changed=bool(self.removed))
                time.sleep(0.05)
            self.did("replication slot %s" % name)

    def publication_and_role(self, server: pg.Session, database_exists: bool) -> None:
        role = self.names.role
        if database_exists:
            with pg_session.connect_local(self.database, self.port) as db:
                if db.rows("SELECT 1 AS x FROM pg_publication WHERE pubname = %s", (self.names.publication,)):
                    if not self.check:
                        pg.drop_publication(db, self.names.publication)
                    self.did("publication %s" % self.names.publication)
        if pg.role_state(server, role) is None:
            return
        if self.check:
            self.did("role %s" % role)
            return
        server.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        # Its grants, wherever they are: DROP ROLE refuses while any is left.
        databases = [r["datname"] for r in server.rows(
            "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s) AND d.datallowconn", (role,))]
        for name in databases:
            with pg_session.connect_local(name, self.port) as db:
                db.execute("DROP OWNED BY %s" % pg.quote_ident(role))
        server.execute("DROP ROLE %s" % pg.quote_ident(role))
        self.did("role %s (and its grants)" % role)

    def hba(self, server: pg.Session) -> None:
        hba_file = server.rows("SELECT current_setting('hba_file') AS f")[0]["f"]
        with open(hba_file, encoding="utf-8") as handle:
            text, removed = files.remove_hba_rules(handle.read(), self.names.hba_marker)
        if not removed:
            return
        if not self.check:
            files.write_config_file(hba_file, text)
            server.rows("SELECT pg_reload_conf()")
        for line in removed:
            self.did("pg_hba rule: %s" % line.strip())

    def database_and_marker(self, server: pg.Session) -> None:
        """With drop_database: the database and owner roles this move created here. Then its marker."""
        marker = next((m for m in files.read_markers() if m.get("move_id") == self.names.move_id), None)
        info = pg.database_info(server, self.database)
        if self.drop_database and info is not None:
            if files.created_by([marker] if marker else [], self.database, info["oid"], self.port) is None:
                self.notes.append("database %s was kept: this move did not create it here" % self.database)
                return
            if not self.check:
                server.execute("DROP DATABASE %s WITH (FORCE)" % pg.quote_ident(self.database))
            self.did("database %s (created by this move)" % self.database)
        if marker is None:
            return
        for role in (marker.get("roles") or []) if self.drop_database else []:
            if pg.role_state(server, role) is None:
                continue
            if self.check:
                self.did("role %s (created by this move)" % role)
                continue
            try:
                server.execute("DROP ROLE %s" % pg.quote_ident(role))
                self.did("role %s (created by this move)" % role)
            except Exception as exc:  # it owns or was granted something else here since: keep it
                self.notes.append("role %s was kept: %s" % (role, str(exc).strip()))
        if not self.check:
            files.remove_marker(self.names.move_id)
        self.did("the marker of what this move created here")

    def left(self, server: pg.Session) -> list[str]:
        objects = pg.strackt_objects(server)
        found = ["slot %s" % s["name"] for s in objects["slots"] if self.names.owns(s["name"])]
        found += ["subscription %s" % s["name"] for s in objects["subscriptions"] if self.names.owns(s["name"])]
        found += ["role %s" % r for r in objects["roles"] if self.names.owns(r)]
        return found

    def run(self) -> dict:
        try:
            server = pg_session.connect_local("postgres", self.port)
        except pg_session.PgConnectError as exc:
            if not exc.refused:
                raise
            if any(m.get("move_id") == self.names.move_id for m in files.read_markers()):
                raise pg.PgMoveError("PostgreSQL is not running here, and this move created a database here: start "
                                     "PostgreSQL and run this again")
            return dict(notes=["PostgreSQL is not running here: the move left nothing in it"], left=[])
        with server:
            self.subscriptions(server)
            self.slots(server)
            exists = pg.database_info(server, self.database) is not None
            self.publication_and_role(server, exists)
            self.hba(server)
            self.database_and_marker(server)
            left = [] if self.check else self.left(server)
        if left:
            raise pg.PgMoveError("still here after cleanup: %s; run this again" % ", ".join(left), changed=True)
        return dict(notes=self.notes, left=left)


def main() -> None:
    module, _env = pg_module.pg_module(dict(drop_database=dict(type="bool", default=False)),
                                       supports_check_mode=True)
    p = module.params
    removed: list[str] = []

    def work() -> dict:
        cleanup = Cleanup(p["database"], p["port"], pg.names_for(p["move_id"]), p["drop_database"],
                          module.check_mode, removed)
        result = cleanup.run()
        result.update(changed=bool(removed), removed=removed)
        return result

    pg_module.run(module, work, removed)


if __name__ == "__main__":
    main()
