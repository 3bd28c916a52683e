"""`python3 -m notes.migrations_check`: exit 0 when the database is at the migrations' head,
1 (naming the pending revisions) when migrations wait to run, 2 when it cannot tell.

Alembic 1.8 (Debian 12) has no `alembic check`; this compares the database's current revisions
with the scripts' heads, as `alembic current` and `alembic heads` would."""
from __future__ import annotations

import sys
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import settings as settings_module
from .db import make_engine

APP_DIR = Path(__file__).resolve().parent.parent


def pending_revisions(script: ScriptDirectory, current: tuple[str, ...]) -> list[str]:
    """Revisions reachable from the heads but not applied, oldest first."""
    applied = {rev.revision for rev in script.iterate_revisions(current, "base")} if current else set()
    wanted = [rev for rev in script.walk_revisions("base", "heads")]
    return [rev.revision for rev in reversed(wanted) if rev.revision not in applied]


def main() -> int:
    try:
        settings = settings_module.load()
        script = ScriptDirectory.from_config(Config(str(APP_DIR / "alembic.ini")))
        with make_engine(settings.database_url).connect() as conn:
            current = tuple(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:  # cannot tell: not "nothing pending"
        print(f"cannot check migrations: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    pending = pending_revisions(script, current)
    at = ", ".join(current) or "no revision"
    if not pending:
        print(f"no pending migrations (database at {at})")
        return 0
    print(f"pending migrations (database at {at}, heads {', '.join(script.get_heads())}):")
    for revision in pending:
        print(f"  {revision}  {script.get_revision(revision).doc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
