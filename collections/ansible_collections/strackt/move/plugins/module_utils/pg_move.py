# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving an env's PostgreSQL database by logical replication: names, SQL and the checks.

No Ansible and no driver here (the freeze and the controller import it). SQL runs through a
``Session`` (``rows``/``execute``; ``pg_session.py`` is the psycopg2 one, tests use fakes).

The objects of one move, all named from its move id (``names_for``):

- a role ``strackt_<id>`` (LOGIN REPLICATION) on both servers, with the same password, each
  reachable only from the other server (one pg_hba line tagged ``# strackt-move db <move_id>``);
- a publication ``strackt_<id>`` FOR ALL TABLES in the moved database on both servers;
- forward: slot ``strackt_<id>_fwd`` on the old server, subscription of that name on the new;
- back (from the switch until finish): slot ``strackt_<id>_back`` on the new server,
  subscription of that name on the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import signal
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

NAME_PREFIX = "strackt_"
MOVE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# What PostgreSQL object names of a move may contain (unquoted identifiers, slot names).
_SANITISE_RE = re.compile(r"[^a-z0-9_]+")
# Room for the prefix and the longest suffix within PostgreSQL's 63-byte names.
MAX_ID_LEN = 63 - len(NAME_PREFIX) - len("_back")
HBA_TAG = "# strackt-move db "
MIB = 1024 * 1024
DEFAULT_HEADROOM_MB = 256
# A move's replication password: printable ASCII without blanks (no SASLprep surprises).
PASSWORD_RE = re.compile(r"^[\x21-\x7e]{16,200}$")
SCRAM_ITERATIONS = 4096
# Table-sync slots a subscription leaves behind only when it was dropped without its publisher.
SYNC_SLOT_RE = re.compile(r"^pg_[0-9]+_sync_[0-9]+_[0-9]+$")
# Names in messages: at most this many, then "and N more".
LIST_LIMIT = 20
# Set only by crash tests: "step,step" names of crash points where the process SIGKILLs itself.
CRASH_ENV = "STRACKT_PG_MOVE_CRASH_AT"


class Session(Protocol):
    """A connection in autocommit mode (each statement its own transaction)."""

    label: str

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        ...

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
        ...


class PgMoveError(Exception):
    """A step refused or failed; the message says what is wrong and what to do.
    ``changed`` tells whether anything was changed before it stopped."""

    def __init__(self, message: str, changed: bool = False) -> None:
        super().__init__(message)
        self.changed = changed


def crash_point(step: str) -> None:
    """Crash tests name steps in $STRACKT_PG_MOVE_CRASH_AT: the process kills itself there
    (SIGKILL: no cleanup, connections dropped), exactly what a crash leaves behind."""
    wanted = os.environ.get(CRASH_ENV, "")
    if step in [s.strip() for s in wanted.split(",") if s.strip()]:
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# names


@dataclass(frozen=True)
class MoveNames:
    move_id: str
    base: str

    @property
    def role(self) -> str:
        return self.base

    @property
    def publication(self) -> str:
        return self.base

    @property
    def forward(self) -> str:
        """Slot on the old server and subscription on the new one."""
        return self.base + "_fwd"

    @property
    def back(self) -> str:
        """Slot on the new server and subscription on the old one (the way back)."""
        return self.base + "_back"

    @property
    def hba_marker(self) -> str:
        return HBA_TAG + self.move_id

    def owns(self, name: str) -> bool:
        return name in (self.base, self.forward, self.back)


def check_move_id(move_id: Any) -> str:
    if not isinstance(move_id, str) or not MOVE_ID_RE.fullmatch(move_id):
        raise PgMoveError(
            "move_id %r is not valid: use letters, digits, '.', '_' and '-' (at most 100), "
            "as the move record names it (e.g. myapp-20261125T135235Z)" % (move_id,))
    return move_id


def names_for(move_id: str) -> MoveNames:
    """The move's object names: lower case, [a-z0-9_], short enough for every suffix."""
    check_move_id(move_id)
    sanitised = _SANITISE_RE.sub("_", move_id.lower()).strip("_") or "move"
    if len(sanitised) > MAX_ID_LEN:
        digest = hashlib.sha256(move_id.encode()).hexdigest()[:8]
        sanitised = sanitised[:MAX_ID_LEN - 9].rstrip("_") + "_" + digest
    return MoveNames(move_id=move_id, base=NAME_PREFIX + sanitised)


def is_strackt_name(name: str) -> bool:
    return name.startswith(NAME_PREFIX)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def conninfo_value(value: str) -> str:
    """A libpq connection-string value, quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(host: str, port: int, database: str, user: str, password: str, application_name: str = "") -> str:
    parts = [("host", host), ("port", str(port)), ("dbname", database), ("user", user),
             ("password", password), ("connect_timeout", "5")]
    if application_name:
        parts.append(("application_name", application_name))
    return " ".join("%s=%s" % (key, conninfo_value(value)) for key, value in parts)


def check_password(password: Any) -> str:
    if not isinstance(password, str) or not PASSWORD_RE.fullmatch(password):
        raise PgMoveError(
            "the move's replication password must be 16 to 200 printable ASCII characters "
            "without blanks; derive one per move, e.g. from a secret and the move id")
    return password


# ---------------------------------------------------------------------------------------------
# SCRAM: roles get a verifier computed here, so the password itself never reaches the server
# (nor its log, should a statement fail).


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def scram_matches(password: str, verifier: str | None) -> bool:
    """Whether a stored verifier (pg_authid.rolpassword) is the one of this password."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if not match:
        return False
    try:
        salt = base64.b64decode(match.group(2))
    except ValueError:
        return False
    return hmac.compare_digest(scram_verifier(password, salt, int(match.group(1))), verifier or "")


# ---------------------------------------------------------------------------------------------
# LSNs


def parse_lsn(text: str | None) -> int | None:
    if not text:
        return None
    high, _sep, low = str(text).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def name_list(items: Sequence[str]) -> str:
    """Names for a message: the first LIST_LIMIT, then how many more."""
    items = list(items)
    text = ", ".join(items[:LIST_LIMIT])
    if len(items) > LIST_LIMIT:
        text += " and %d more" % (len(items) - LIST_LIMIT)
    return text


# ---------------------------------------------------------------------------------------------
# schema drift: DDL is not replicated, so the switch compares the schemas of both sides


def schema_differences(old_items: Sequence[str], new_items: Sequence[str], old_name: str, new_name: str) -> list[str]:
    only_old = sorted(set(old_items) - set(new_items))
    only_new = sorted(set(new_items) - set(old_items))
    found = []
    if only_old:
        found.append("only on %s: %s" % (old_name, name_list(only_old)))
    if only_new:
        found.append("only on %s: %s" % (new_name, name_list(only_new)))
    return found


# ---------------------------------------------------------------------------------------------
# SQL. Every function takes a Session; names are quoted here, values go as parameters.

USER_SCHEMA = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"


def server_settings(db: Session) -> dict[str, Any]:
    row = db.rows(
        "SELECT current_setting('server_version_num')::int AS version_num,"
        " current_setting('wal_level') AS wal_level,"
        " current_setting('listen_addresses') AS listen_addresses,"
        " current_setting('port')::int AS port,"
        " current_setting('data_directory') AS data_directory,"
        " current_setting('hba_file') AS hba_file,"
        " current_setting('max_replication_slots')::int AS max_replication_slots,"
        " current_setting('max_wal_senders')::int AS max_wal_senders,"
        " (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,"
        " (SELECT count(*) FROM pg_stat_replication)::int AS wal_senders_used,"
        " (SELECT coalesce(bool_or(pending_restart), false) FROM pg_settings) AS pending_restart")[0]
    row["major"] = row["version_num"] // 10000
    row["free_replication_slots"] = row["max_replication_slots"] - row["slots_used"]
    row["free_wal_senders"] = row["max_wal_senders"] - row["wal_senders_used"]
    return row


def database_info(db: Session, database: str) -> dict[str, Any] | None:
    found = db.rows(
        "SELECT d.oid::bigint AS oid, pg_database_size(d.oid)::bigint AS size,"
        " pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,"
        " d.datcollate AS collate, d.datctype AS ctype"
        " FROM pg_database d WHERE d.datname = %s", (database,))
    return found[0] if found else None


def database_content_facts(db: Session) -> dict[str, Any]:
    """What logical replication cannot carry, found in the connected database."""
    rel = ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name FROM pg_class c"
           " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " + USER_SCHEMA + " AND %s ORDER BY 1")
    no_identity = rel % ("c.relkind = 'r' AND c.relpersistence = 'p' AND ((c.relreplident = 'd' AND NOT EXISTS"
                         " (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))"
                         " OR c.relreplident = 'n')"
                         " AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e')")
    return {
        "tables_without_identity": [r["name"] for r in db.rows(no_identity)],
        "unlogged_tables": [r["name"] for r in db.rows(rel % "c.relkind IN ('r', 'p') AND c.relpersistence = 'u'")],
        "materialized_views": [r["name"] for r in db.rows(rel % "c.relkind = 'm'")],
        "tables": len(db.rows(rel % "c.relkind IN ('r', 'p')")),
        "sequences": len(db.rows(rel % "c.relkind = 'S'")),
        "large_objects": db.rows("SELECT count(*)::bigint AS n FROM pg_largeobject_metadata")[0]["n"],
    }


