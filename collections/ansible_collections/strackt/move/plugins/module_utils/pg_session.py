# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""psycopg2 sessions for pg_move.py: the local superuser, and the move's role on the other server.

The modules run as root; PostgreSQL lets the OS user ``postgres`` in as its superuser (peer
authentication on the Unix socket). Peer authentication reads the *effective* uid the client
had when it connected (SO_PEERCRED), so ``connect_local`` takes the postgres uid for the
connect() call only and is root again right after; nothing else runs as another user.
"""

from __future__ import annotations

import os
import pwd
import traceback
from typing import Any, Mapping, Sequence

try:
    import psycopg2
    import psycopg2.extras
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # the controller imports pg_move without a driver; modules report it
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

SOCKET_DIR = "/var/run/postgresql"
SUPERUSER = "postgres"


class PgConnectError(Exception):
    """The server could not be reached or refused us; ``refused`` when nothing listens."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class PgSession:
    """An autocommit connection; rows come back as dicts."""

    def __init__(self, conn: Any, label: str) -> None:
        conn.autocommit = True
        self.conn = conn
        self.label = label

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return []
            return [dict(r) for r in cur.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # already gone; closing is best effort
            pass

    def __enter__(self) -> "PgSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _connect(label: str, **kwargs: Any) -> Any:
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        text = str(exc).strip()
        refused = "No such file or directory" in text or "Connection refused" in text
        raise PgConnectError("cannot connect to %s: %s" % (label, text), refused=refused)


def connect_local(database: str, port: int = 5432, socket_dir: str = SOCKET_DIR,
                  superuser: str = SUPERUSER) -> PgSession:
    """The local server's superuser, over the Unix socket (peer authentication)."""
    label = "PostgreSQL on this server (port %d, database %s)" % (port, database)
    kwargs = dict(host=socket_dir, port=port, dbname=database, user=superuser,
                  application_name="strackt-move", connect_timeout=5)
    if os.geteuid() != 0:
        conn = _connect(label, **kwargs)
    else:
        try:
            account = pwd.getpwnam(superuser)
        except KeyError:
            raise PgConnectError("cannot connect to %s: there is no system user %s (PostgreSQL is not "
                                 "installed here)" % (label, superuser), refused=True)
        os.setegid(account.pw_gid)
        os.seteuid(account.pw_uid)
        try:
            conn = _connect(label, **kwargs)
        finally:
            os.seteuid(0)
            os.setegid(0)
    session = PgSession(conn, "this server")
    # A failing statement must not write its text (it may hold a conninfo) to the server log.
    session.execute("SET log_min_error_statement = panic")
    return session


def connect_remote(host: str, port: int, database: str, user: str, password: str, label: str) -> PgSession:
    """The move's role on the other server (TLS when the server offers it)."""
    conn = _connect("%s (%s:%d, database %s, role %s)" % (label, host, port, database, user),
                    host=host, port=port, dbname=database, user=user, password=password,
                    application_name="strackt-move", connect_timeout=5, sslmode="prefer")
    return PgSession(conn, label)
