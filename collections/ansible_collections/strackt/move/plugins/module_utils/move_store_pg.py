# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL record store: move records that several control or execution nodes share.

Chosen when the setting ``record_store`` / ``$STRACKT_RECORD_STORE`` is a PostgreSQL DSN
(docs/record-store.md). Same records as the file store (the JSON of ``MoveRecord`` and
``RetainedCopies``, parsed by ``move_store.parse_record``/``parse_retained``), kept as text in
tables it creates on first use: ``strackt_move_records`` (env, the move in progress),
``strackt_move_history`` (move_id, archived moves) and ``strackt_retained`` (env); and the
evacuations' records (their JSON, written and checked by ``strackt_move.evacuation``):
``strackt_evacuations`` (server, the evacuation in progress and the operator's abort request) and
``strackt_evacuation_history`` (history id, archived evacuations).

The per-env write lock is a session-level advisory lock on the store's connection: PostgreSQL
drops it when the session ends, so a holder killed with SIGKILL frees it at once, and a node that
is lost frees it when the server's TCP keepalive gives up on its connection (set to about a
minute on each session here); the node's side has libpq's keepalives and TCP user timeout, so a
node cut off from the database finds its connection failed within about as long. The lock of an evacuation (whoever drives the evacuation of one
server) is an advisory lock of the same kind in the two-int4 key space (``objsubid`` 2 in
``pg_locks``), which never meets the bigint key space of the env locks. Each write is its own
statement (an archive one transaction), as each file write is atomic in the file store.

The DSN may hold a password: it is never put in a message; ``describe`` is what messages show.
psycopg (v3) is imported guarded: only this store needs it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
import typing

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.strackt.move.plugins.module_utils.holder_lock import Holder, LockBusy
from ansible_collections.strackt.move.plugins.module_utils.move_record import (
    MoveRecord,
    RetainedCopies,
)
from ansible_collections.strackt.move.plugins.module_utils.move_store import (
    RECORD_STORE_ENV,
    RecordBackend,
    RecordLocked,
    StoreUnavailable,
    parse_record,
    parse_retained,
)
from ansible_collections.strackt.move.plugins.module_utils.names import (
    validate_env_name,
    validate_evacuation_id,
    validate_move_id,
    validate_server_name,
)

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
except ImportError:
    psycopg = None
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

#: what to install where the PostgreSQL store is used (the extra strackt-move[pg-store])
PACKAGE = "psycopg"
INSTALL_HINT = "pip install 'psycopg[binary]>=3.1' (the extra strackt-move[pg-store])"

#: seconds without an answer after which the server gives up on a lost node's session (and its
#: locks): keepalives every 10 s after 30 s idle, 3 missed
KEEPALIVE_SETTINGS = (("tcp_keepalives_idle", 30), ("tcp_keepalives_interval", 10), ("tcp_keepalives_count", 3))
#: the same on the node's side (libpq): a node cut off from the database finds its connection
#: failed within about a minute too, as the server frees its locks, not when the kernel's
#: retransmissions give up (many minutes); tcp_user_timeout bounds unacknowledged writes
CLIENT_KEEPALIVES = dict(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                         tcp_user_timeout=60000)
CONNECT_TIMEOUT_S = 10
#: the transaction-level advisory lock that makes creating the tables safe when two nodes start
SCHEMA_LOCK = "strackt-move/schema"
LOCK_PREFIX = "strackt-move/record/"
EVACUATION_LOCK_PREFIX = "strackt-move/evacuation/"

#: the advisory lock of a key's name: its 64-bit hash, as one bigint (env locks, objsubid 1 in
#: pg_locks) or split in two int4 (evacuation locks, objsubid 2): two key spaces that never meet
_KEY = {1: "hashtextextended(%s, 0)",
        2: "(SELECT (h >> 32)::int FROM (SELECT hashtextextended(%s, 0) AS h) k), "
           "(SELECT h::bit(32)::int FROM (SELECT hashtextextended(%s, 0) AS h) k)"}

