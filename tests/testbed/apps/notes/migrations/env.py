"""Alembic's environment: the database is DATABASE_URL, the same one the app uses."""
import os

from alembic import context

from notes.db import make_engine, metadata

url = os.environ.get("DATABASE_URL", "")
if not url:
    raise SystemExit("DATABASE_URL is not set: alembic needs the database the app uses")

with make_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
