# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the pg_move_* modules share: their options (doc fragment strackt.move.pg_move), the
checks of those options, and turning a refusal into a failed task that says what to do."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.strackt.move.plugins.module_utils import pg_files
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_session
from ansible_collections.strackt.move.plugins.module_utils.environment import SQL_NAME_RE, env_module


def database_argument_spec(move_id_required: bool = True) -> dict[str, Any]:
    """Doc fragment strackt.move.pg_move."""
    return dict(
        move_id=dict(type="str", required=move_id_required),
        database=dict(type="str", required=True),
        port=dict(type="int", default=5432),
    )


def peer_argument_spec(peer_required: bool = True) -> dict[str, Any]:
    """Doc fragment strackt.move.pg_move.peer."""
    return dict(
        peer_address=dict(type="str", required=peer_required),
        peer_port=dict(type="int", default=5432),
        password=dict(type="str", required=True, no_log=True),
    )


def pg_module(options: dict[str, Any], *, move_id_required: bool = True, peer: bool = False,
              peer_required: bool = True, needs_driver: bool = True, **kwargs: Any) -> tuple[AnsibleModule, str]:
    spec = database_argument_spec(move_id_required)
    if peer:
        spec.update(peer_argument_spec(peer_required))
    spec.update(options)
    module, env = env_module(spec, **kwargs)
    p = module.params
    problems = []
    if not SQL_NAME_RE.fullmatch(p["database"] or ""):
        problems.append("database %r is not a database name strackt.move handles: lower-case letters, digits "
                        "and '_', a letter or '_' first (as database.name of the env)" % (p["database"],))
    for key in ("port", "peer_port"):
        if key in p and p[key] is not None and not 1 <= p[key] <= 65535:
            problems.append("%s must be between 1 and 65535, got %d" % (key, p[key]))
    try:
        if p.get("move_id") is not None:
            pg.check_move_id(p["move_id"])
        if peer and p.get("password") is not None:
            pg.check_password(p["password"])
        if peer and p.get("peer_address"):
            pg_files.check_address(p["peer_address"])
    except pg.PgMoveError as exc:
        problems.append(str(exc))
    if problems:
        module.fail_json(msg="; ".join(problems))
    if needs_driver and not pg_session.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2 (Debian: python3-psycopg2)"),
                         exception=pg_session.PSYCOPG2_IMPORT_ERROR)
    return module, env


def fail(module: AnsibleModule, exc: Exception, **result: Any) -> NoReturn:
    changed = bool(getattr(exc, "changed", False)) or bool(result.pop("changed", False))
    module.fail_json(msg=str(exc), changed=changed, **result)
    raise AssertionError("unreachable")  # fail_json exits


def run(module: AnsibleModule, work: Callable[[], dict[str, Any]], actions: list[str] | None = None) -> NoReturn:
    """exit_json with what ``work`` returns; a refusal, an unreachable server or a database error
    fails the task with its message. ``actions`` (what ``work`` has done so far, appended as it
    goes) is reported with a failure, and ``changed`` is true when it is not empty."""
    done = actions if actions is not None else []
    try:
        result = work()
    except (pg.PgMoveError, pg_session.PgConnectError) as exc:
        fail(module, exc, actions=done, changed=bool(done))
    except Exception as exc:  # a database error: say so, keep the detail
        if pg_session.HAS_PSYCOPG2 and isinstance(exc, pg_session.psycopg2.Error):
            fail(module, pg.PgMoveError("PostgreSQL refused a step: %s" % str(exc).strip()),
                 sqlstate=getattr(exc, "pgcode", None), actions=done, changed=bool(done))
        raise
    module.exit_json(**result)
    raise AssertionError("unreachable")
