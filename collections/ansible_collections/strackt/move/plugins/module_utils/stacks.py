# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stack presets of an env definition: the defaults a ``stack`` fills in.

A preset only fills fields the definition leaves out; every field can be given in the
definition instead (field by field: ``processes`` entries are merged, the others replace).
Each stack's own conventions: the Procfile ``web``/``release`` of Heroku and Dokku, the
pending-migration check each framework documents, the health path it ships with.
Commands are shell command lines, run in ``<root>/app`` as the env's user with the env file's
variables (``$PORT`` for the web process).
Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Defaults of one stack. ``None``/empty = the stack has no default for that field."""

    processes: dict[str, str] = field(default_factory=dict)
    release: str | None = None
    migrations_check: str | None = None
    health_path: str = "/"
    packages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dict(processes=dict(self.processes), release=self.release, migrations_check=self.migrations_check,
                    health={"path": self.health_path}, packages=list(self.packages))


# The Alembic revision the database is at equals the script directory's head(s): nothing pending.
_ALEMBIC_CHECK = (
    'test "$(alembic current 2>/dev/null | cut -d" " -f1 | sort)" = "$(alembic heads | cut -d" " -f1 | sort)"'
)

STACKS: dict[str, Preset] = {
    # the web process needs the app's WSGI module (gunicorn ... <project>.wsgi:application): give it
    "django": Preset(
        release="python3 manage.py migrate --noinput",
        # prints the pending migrations (Planned operations: ...) and exits 1 when there are some
        migrations_check="python3 manage.py migrate --check --plan --noinput",
        packages=("python3-django", "gunicorn"),
    ),
    "rails": Preset(
        processes={"web": "bundle exec puma --bind tcp://127.0.0.1:$PORT"},
        release="bundle exec rails db:migrate",
        migrations_check="bundle exec rails db:abort_if_pending_migrations",
        health_path="/up",
        packages=("ruby", "bundler"),
    ),
    "laravel": Preset(
        processes={"web": "php artisan serve --host=127.0.0.1 --port=$PORT"},
        release="php artisan migrate --force",
        # lists only pending migrations; exits non-zero when there are some (Laravel 10.x and later)
        migrations_check="php artisan migrate:status --pending",
        health_path="/up",
        packages=("php-cli",),
    ),
    # the web process needs the app's module (gunicorn ... <module>:app): give it
    "flask-alembic": Preset(
        release="alembic upgrade head",
        migrations_check=_ALEMBIC_CHECK,
        packages=("python3-flask", "python3-sqlalchemy", "python3-alembic", "alembic", "gunicorn"),
    ),
    "node": Preset(
        processes={"web": "node server.js"},
        packages=("nodejs",),
    ),
    "generic": Preset(),
}

DEFAULT_STACK = "generic"
