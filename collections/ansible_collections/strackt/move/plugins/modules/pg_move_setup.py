#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_setup
short_description: Set up the logical replication that carries an env's database to its new server
version_added: 0.2.0
description:
  - Idempotent; safe to run again after a crash at any point. Run it on the old server
    (O(side=source)) first, then on the new one (O(side=new)).
  - O(side=source) (the old server, the database's home) - the move's role C(strackt_<id>) (LOGIN
    REPLICATION, the move's password) with read access to the database's tables and sequences,
    a publication C(strackt_<id>) FOR ALL TABLES of that one database (other databases on the
    server are untouched), and one pg_hba rule admitting that role from O(peer_address) to that
    database only. Refuses, changing nothing, when C(wal_level) is not C(logical).
  - O(side=new) (the new server) - PostgreSQL O(major) installed (apt, when missing), its cluster
    unmasked, enabled and running, with C(wal_level=logical) and listening on O(listen_address)
    (both needed by the way back; set with C(ALTER SYSTEM), restarting PostgreSQL only when this
    run started it, it holds no other database, or O(allow_restart)); the database's owner role;
    the database (same encoding and locale as on the old server; a marker records that this
    move created it, so only it is ever dropped by a rollback); the schema copied
    (C(pg_dump --schema-only) from the old server, restored in one transaction); the move's
    role with read access and C(setval) on sequences, a pg_hba rule for the old server and a
    publication (the way back); and the subscription C(strackt_<id>_fwd) that copies the data
    and then follows the old database while it keeps serving.
  - The initial copy runs in the background; O(wait_s) waits for it. M(strackt.move.pg_move_facts)
    on the new server shows it (C(subscription.tables_not_ready)), on the old one the lag.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.environment
  - strackt.move.pg_move
  - strackt.move.pg_move.peer
options:
  side:
    description: Which server this is.
    type: str
    required: true
    choices: [source, new]
  major:
    description: The PostgreSQL major of the old server (RV(strackt.move.pg_move_facts#module:major)). Required with O(side=new).
    type: int
  listen_address:
    description: This (new) server's address, as the old server reaches it. Required with O(side=new).
    type: str
  owner_password:
    description:
      - Password of the database's owner role (the env's database password). The role is created
        with it when missing on the new server; an existing role with another password is refused
        (the app could not log in after the switch).
    type: str
  install:
    description: Install C(postgresql-<major>) with apt when it is missing (O(side=new)).
    type: bool
    default: true
  allow_restart:
    description:
      - Restart a PostgreSQL that was already running on the new server when C(wal_level) or
        C(listen_addresses) must change. Without it the module refuses and says what to do.
    type: bool
    default: false
  wait_s:
    description: Wait up to this many seconds for the initial copy to finish (O(side=new)); 0 does not wait.
    type: float
    default: 0
attributes:
  check_mode:
    support: full
    details: Reports the actions it would take; on a new server whose PostgreSQL is not running it
      stops listing at starting it.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Publish the database on its home
  strackt.move.pg_move_setup:
    env: shop
    side: source
    move_id: "{{ move.move_id }}"
    database: shop
    peer_address: "{{ hostvars[new_db_server].ansible_host }}"
    password: "{{ db_move_password }}"
  delegate_to: srv1

- name: Follow it on the new server
  strackt.move.pg_move_setup:
    env: shop
    side: new
    move_id: "{{ move.move_id }}"
    database: shop
    major: "{{ db_source.major }}"
    listen_address: "{{ hostvars['srv2'].ansible_host }}"
    peer_address: "{{ hostvars['srv1'].ansible_host }}"
    password: "{{ db_move_password }}"
    owner_password: "{{ strackt_env_secrets.shop.database_password }}"
  delegate_to: srv2
"""

RETURN = r"""
actions:
  description: What this run did (or, in check mode, would do), in order.
  returned: always
  type: list
  elements: str
started_postgresql:
  description: Whether this run started PostgreSQL (O(side=new)).
  returned: always
  type: bool
subscription:
  description: The subscription's state at the end (O(side=new)), as RV(strackt.move.pg_move_facts#module:subscription).
  returned: success
  type: dict
duration_s:
  description: Seconds the run took.
  returned: success
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils import pg_files as files
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_module, pg_session
from ansible_collections.strackt.move.plugins.module_utils.pg_move import PgMoveError

PG_LIB = "/usr/lib/postgresql"
READY_TIMEOUT_S = 60.0


class Side:
    """One server's part of the setup; ``actions`` collects what it did (or would do)."""

    def __init__(self, module: AnsibleModule, names: pg.MoveNames, actions: list[str]) -> None:
        self.module = module
        self.p = module.params
        self.names = names
        self.actions = actions
        self.check = module.check_mode


class SourceSide(Side):
    """The old server: role, read access, publication, pg_hba rule."""

    def run(self) -> dict:
        p, names, check = self.p, self.names, self.check
        with pg_session.connect_local("postgres", p["port"]) as server:
            settings = pg.server_settings(server)
            if pg.database_info(server, p["database"]) is None:
                raise PgMoveError("database %s does not exist on this server: check database.name and "
                                  "database.server of the env" % p["database"])
        if settings["wal_level"] != "logical":
            raise PgMoveError(
                "wal_level is %s on this server; the move needs logical, which takes a restart: run "
                "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL here (systemctl restart "
                "postgresql) at a quiet moment, and run this again. Nothing was changed" % settings["wal_level"])
        with pg_session.connect_local(p["database"], p["port"]) as db:
            if check:
                if pg.role_state(db, names.role) is None or not pg.scram_matches(
                        p["password"], pg.role_password_verifier(db, names.role)):
                    self.actions.append("would create or update role %s" % names.role)
            elif pg.ensure_role(db, names.role, p["password"]):
                self.actions.append("role %s (LOGIN REPLICATION) with the move's password" % names.role)
            if pg.role_state(db, names.role) is None or pg.missing_grants(db, names.role):
                if check:
                    self.actions.append("would grant %s read access in %s" % (names.role, p["database"]))
                else:
                    pg.grant_read(db, names.role)
                    self.actions.append("granted %s read access to the tables and sequences of %s"
                                        % (names.role, p["database"]))
            if not db.rows("SELECT 1 AS x FROM pg_publication WHERE pubname = %s AND puballtables",
                           (names.publication,)):
                if check:
                    self.actions.append("would create publication %s" % names.publication)
                else:
                    pg.ensure_publication(db, names.publication)
                    self.actions.append("publication %s FOR ALL TABLES of %s" % (names.publication, p["database"]))
            rule = files.hba_rule(p["database"], names.role, p["peer_address"], names.hba_marker)
            files.ensure_hba_rule(db, rule, self.actions, check)
        return {}


class NewSide(Side):
    """The new server: PostgreSQL running, database and schema, the way back, the subscription."""

    def __init__(self, module: AnsibleModule, names: pg.MoveNames, actions: list[str]) -> None:
        super().__init__(module, names, actions)
        self.major = self.p["major"]
        self.unit = "postgresql@%d-main.service" % self.major
        self.started = False

    # ---- PostgreSQL itself -----------------------------------------------------------------
    def command(self, args: list[str], what: str, environ: dict | None = None, data: str | None = None) -> str:
        rc, out, err = self.module.run_command(args, environ_update=environ or {}, data=data, cwd="/",
                                               binary_data=data is not None)
        if rc != 0:
            raise PgMoveError("%s failed (exit %d): %s" % (what, rc, (err.strip() or out.strip())[-1500:]),
                              changed=bool(self.actions))
        return out

    def binary(self, name: str) -> str:
        return os.path.join(PG_LIB, str(self.major), "bin", name)

    def ensure_installed(self) -> bool:
        if os.path.exists(self.binary("postgres")):
            return True
        if self.check:
            self.actions.append("would install postgresql-%d" % self.major)
            return False
        if not self.p["install"]:
            raise PgMoveError("PostgreSQL %d is not installed on this server and install=false: install "
                              "postgresql-%d, then run this again" % (self.major, self.major))
        rc, out, err = self.module.run_command(
            ["apt-get", "install", "-y", "-q", "postgresql-%d" % self.major],
            environ_update={"DEBIAN_FRONTEND": "noninteractive"}, cwd="/")
        if rc != 0:
            raise PgMoveError(
                "apt-get could not install postgresql-%d (exit %d: %s): add a source that has it (for other "
                "majors than Debian's, apt.postgresql.org), or install it by hand, and run this again"
                % (self.major, rc, (err.strip() or out.strip())[-500:]))
        self.actions.append("installed postgresql-%d" % self.major)
        return True

    def cluster_port(self) -> int | None:
        out = self.command(["pg_lsclusters", "--no-header"], "pg_lsclusters")
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == str(self.major) and fields[1] == "main":
                return int(fields[2])
        return None

    def ensure_running(self) -> bool:
        """Cluster <major>/main on the port, unmasked, enabled and answering. False in check
        mode when it would have to be started (later steps cannot be checked then)."""
        try:
            pg_session.connect_local("postgres", self.p["port"]).close()
            return True
        except pg_session.PgConnectError as exc:
            if not exc.refused:
                raise
        if self.check:
            self.actions.append("would start PostgreSQL %d (cluster main, port %d) and set it up" % (self.major, self.p["port"]))
            return False
        port = self.cluster_port()
        if port is None:
            self.command(["pg_createcluster", str(self.major), "main", "--port", str(self.p["port"])],
                         "pg_createcluster")
            self.actions.append("created cluster %d/main on port %d" % (self.major, self.p["port"]))
        elif port != self.p["port"]:
            raise PgMoveError("cluster %d/main listens on port %d here, not %d: give port=%d or free the port"
                              % (self.major, port, self.p["port"], port))
        rc, out, _err = self.module.run_command(["systemctl", "is-enabled", self.unit, "postgresql.service"])
        if "masked" in out:
            self.command(["systemctl", "unmask", "postgresql.service", self.unit], "systemctl unmask")
            self.actions.append("unmasked postgresql.service and %s" % self.unit)
        self.command(["systemctl", "enable", "postgresql.service"], "systemctl enable postgresql")
        self.command(["systemctl", "start", self.unit], "systemctl start %s" % self.unit)
        self.started = True
        self.actions.append("started %s" % self.unit)
        self.wait_ready()
        return True

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                pg_session.connect_local("postgres", self.p["port"]).close()
                return
            except pg_session.PgConnectError as exc:
                if time.monotonic() > deadline:
                    raise PgMoveError("PostgreSQL did not answer within %.0f s after starting: %s (see "
                                      "/var/log/postgresql/)" % (READY_TIMEOUT_S, exc), changed=True)
                time.sleep(0.2)

    def ensure_settings(self) -> None:
        """wal_level=logical and listening on listen_address: the way back needs both."""
        address = self.p["listen_address"]
        with pg_session.connect_local("postgres", self.p["port"]) as server:
            settings = pg.server_settings(server)
            if settings["major"] != self.major:
                raise PgMoveError("PostgreSQL %d runs on port %d here, the database needs %d: give the new "
                                  "server PostgreSQL %d (another cluster or server)"
                                  % (settings["major"], self.p["port"], self.major, self.major))
            wanted = {}
            if settings["wal_level"] != "logical":
                wanted["wal_level"] = "logical"
            listen = [a.strip() for a in settings["listen_addresses"].split(",") if a.strip()]
            if not ({"*", "0.0.0.0", address} & set(listen)):
                wanted["listen_addresses"] = ",".join(listen + [address])
            if not wanted:
                return
            others = [r["datname"] for r in server.rows(
                "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1', %s)",
                (self.p["database"],))]
            text = ", ".join("%s = '%s'" % kv for kv in sorted(wanted.items()))
            if not (self.started or self.p["allow_restart"] or not others):
                raise PgMoveError(
                    "PostgreSQL on this server needs %s for the way back, which takes a restart, and it serves "
                    "other databases (%s): set it with ALTER SYSTEM SET and restart PostgreSQL at a quiet "
                    "moment, or run this with allow_restart=true" % (text, ", ".join(others)),
                    changed=bool(self.actions))
            if self.check:
                self.actions.append("would set %s and restart PostgreSQL" % text)
                return
            for key, value in sorted(wanted.items()):
                server.execute("ALTER SYSTEM SET %s = %%s" % key, (value,))
        self.command(["systemctl", "restart", self.unit], "systemctl restart %s" % self.unit)
        self.wait_ready()
        self.actions.append("set %s and restarted PostgreSQL" % text)

    # ---- the database --------------------------------------------------------------------
    def remote(self) -> pg_session.PgSession:
        p = self.p
        try:
            return pg_session.connect_remote(p["peer_address"], p["peer_port"], p["database"], self.names.role,
                                             p["password"], "the old server")
        except pg_session.PgConnectError as exc:
            raise PgMoveError("%s; run pg_move_setup with side=source on the old server first (it creates the "
                              "role and its pg_hba rule), with the same password" % exc, changed=bool(self.actions))

    def ensure_owner(self, server: pg.Session, owner: str) -> None:
        if pg.role_state(server, owner) is not None:
            password = self.p["owner_password"]
            if password and not pg.scram_matches(password, pg.role_password_verifier(server, owner)):
                raise PgMoveError(
                    "the database's owner role %s exists on this server with another password than owner_password "
                    "(the env's database password): the app could not log in here after the switch. Give it that "
                    "password (ALTER ROLE %s PASSWORD ...), or drop the role if nothing uses it, and run this again"
                    % (owner, owner), changed=bool(self.actions))
            return
        if not self.p["owner_password"]:
            raise PgMoveError("the database's owner role %s does not exist on this server: pass owner_password "
                              "(the env's database password) to create it" % owner, changed=bool(self.actions))
        if self.check:
            self.actions.append("would create role %s" % owner)
            return
        marker = files.load_marker(self.names.move_id, self.p["database"], self.p["port"])
        marker["roles"] = sorted(set(marker.get("roles") or []) | {owner})
        files.save_marker(marker)
        server.execute("CREATE ROLE %s LOGIN PASSWORD %%s" % pg.quote_ident(owner),
                       (pg.scram_verifier(self.p["owner_password"]),))
        self.actions.append("created the owner role %s" % owner)

    def ensure_database(self, server: pg.Session, source: dict) -> bool:
        """False in check mode when it would be created (nothing inside can be checked then)."""
        database, port = self.p["database"], self.p["port"]
        info = pg.database_info(server, database)
        if info is not None:
            if files.created_by(files.read_markers(), database, info["oid"], port) != self.names.move_id:
                raise PgMoveError("a database %s already exists on this server and this move did not create it: "
                                  "drop or rename it, or move the database elsewhere" % database,
                                  changed=bool(self.actions))
            return True
        if self.check:
            self.actions.append("would create database %s and copy its schema" % database)
            return False
        server.execute("CREATE DATABASE %s OWNER %s TEMPLATE template0 ENCODING %%s LC_COLLATE %%s LC_CTYPE %%s"
                       % (pg.quote_ident(database), pg.quote_ident(source["owner"])),
                       (source["encoding"], source["collate"], source["ctype"]))
        info = pg.database_info(server, database)
        marker = files.load_marker(self.names.move_id, database, port)
        marker["oid"] = info["oid"]
        files.save_marker(marker)
        self.actions.append("created database %s (%s, %s) owned by %s" % (database, source["encoding"],
                                                                          source["collate"], source["owner"]))
        pg.crash_point("setup:after_database")
        return True

    def ensure_schema(self, db: pg.Session, old: pg.Session, server: pg.Session) -> None:
        here, there = pg.schema_fingerprint(db), pg.schema_fingerprint(old)
        if here == there:
            return
        if here:
            raise PgMoveError(
                "the schema of %s here differs from the old server's (%s): DDL is not replicated; make the same "
                "change on both servers, or roll back and start again"
                % (self.p["database"], "; ".join(pg.schema_differences(there, here, "the old server", "here"))),
                changed=bool(self.actions))
        if self.check:
            self.actions.append("would copy the schema of %s" % self.p["database"])
            return
        p = self.p
        dump = self.command(
            [self.binary("pg_dump"), "--schema-only", "--no-publications", "--no-subscriptions", "--no-tablespaces",
             "--host", p["peer_address"], "--port", str(p["peer_port"]), "--username", self.names.role,
             "--dbname", p["database"]],
            "pg_dump --schema-only from the old server", environ={"PGPASSWORD": p["password"], "PGCONNECT_TIMEOUT": "5"})
        dump = files.filter_dump(dump, self.names.role)
        missing = sorted(r for r in files.dump_roles(dump) if pg.role_state(server, r) is None)
        if missing:
            raise PgMoveError("the schema of %s refers to roles that do not exist on this server: %s; create them "
                              "here (CREATE ROLE ...), then run this again" % (p["database"], ", ".join(missing)),
                              changed=bool(self.actions))
        self.command(["runuser", "-u", "postgres", "--", self.binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                      "--single-transaction", "--port", str(p["port"]), "--dbname", p["database"]],
                     "restoring the schema of %s" % p["database"], data=dump)
        self.actions.append("copied the schema of %s (pg_dump --schema-only, one transaction)" % p["database"])
        pg.crash_point("setup:after_schema")

    def ensure_way_back(self, db: pg.Session) -> None:
        names, p, check = self.names, self.p, self.check
        if check:
            if pg.role_state(db, names.role) is None:
                self.actions.append("would create role %s and publication %s (the way back)" % (names.role, names.publication))
                return
        elif pg.ensure_role(db, names.role, p["password"]):
            self.actions.append("role %s (LOGIN REPLICATION) with the move's password" % names.role)
        if pg.missing_grants(db, names.role, sequences_writable=True):
            if check:
                self.actions.append("would grant %s read access and setval on sequences" % names.role)
            else:
                pg.grant_read(db, names.role, sequences_writable=True)
                db.execute("GRANT pg_read_all_stats TO %s" % pg.quote_ident(names.role))
                self.actions.append("granted %s read access and setval on the sequences of %s"
                                    % (names.role, p["database"]))
        if not db.rows("SELECT 1 AS x FROM pg_publication WHERE pubname = %s AND puballtables", (names.publication,)):
            if check:
                self.actions.append("would create publication %s" % names.publication)
            else:
                pg.ensure_publication(db, names.publication)
                self.actions.append("publication %s FOR ALL TABLES (the way back)" % names.publication)
        rule = files.hba_rule(p["database"], names.role, p["peer_address"], names.hba_marker)
        files.ensure_hba_rule(db, rule, self.actions, check)

    def ensure_subscription(self, db: pg.Session, old: pg.Session) -> None:
        names, p = self.names, self.p
        if pg.subscription_exists(db, names.forward):
            return
        if self.check:
            self.actions.append("would create subscription %s (initial copy, then follow)" % names.forward)
            return
        # A crash inside CREATE SUBSCRIPTION can leave its slot on the old server without it.
        if pg.drop_slot_if_inactive(old, names.forward):
            self.actions.append("dropped slot %s an interrupted run had left on the old server" % names.forward)
        pg.create_subscription(
            db, names.forward,
            pg.conninfo(p["peer_address"], p["peer_port"], p["database"], names.role, p["password"], names.forward),
            names.publication, copy_data=True)
        self.actions.append("subscription %s: initial copy started, then follows the old server" % names.forward)
        pg.crash_point("setup:after_subscription")

    def run(self) -> dict:
        if not self.ensure_installed() or not self.ensure_running():
            return dict(started_postgresql=False)
        self.ensure_settings()
        p = self.p
        with self.remote() as old, pg_session.connect_local("postgres", p["port"]) as server:
            source = pg.database_info(old, p["database"])
            if source is None:
                raise PgMoveError("database %s does not exist on the old server" % p["database"])
            self.ensure_owner(server, source["owner"])
            if not self.ensure_database(server, source):
                return dict(started_postgresql=self.started)
            with pg_session.connect_local(p["database"], p["port"]) as db:
                self.ensure_schema(db, old, server)
                self.ensure_way_back(db)
                self.ensure_subscription(db, old)
                state = pg.subscription_state(db, self.names.forward)
                deadline = time.monotonic() + p["wait_s"]
                while state is not None and state["tables_not_ready"] and time.monotonic() < deadline:
                    time.sleep(0.2)
                    state = pg.subscription_state(db, self.names.forward)
        return dict(started_postgresql=self.started, subscription=state)


def main() -> None:
    module, _env = pg_module.pg_module(
        dict(
            side=dict(type="str", required=True, choices=["source", "new"]),
            major=dict(type="int"),
            listen_address=dict(type="str"),
            owner_password=dict(type="str", no_log=True),
            install=dict(type="bool", default=True),
            allow_restart=dict(type="bool", default=False),
            wait_s=dict(type="float", default=0.0),
        ),
        peer=True,
        required_if=[("side", "new", ("major", "listen_address"))],
        supports_check_mode=True,
    )
    p = module.params
    if p["side"] == "new":
        try:
            files.check_address(p["listen_address"], "listen_address")
        except PgMoveError as exc:
            module.fail_json(msg=str(exc))
        if not 9 <= p["major"] <= 99:
            module.fail_json(msg="major must be a PostgreSQL major version such as 15, got %d" % p["major"])
    if p["wait_s"] < 0:
        module.fail_json(msg="wait_s must be 0 or more, got %s" % p["wait_s"])
    names = pg.names_for(p["move_id"])
    actions: list[str] = []
    started = time.monotonic()

    def work() -> dict:
        side = SourceSide(module, names, actions) if p["side"] == "source" else NewSide(module, names, actions)
        result = dict(started_postgresql=False)
        result.update(side.run())
        result.update(changed=bool(actions), actions=actions,
                      duration_s=round(time.monotonic() - started, 3))
        return result

    pg_module.run(module, work, actions)


if __name__ == "__main__":
    main()