#: this statement's session holds the env lock named by the parameter: a save or archive
#: checks it in the statement (transaction) that writes, so a write never lands from a session
#: without the lock (a pooler in transaction mode hands each statement any server connection)
HOLDS_ENV_LOCK = ("EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
                  "AND l.objsubid = 1 AND l.pid = pg_backend_pid() "
                  "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0))")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS strackt_move_records (
        env text PRIMARY KEY,
        move_id text NOT NULL,
        record text NOT NULL,
        saved_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS strackt_move_history (
        move_id text PRIMARY KEY,
        env text NOT NULL,
        record text NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS strackt_move_history_env ON strackt_move_history (env)",
    """CREATE TABLE IF NOT EXISTS strackt_retained (
        env text PRIMARY KEY,
        copies text NOT NULL,
        saved_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS strackt_evacuations (
        server text PRIMARY KEY,
        record text NOT NULL,
        abort_request text,
        saved_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS strackt_evacuation_history (
        history_id text PRIMARY KEY,
        server text NOT NULL,
        record text NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now())""",
)
#: created last: when it exists, every table does
LAST_TABLE = "strackt_evacuation_history"


def missing_driver_message() -> str:
    return "%s; %s" % (
        missing_required_lib(PACKAGE, reason="the PostgreSQL record store (%s or record_store)" % RECORD_STORE_ENV),
        INSTALL_HINT)


def _conninfo(dsn: str) -> dict[str, typing.Any]:
    """The DSN's parts (libpq's own parser). Its error could quote the DSN: not passed on."""
    try:
        return dict(conninfo_to_dict(dsn))
    except Exception:  # psycopg.ProgrammingError; anything else is as unparsable
        raise StoreUnavailable(
            "the PostgreSQL DSN of the record store (%s) cannot be parsed: give postgresql://USER@HOST/DB "
            "or libpq key=value pairs (docs/record-store.md)" % RECORD_STORE_ENV) from None


def describe(params: typing.Mapping[str, typing.Any]) -> str:
    """postgresql://USER@HOST:PORT/DB of the DSN's parts: what messages show (no password)."""
    user = params.get("user") or ""
    host = params.get("host") or params.get("hostaddr") or "(local socket)"
    port = params.get("port")
    return "postgresql://%s%s%s/%s" % (user + "@" if user else "", host, ":%s" % port if port else "",
                                       params.get("dbname") or "")


def _is_local(params: typing.Mapping[str, typing.Any]) -> bool:
    """A Unix socket (no host, or a directory): TLS does not apply."""
    if params.get("hostaddr"):
        return False
    hosts = str(params.get("host") or "")
    return not hosts or all(h.startswith("/") for h in hosts.split(","))


def connect_options(params: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """What the store adds to the DSN's parts ``params`` when it connects; the DSN's own values win."""
    extra: dict[str, typing.Any] = {}
    if not _is_local(params):
        extra["sslmode"] = "verify-full"  # the password and the records cross the network
        extra.update(CLIENT_KEEPALIVES)
    # who holds a lock, in pg_stat_activity and in our busy message
    extra["application_name"] = ("strackt-move pid %d on %s" % (os.getpid(), socket.gethostname()))[:63]
    extra["connect_timeout"] = CONNECT_TIMEOUT_S
    return {k: v for k, v in extra.items() if k not in params}


class PostgresStore(RecordBackend):
    kind = "postgresql"

    def __init__(self, dsn: str) -> None:
        if psycopg is None:
            raise StoreUnavailable(missing_driver_message())
        self._dsn = dsn
        self._params = _conninfo(dsn)
        self._password = str(self._params.get("password") or "")
        self.description = describe(self._params)
        self._conn: typing.Any = None
        self._pid = 0
        self._held: set[str] = set()

    def __repr__(self) -> str:  # never the DSN
        return "PostgresStore(%s)" % self.description

    # ---- the connection

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "********") if self._password else text

    def _unavailable(self, exc: BaseException, doing: str) -> StoreUnavailable:
        return StoreUnavailable("the PostgreSQL record store %s: %s failed: %s; check that it runs and that "
                                "%s names it (docs/record-store.md)"
                                % (self.description, doing, self._scrub(str(exc)).strip(), RECORD_STORE_ENV))

    def _connection(self) -> typing.Any:
        if self._pid != os.getpid():
            # a forked child: the parent's session and its locks are not ours to use or close
            self._conn, self._held = None, set()
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._held:
            # the session is gone (broken, or closed when giving back a lock failed) and its locks
            # with it: a new session would go on without them (another node may hold them by
            # now), so nothing more until they are given back or the store is closed
            raise StoreUnavailable("the PostgreSQL record store %s: the connection holding %s was lost, and the lock "
                                   "with it; this run stops here, its records as they were saved: run the command "
                                   "again (it continues)" % (self.description, ", ".join(sorted(self._held))))
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, **connect_options(self._params))
            if not _is_local(self._params):
                for name, value in KEEPALIVE_SETTINGS:
                    conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
            self._create_tables(conn)
        except psycopg.Error as exc:
            raise self._unavailable(exc, "connecting") from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    @staticmethod
    def _create_tables(conn: typing.Any) -> None:
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LAST_TABLE,)).fetchone()[0]:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)

    def _run(self, doing: str, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            cur = self._connection().execute(sql, args)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise self._unavailable(exc, doing) from None

    def _end_session(self) -> None:
        """Close the connection; the locks it held stay noted in ``_held``, so no new session
        starts without them (``_connection``)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()  # ends the session: any lock still held goes with it

    def close(self) -> None:
        """End the session and give back every lock it held: the next statement starts afresh."""
        self._end_session()
        self._held = set()

    # ---- where things are, for messages

    def where(self, env: str) -> str:
        return "%s table strackt_move_records, env %s" % (self.description, validate_env_name(env))

    def where_history(self, move_id: str) -> str:
        return "%s table strackt_move_history, move %s" % (self.description, validate_move_id(move_id))

    def where_retained(self, env: str) -> str:
        return "%s table strackt_retained, env %s" % (self.description, validate_env_name(env))

    # ---- records

    def ensure(self) -> None:
        self._connection()

    def load(self, env: str) -> MoveRecord | None:
        rows = self._run("reading the record of %s" % env,
                         "SELECT record FROM strackt_move_records WHERE env = %s", (validate_env_name(env),))
        return parse_record(rows[0][0], self.where(env), env) if rows else None

    def load_history(self, move_id: str) -> MoveRecord | None:
        rows = self._run("reading the archived move %s" % move_id,
                         "SELECT record FROM strackt_move_history WHERE move_id = %s", (validate_move_id(move_id),))
        return parse_record(rows[0][0], self.where_history(move_id)) if rows else None

    def list_history(self, env: str | None = None) -> list[str]:
        if env is None:
            rows = self._run("listing the history", 'SELECT move_id FROM strackt_move_history ORDER BY move_id COLLATE "C"')
        else:
            rows = self._run("listing the history of %s" % env, "SELECT move_id FROM strackt_move_history WHERE env = %s "
                             'ORDER BY move_id COLLATE "C"', (validate_env_name(env),))
        return [r[0] for r in rows]

    def list_active(self) -> list[str]:
        return [r[0] for r in self._run("listing the moves in progress",
                                        'SELECT env FROM strackt_move_records ORDER BY env COLLATE "C"')]

    def _not_locked(self, env: str, doing: str) -> StoreUnavailable:
        return StoreUnavailable(
            "the PostgreSQL record store %s: %s refused: this session does not hold the lock of env %s (advisory "
            "lock %r), nothing was written; a write is made under the env's lock only. Behind a connection pooler "
            "in transaction mode (PgBouncer pool_mode=transaction) the lock stays on another server connection: "
            "connect to PostgreSQL directly or in session mode (docs/record-store.md)"
            % (self.description, doing, env, LOCK_PREFIX + env))

    def save(self, record: MoveRecord) -> str:
        env = validate_env_name(record.env)
        doing = "saving the record of %s" % env
        if not self._run(doing, "INSERT INTO strackt_move_records (env, move_id, record) SELECT %s, %s, %s WHERE "
                         + HOLDS_ENV_LOCK + " ON CONFLICT (env) DO UPDATE SET move_id = EXCLUDED.move_id, "
                         "record = EXCLUDED.record, saved_at = now() RETURNING env",
                         (env, record.move_id, record.to_json(), LOCK_PREFIX + env)):
            raise self._not_locked(env, doing)
        return self.where(env)

    def _archive(self, record: MoveRecord) -> str:
        conn = self._connection()
        env = validate_env_name(record.env)
        try:
            with conn.transaction():  # the history gets it and the move ends, or neither
                if not conn.execute("SELECT " + HOLDS_ENV_LOCK, (LOCK_PREFIX + env,)).fetchone()[0]:
                    raise self._not_locked(env, "archiving move %s" % record.move_id)  # rolls back
                conn.execute("INSERT INTO strackt_move_history (move_id, env, record) VALUES (%s, %s, %s) "
                             "ON CONFLICT (move_id) DO UPDATE SET record = EXCLUDED.record, archived_at = now()",
                             (validate_move_id(record.move_id), validate_env_name(record.env), record.to_json()))
                conn.execute("DELETE FROM strackt_move_records WHERE env = %s", (record.env,))
        except psycopg.Error as exc:
            raise self._unavailable(exc, "archiving move %s" % record.move_id) from None
        return self.where_history(record.move_id)

    def load_retained(self, env: str) -> RetainedCopies:
        rows = self._run("reading the retained copies of %s" % env,
                         "SELECT copies FROM strackt_retained WHERE env = %s", (validate_env_name(env),))
        return parse_retained(rows[0][0], self.where_retained(env), env) if rows else RetainedCopies(env=env)

    def save_retained(self, retained: RetainedCopies) -> str:
        # under the env's lock, as a record (a retire's claim and a move's creation are decided
        # under it); one statement each, so the check and the write meet the same session
        env = validate_env_name(retained.env)
        lock = LOCK_PREFIX + env
        if not retained.copies:
            doing = "forgetting the retained copies of %s" % env
            held = self._run(doing, "WITH held AS (SELECT " + HOLDS_ENV_LOCK + " AS ok), gone AS (DELETE FROM "
                             "strackt_retained WHERE env = %s AND (SELECT ok FROM held) RETURNING 1) "
                             "SELECT ok FROM held", (lock, env))
        else:
            doing = "saving the retained copies of %s" % env
            held = self._run(doing, "INSERT INTO strackt_retained (env, copies) SELECT %s, %s WHERE "
                             + HOLDS_ENV_LOCK + " ON CONFLICT (env) DO UPDATE SET copies = EXCLUDED.copies, "
                             "saved_at = now() RETURNING true", (env, retained.to_json(), lock))
        if not held or not held[0][0]:
            raise self._not_locked(env, doing)
        return self.where_retained(env)

    def list_retained(self) -> list[str]:
        return [r[0] for r in self._run("listing the retained copies",
                                        'SELECT env FROM strackt_retained ORDER BY env COLLATE "C"')]

    # ---- the locks

    def _key_args(self, key: str, space: int) -> tuple[str, ...]:
        return (key,) * space

    def _try_lock(self, key: str, space: int, doing: str) -> bool:
        return bool(self._run(doing, "SELECT pg_try_advisory_lock(%s)" % _KEY[space], self._key_args(key, space))[0][0])

    def _unlock(self, conn: typing.Any, key: str, space: int) -> None:
        """Give back the lock taken on ``conn``; if that fails, end the session (and the lock with it)."""
        if conn is self._conn and conn is not None and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)" % _KEY[space], self._key_args(key, space))
            except psycopg.Error:
                self._end_session()  # the other locks went with the session: _held keeps them noted

    def _holder_session(self, key: str, space: int) -> tuple[str, typing.Any] | None:
        """The session holding the advisory lock ``key``: its application_name and start."""
        try:
            rows = self._run("looking up the lock's holder",
                             "SELECT a.application_name, a.backend_start FROM pg_locks l "
                             "JOIN pg_stat_activity a ON a.pid = l.pid "
                             "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = %s "
                             "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)", (space, key))
        except StoreUnavailable:
            rows = []
        return (rows[0][0], rows[0][1]) if rows else None

    def _holder(self, key: str) -> str:
        """Who holds the env lock ``key`` (its session's application_name), for the message."""
        found = self._holder_session(key, 1)
        if found is None:
            return "a session of another process"
        name, since = found
        return "%s, since %s" % (name or "a session without application_name", _stamp(since))

    def _wait_for(self, key: str, space: int, doing: str, timeout: float | None, poll: float) -> bool:
        """Take ``key`` (not held by this store already); False when the time is up."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            if key not in self._held and self._try_lock(key, space, doing):
                self._held.add(key)
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    @contextlib.contextmanager
    def lock(self, env: str, timeout: float | None = 0.0, poll: float = 0.1) -> typing.Iterator[str]:
        """The env's advisory lock in the database (see the module's doc): timeout 0 = try once,
        None = wait forever; RecordLocked naming the holder's session when it is not free. Not
        re-entrant, like the file store's flock."""
        key = LOCK_PREFIX + validate_env_name(env)
        where = "advisory lock %r in %s" % (key, self.description)
        if not self._wait_for(key, 1, "taking the lock of %s" % env, timeout, poll):
            raise RecordLocked("another strackt.move run holds the lock of env %s (%s, held by %s); wait for it "
                               "to end" % (env, where, self._holder(key)))
        conn = self._conn
        try:
            yield where
        finally:
            self._held.discard(key)
            self._unlock(conn, key, 1)

    # ---- evacuations

    def where_evacuation(self, server: str) -> str:
        return "%s table strackt_evacuations, server %s" % (self.description, validate_server_name(server))

    def load_evacuation(self, server: str) -> str | None:
        rows = self._run("reading the evacuation of %s" % server,
                         "SELECT record FROM strackt_evacuations WHERE server = %s", (validate_server_name(server),))
        return rows[0][0] if rows else None

    def save_evacuation(self, server: str, text: str) -> str:
        # the abort request is the abort command's to write: a save keeps it
        self._run("saving the evacuation of %s" % server,
                  "INSERT INTO strackt_evacuations (server, record) VALUES (%s, %s) "
                  "ON CONFLICT (server) DO UPDATE SET record = EXCLUDED.record, saved_at = now()",
                  (validate_server_name(server), text))
        return self.where_evacuation(server)

    def list_evacuations(self) -> list[str]:
        return [r[0] for r in self._run("listing the evacuations in progress",
                                        'SELECT server FROM strackt_evacuations ORDER BY server COLLATE "C"')]

    def archive_evacuation(self, server: str, history_id: str, text: str) -> str:
        conn = self._connection()
        try:
            with conn.transaction():  # the history gets it and the evacuation (and its abort request) ends, or neither
                conn.execute("INSERT INTO strackt_evacuation_history (history_id, server, record) VALUES (%s, %s, %s) "
                             "ON CONFLICT (history_id) DO UPDATE SET record = EXCLUDED.record, archived_at = now()",
                             (validate_evacuation_id(history_id), validate_server_name(server), text))
                conn.execute("DELETE FROM strackt_evacuations WHERE server = %s", (server,))
        except psycopg.Error as exc:
            raise self._unavailable(exc, "archiving the evacuation %s" % history_id) from None
        return "%s table strackt_evacuation_history, %s" % (self.description, history_id)

    def list_evacuation_history(self, server: str) -> list[str]:
        return [r[0] for r in self._run("listing the archived evacuations of %s" % server,
                                        "SELECT history_id FROM strackt_evacuation_history WHERE server = %s "
                                        'ORDER BY history_id COLLATE "C"', (validate_server_name(server),))]

    def load_evacuation_history(self, history_id: str) -> str | None:
        rows = self._run("reading the archived evacuation %s" % history_id,
                         "SELECT record FROM strackt_evacuation_history WHERE history_id = %s",
                         (validate_evacuation_id(history_id),))
        return rows[0][0] if rows else None

    def request_evacuation_abort(self, server: str, text: str) -> None:
        # no evacuation in progress: nothing to stop (the abort command checked there was one)
        self._run("asking the evacuation of %s to stop" % server,
                  "UPDATE strackt_evacuations SET abort_request = %s WHERE server = %s", (text, validate_server_name(server)))

    def load_evacuation_abort(self, server: str) -> str | None:
        rows = self._run("reading the abort request of %s" % server,
                         "SELECT abort_request FROM strackt_evacuations WHERE server = %s", (validate_server_name(server),))
        return rows[0][0] if rows else None

    def evacuation_lock(self, server: str, command: str) -> "EvacuationLock":
        return EvacuationLock(self, validate_server_name(server), command)


def _stamp(since: typing.Any) -> str:
    return since.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(since, "strftime") else str(since)


class EvacuationLock:
    """The lock of whoever drives the evacuation of one server, shared by every node of the store:
    an advisory lock of the store's session (the module's doc), with ``FileLock``'s methods."""

    def __init__(self, store: PostgresStore, server: str, command: str) -> None:
        self.store = store
        self.server = server
        self.command = command
        self.key = EVACUATION_LOCK_PREFIX + server
        self.where = "advisory lock %r in %s" % (self.key, store.description)
        self._conn: typing.Any = None
        self.previous: Holder | None = None  # a session's lock dies with it: nothing is left behind

    @property
    def held(self) -> bool:
        return self._conn is not None

    def holder(self) -> Holder | None:
        """The session holding it: ``strackt-move pid N on HOST`` (its application_name), since
        that session began."""
        found = self.store._holder_session(self.key, 2)
        if found is None:
            return None
        name, since = found
        pid, host, command = None, None, name or "a session without application_name"
        parts = (name or "").split()
        if len(parts) == 5 and parts[:2] == ["strackt-move", "pid"] and parts[3] == "on" and parts[2].isdigit():
            pid, host, command = int(parts[2]), parts[4], ""
        return Holder(pid=pid, role="evacuation", command=command, since=_stamp(since), host=host)

    def acquire(self, timeout: float | None = 0.0, poll: float = 0.2) -> None:
        """Take the lock; ``timeout=0`` means try once, ``None`` means wait forever. Raises
        ``LockBusy`` naming the holder when it cannot."""
        if self.held:
            raise RuntimeError("%s already held by this process" % self.where)
        if not self.store._wait_for(self.key, 2, "taking the lock of the evacuation of %s" % self.server, timeout, poll):
            raise LockBusy(self.where, self.holder())
        self._conn = self.store._conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.store._held.discard(self.key)
            self.store._unlock(conn, self.key, 2)

    def __enter__(self) -> "EvacuationLock":
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.release()


def without_password(dsn: str) -> tuple[str, str | None]:
    """``dsn`` as libpq ``key=value`` pairs without its password, and the password (None when it
    has none). For a process that hands the store on to a child whose environment is written to
    disk (ansible-runner's artifacts): the child gets the password from a passfile instead."""
    if psycopg is None:
        raise StoreUnavailable(missing_driver_message())
    params = _conninfo(dsn)
    password = params.pop("password", None)
    if not password:
        return dsn, None
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", **params), str(password)


def passfile_line(password: str) -> str:
    """A libpq passfile line that gives ``password`` to any host, port, database and user (the
    passfile is made for one DSN only): ``:`` and ``\\`` escaped as libpq reads them."""
    return "*:*:*:*:%s\n" % password.replace("\\", "\\\\").replace(":", "\\:")