def schema_fingerprint(db: Session) -> list[str]:
    """Tables, columns (type, not null), replica identities and sequences of the connected
    database, one line each: equal lists mean the replicated schema is the same."""
    rows = db.rows(
        "SELECT 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS item"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " + USER_SCHEMA + " AND c.relkind IN ('r', 'p')"
        " UNION ALL SELECT 'identity ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' '"
        " || c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " + USER_SCHEMA + " AND c.relkind IN ('r', 'p')"
        " UNION ALL SELECT 'column ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'"
        " || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)"
        " || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " + USER_SCHEMA + " AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
        " UNION ALL SELECT 'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " + USER_SCHEMA + " AND c.relkind = 'S' ORDER BY 1")
    return [r["item"] for r in rows]


def user_schemas(db: Session) -> list[str]:
    return [r["nspname"] for r in db.rows(
        "SELECT n.nspname FROM pg_namespace n WHERE " + USER_SCHEMA + " ORDER BY 1")]


def strackt_objects(db: Session) -> dict[str, Any]:
    """strackt replication objects visible from the connected database: slots, subscriptions
    and roles are cluster-wide; publications belong to this database."""
    slots = db.rows(
        "SELECT slot_name AS name, database, active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS wal_retained_bytes"
        " FROM pg_replication_slots WHERE slot_name LIKE 'strackt\\_%%' ORDER BY 1")
    sync = db.rows("SELECT slot_name AS name, database, active FROM pg_replication_slots"
                   " WHERE slot_name ~ '^pg_[0-9]+_sync_[0-9]+_[0-9]+$' ORDER BY 1")
    return {
        "slots": slots,
        "orphan_sync_slots": [s["name"] for s in sync if not s["active"]],
        "subscriptions": db.rows(
            "SELECT s.subname AS name, d.datname AS database, s.subenabled AS enabled, s.subslotname AS slot"
            " FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname LIKE 'strackt\\_%%'"
            " ORDER BY 1"),
        "publications": [r["pubname"] for r in db.rows(
            "SELECT pubname FROM pg_publication WHERE pubname LIKE 'strackt\\_%%' ORDER BY 1")],
        "roles": [r["rolname"] for r in db.rows(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'strackt\\_%%' ORDER BY 1")],
    }


def slot(db: Session, name: str) -> dict[str, Any] | None:
    found = db.rows(
        "SELECT slot_name, database, active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn"
        " FROM pg_replication_slots WHERE slot_name = %s", (name,))
    return found[0] if found else None


def current_lsn(db: Session) -> int:
    lsn = parse_lsn(db.rows("SELECT pg_current_wal_lsn()::text AS lsn")[0]["lsn"])
    if lsn is None:
        raise PgMoveError("%s returned no WAL position" % db.label)
    return lsn


def publisher_lag(db: Session, slot_name: str) -> dict[str, Any] | None:
    """How far the subscriber of a slot on this (publishing) server is behind: bytes of WAL
    written here that it has not confirmed, and seconds from the WAL sender's replay lag."""
    found = db.rows(
        "SELECT s.slot_name AS slot, s.active, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,"
        " pg_current_wal_lsn()::text AS current_lsn,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS bytes,"
        " extract(epoch FROM r.replay_lag)::float8 AS replay_lag_s,"
        " extract(epoch FROM now() - r.reply_time)::float8 AS last_reply_s"
        " FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid"
        " WHERE s.slot_name = %s", (slot_name,))
    if not found:
        return None
    lag = found[0]
    lag["bytes"] = max(0, int(lag["bytes"] or 0))
    # Caught up: no lag, whatever the last measurement said; else the sender's replay lag.
    lag["seconds"] = 0.0 if lag["bytes"] == 0 else lag["replay_lag_s"]
    return lag


def subscription_state(db: Session, name: str) -> dict[str, Any] | None:
    """A subscription on this (subscribing) server: enabled, its workers, tables not ready."""
    found = db.rows(
        "SELECT s.oid::bigint AS oid, s.subenabled AS enabled, s.subslotname AS slot,"
        " (SELECT max(latest_end_lsn)::text FROM pg_stat_subscription st WHERE st.subid = s.oid) AS latest_end_lsn,"
        " (SELECT extract(epoch FROM now() - max(last_msg_receipt_time))::float8 FROM pg_stat_subscription st"
        "  WHERE st.subid = s.oid) AS last_message_s,"
        " (SELECT count(*) FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.pid IS NOT NULL)::int AS workers"
        " FROM pg_subscription s WHERE s.subname = %s", (name,))
    if not found:
        return None
    state = found[0]
    state["tables_not_ready"] = tables_not_ready(db, name)
    return state


def tables_not_ready(db: Session, subscription: str) -> list[str]:
    """Tables of a subscription whose initial copy has not finished (state not 'r')."""
    return ["%s (%s)" % (r["name"], r["state"]) for r in db.rows(
        "SELECT r.srrelid::regclass::text AS name, r.srsubstate AS state FROM pg_subscription_rel r"
        " JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = %s AND r.srsubstate <> 'r' ORDER BY 1",
        (subscription,))]


def other_sessions(db: Session) -> list[str]:
    """Client sessions on the connected database other than this one (replication workers and
    WAL senders excluded): the app's, a cron job's, an operator's."""
    return ["%s@%s pid %s%s" % (r["usename"], r["client_addr"] or "local", r["pid"],
                                " (%s)" % r["application_name"] if r["application_name"] else "")
            for r in db.rows(
                "SELECT pid, usename, client_addr::text AS client_addr, application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' ORDER BY pid")]


def read_sequences(db: Session) -> list[dict[str, Any]]:
    """Every sequence of the connected database with its last_value and is_called, in one query."""
    names = [r["name"] for r in db.rows(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " + USER_SCHEMA + " AND c.relkind = 'S' ORDER BY 1")]
    if not names:
        return []
    union = " UNION ALL ".join(
        "SELECT %%s AS name, last_value::bigint AS last_value, is_called FROM %s" % name for name in names)
    return db.rows(union, names)


def write_sequences(db: Session, values: Sequence[Mapping[str, Any]]) -> None:
    """setval each sequence to exactly the given last_value and is_called, in one statement."""
    if not values:
        return
    db.rows("SELECT setval(t.name::regclass, t.last_value, t.is_called) FROM"
            " unnest(%s::text[], %s::bigint[], %s::bool[]) AS t(name, last_value, is_called)",
            ([v["name"] for v in values], [v["last_value"] for v in values], [v["is_called"] for v in values]))


def sequence_mismatches(expected: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]]) -> list[str]:
    have = {r["name"]: (r["last_value"], r["is_called"]) for r in found}
    return ["%s: %s wanted, %s found" % (r["name"], (r["last_value"], r["is_called"]), have.get(r["name"]))
            for r in expected if have.get(r["name"]) != (r["last_value"], r["is_called"])]


def role_state(db: Session, role: str) -> dict[str, Any] | None:
    found = db.rows("SELECT rolcanlogin AS login, rolreplication AS replication FROM pg_roles WHERE rolname = %s",
                    (role,))
    return found[0] if found else None


def role_password_verifier(db: Session, role: str) -> str | None:
    found = db.rows("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    return found[0]["rolpassword"] if found else None


def ensure_role(db: Session, role: str, password: str) -> bool:
    """LOGIN REPLICATION role with this password (as a SCRAM verifier). True if changed."""
    state = role_state(db, role)
    if state is None:
        db.execute("CREATE ROLE %s LOGIN REPLICATION PASSWORD %%s" % quote_ident(role), (scram_verifier(password),))
        return True
    changed = False
    if not (state["login"] and state["replication"]):
        db.execute("ALTER ROLE %s LOGIN REPLICATION" % quote_ident(role))
        changed = True
    if not scram_matches(password, role_password_verifier(db, role)):
        db.execute("ALTER ROLE %s PASSWORD %%s" % quote_ident(role), (scram_verifier(password),))
        changed = True
    return changed


def set_login(db: Session, role: str, login: bool) -> bool:
    state = role_state(db, role)
    if state is None or state["login"] == login:
        return False
    db.execute("ALTER ROLE %s %s" % (quote_ident(role), "LOGIN" if login else "NOLOGIN"))
    return True


def grant_read(db: Session, role: str, sequences_writable: bool = False) -> None:
    """Read access for the move's role in every user schema of the connected database (the
    initial copy runs as it); on the new server also setval on sequences (the switch)."""
    for schema in user_schemas(db):
        q = quote_ident(schema)
        db.execute("GRANT USAGE ON SCHEMA %s TO %s" % (q, quote_ident(role)))
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s" % (q, quote_ident(role)))
        db.execute("GRANT SELECT%s ON ALL SEQUENCES IN SCHEMA %s TO %s"
                   % (", UPDATE" if sequences_writable else "", q, quote_ident(role)))


def missing_grants(db: Session, role: str, sequences_writable: bool = False) -> int:
    """How many tables or sequences the role cannot yet read (or setval)."""
    return db.rows(
        "SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE " + USER_SCHEMA + " AND ((c.relkind IN ('r', 'p') AND NOT has_table_privilege(%s, c.oid, 'SELECT'))"
        " OR (c.relkind = 'S' AND NOT has_sequence_privilege(%s, c.oid, %s)))",
        (role, role, "SELECT, UPDATE" if sequences_writable else "SELECT"))[0]["n"]


def ensure_publication(db: Session, name: str) -> bool:
    found = db.rows("SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,))
    if found and found[0]["puballtables"]:
        return False
    if found:
        db.execute("DROP PUBLICATION %s" % quote_ident(name))
    db.execute("CREATE PUBLICATION %s FOR ALL TABLES" % quote_ident(name))
    return True


def drop_publication(db: Session, name: str) -> bool:
    if not db.rows("SELECT 1 AS x FROM pg_publication WHERE pubname = %s", (name,)):
        return False
    db.execute("DROP PUBLICATION %s" % quote_ident(name))
    return True


def create_subscription(db: Session, name: str, connection: str, publication: str, *, copy_data: bool) -> None:
    """A subscription whose slot (same name) is created on the publisher now."""
    db.execute(
        "CREATE SUBSCRIPTION %s CONNECTION %%s PUBLICATION %s WITH (slot_name = %s, create_slot = true,"
        " copy_data = %s, synchronous_commit = 'on')"
        % (quote_ident(name), quote_ident(publication), quote_ident(name), "true" if copy_data else "false"),
        (connection,))


def subscription_exists(db: Session, name: str) -> bool:
    return bool(db.rows("SELECT 1 AS x FROM pg_subscription WHERE subname = %s", (name,)))


def origin_progress(db: Session, subscription: str) -> int | None:
    """The last remote commit a subscription applied (None: nothing yet)."""
    found = db.rows(
        "SELECT o.remote_lsn::text AS lsn FROM pg_subscription s"
        " JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.oid::text WHERE s.subname = %s",
        (subscription,))
    lsn = parse_lsn(found[0]["lsn"]) if found else None
    return lsn or None


def drop_subscription(db: Session, name: str) -> str:
    """Drop a subscription and, through its connection, its slot on the publisher. When the
    publisher cannot drop it (unreachable, slot or role gone), detach the slot and drop the
    subscription alone: returns 'dropped', 'detached' (the publisher may keep the slot:
    run cleanup there) or 'absent'."""
    if not subscription_exists(db, name):
        return "absent"
    try:
        db.execute("DROP SUBSCRIPTION %s" % quote_ident(name))
        return "dropped"
    except Exception:  # the publisher refused or is unreachable: nothing was dropped
        db.execute("ALTER SUBSCRIPTION %s DISABLE" % quote_ident(name))
        db.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % quote_ident(name))
        db.execute("DROP SUBSCRIPTION %s" % quote_ident(name))
        return "detached"


def terminate_slot_users(db: Session, slot_name: str) -> None:
    db.rows("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s AND active_pid IS NOT NULL", (slot_name,))


def drop_slot_if_inactive(db: Session, slot_name: str) -> bool:
    """Drop a slot nobody streams from; True when it was dropped here."""
    return bool(db.rows(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
        (slot_name,)))


@dataclass
class Timer:
    """Durations of named parts, for the switch's report."""

    clock: Any
    parts: dict[str, float] = field(default_factory=dict)
    _start: float = 0.0
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._start = self._last = self.clock()

    def mark(self, part: str) -> None:
        now = self.clock()
        self.parts[part] = round(self.parts.get(part, 0.0) + now - self._last, 4)
        self._last = now

    def total(self) -> float:
        return round(self.clock() - self._start, 4)
