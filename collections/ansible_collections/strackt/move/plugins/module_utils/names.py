# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names strackt.move builds paths from: env names, move ids and the servers evacuations name
(the one rule for each).

An env name becomes part of file names (the move record, locks, runner directories), systemd
unit names and the env's user, so it is checked before anything is touched. A move id is the env
name plus the UTC second the move started. Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils.clock import compact_ts

#: per-move files in ``<key dir>/<move_id>`` on the source: the freeze's release marker (the traffic
#: went to the target: nothing pushes the source over it any more) and its one-at-a-time lock
RELEASED_MARKER = "released.json"
FREEZE_LOCK = "freeze.lock"


def source_key_paths(key_dir: str, move_id: str) -> tuple[str, str]:
    """The move's key and the target's pinned host key on the source (``move_key side=source``
    makes them): ``(<key dir>/<move_id>/id_ed25519, <key dir>/<move_id>/known_hosts)``."""
    move_dir = key_dir.rstrip("/") + "/" + move_id
    return move_dir + "/id_ed25519", move_dir + "/known_hosts"


ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
ENV_NAME_RULE = "lower-case letter first, then lower-case letters, digits or '-', at most 31 characters"
MOVE_ID_RE = re.compile(r"^(?P<env>[a-z][a-z0-9-]{0,30})-(?P<stamp>[0-9]{8}T[0-9]{6}Z)$")
#: a server (an inventory host) as far as the state it names goes: an evacuation record, its lock.
#: At most 200 characters: the longest file name it becomes, atomic_write's temp file of
#: history/<server>-<stamp>.json (.<server>-<stamp>.json.<8 random>.tmp, 236), stays within NAME_MAX (255)
SERVER_NAME_MAX = 200
_SERVER = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,%d}" % (SERVER_NAME_MAX - 1)
SERVER_NAME_RE = re.compile(r"^%s$" % _SERVER)
EVACUATION_ID_RE = re.compile(r"^(?P<server>%s)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)$" % _SERVER)


class EnvNameError(ValueError):
    """An env name or a move id that breaks the rule."""


def validate_env_name(name: Any) -> str:
    """Return ``name`` if it is a valid env name, else raise EnvNameError saying the rule."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise EnvNameError("env name %r must match %s (%s)" % (name, ENV_NAME_RE.pattern, ENV_NAME_RULE))
    return name


def new_move_id(env: str, started: datetime.datetime) -> str:
    """``{env}-{YYYYMMDDTHHMMSSZ}`` of the (timezone-aware) instant the move started."""
    return "%s-%s" % (validate_env_name(env), compact_ts(started))


def validate_move_id(move_id: Any, env: str | None = None) -> str:
    """Return ``move_id`` if it is ``{env}-{stamp}`` (of ``env`` when given), else raise EnvNameError."""
    match = MOVE_ID_RE.fullmatch(move_id) if isinstance(move_id, str) else None
    if match is None:
        raise EnvNameError("move id %r must be an env name, '-' and a UTC time YYYYMMDDTHHMMSSZ "
                           "(such as myapp-20261125T123456Z)" % (move_id,))
    if env is not None and match.group("env") != env:
        raise EnvNameError("move id %r does not belong to env %r" % (move_id, env))
    return move_id


def validate_server_name(name: Any) -> str:
    """Return ``name`` if it can name an evacuation's record (letters, digits, '.', '_', '-',
    ':' for an IPv6 address, not starting with '.', '-' or ':': nothing that leaves the state directory), else raise EnvNameError."""
    if not isinstance(name, str) or not SERVER_NAME_RE.fullmatch(name):
        raise EnvNameError("server name %r must match %s (the host's name in the inventory: letters, digits, "
                           "'.', '_', ':' or '-', at most %d characters)" % (name, SERVER_NAME_RE.pattern, SERVER_NAME_MAX))
    return name


def validate_evacuation_id(history_id: Any) -> str:
    """An archived evacuation's name: ``{server}-{YYYYMMDDTHHMMSSZ}`` of the second it started."""
    if not isinstance(history_id, str) or not EVACUATION_ID_RE.fullmatch(history_id):
        raise EnvNameError("archived evacuation %r must be a server name, '-' and a UTC time YYYYMMDDTHHMMSSZ "
                           "(such as srv1-20261125T123456Z)" % (history_id,))
    return history_id


def check_name(kind: str, value: Any) -> str:
    """``kind`` "env" or "move_id": the name checked with its rule (env names and move ids become
    file names, so nothing that could leave the state directory passes)."""
    if kind == "env":
        return validate_env_name(value)
    if kind == "move_id":
        return validate_move_id(value)
    raise ValueError("unknown kind of name %r" % (kind,))
