"""Tables and the engine. The schema itself is created by the Alembic migrations."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import (BigInteger, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        create_engine, func)
from sqlalchemy.engine import Engine

metadata = MetaData()

notes = Table(
    "notes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime, nullable=False, server_default=func.now()),
)

# The durable queue: a job is committed in the same transaction as its note.
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("note_id", Integer, ForeignKey("notes.id"), nullable=False),
    Column("created_at", DateTime, nullable=False, server_default=func.now()),
    Column("done_at", DateTime, nullable=True),
    Index("ix_jobs_pending", "done_at", "id"),
)

uploads = Table(
    "uploads", metadata,
    Column("id", String(32), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False, server_default=func.now()),
)

# DATABASE_URL names the database kind; SQLAlchemy wants the driver too.
DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgresql": "postgresql+psycopg2",
           "postgres": "postgresql+psycopg2"}


def sqlalchemy_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    if parts.scheme not in DRIVERS:
        raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not one of {', '.join(sorted(DRIVERS))}")
    return urlunsplit(parts._replace(scheme=DRIVERS[parts.scheme]))


def make_engine(database_url: str) -> Engine:
    url = sqlalchemy_url(database_url)
    connect_args = {"connect_timeout": 5}
    if url.startswith("mysql"):
        connect_args.update(read_timeout=30, write_timeout=30)
    # pre_ping: a connection dropped by the database server (or a network change) is replaced, not used.
    return create_engine(url, future=True, pool_pre_ping=True, pool_recycle=300, connect_args=connect_args)
