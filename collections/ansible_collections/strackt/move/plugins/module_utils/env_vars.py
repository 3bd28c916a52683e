# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every process of an env gets in its environment, and the env file that holds it.

``process_variables`` builds the variables from the definition, the env's secrets and where the
connected services are; ``render_env_file`` writes them the way systemd's ``EnvironmentFile=``
reads them and ``parse_env_file`` reads that form back (the migrations module runs commands with
exactly what the units get). Built in, nothing else: ``DATA_DIR``, ``ALLOWED_HOSTS``,
``DATABASE_URL``, ``REDIS_URL``; ``PORT`` is set in the web unit itself. Stdlib only.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import quote

from ansible_collections.strackt.move.plugins.module_utils.environment import Environment

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOOPBACK = "127.0.0.1"


class EnvFileError(ValueError):
    pass


class MissingSecret(ValueError):
    """A secret the definition names has no (usable) value in strackt_env_secrets.<env>."""


def service_host(service_server: str, here: str, addresses: Mapping[str, str]) -> str:
    """Loopback on the service's own server, else the address the inventory gives it."""
    if service_server == here:
        return LOOPBACK
    return addresses.get(service_server) or service_server


def _secret(env: Environment, secrets: Mapping[str, object], name: str) -> str:
    value = secrets.get(name)
    if value is None or str(value) == "":
        raise MissingSecret("strackt_env_secrets.%s.%s is not set: add it (group_vars/all/secrets.yml)" % (env.name, name))
    if "\n" in str(value) or "\0" in str(value):
        raise MissingSecret("strackt_env_secrets.%s.%s must be one line: an env file cannot hold a newline" % (env.name, name))
    return str(value)


def process_variables(env: Environment, secrets: Mapping[str, object], here: str,
                      addresses: Mapping[str, str]) -> dict[str, str]:
    """The variables of every process of ``env`` running on server ``here``."""
    variables = {"DATA_DIR": env.data_dir, "ALLOWED_HOSTS": ",".join(env.domains)}
    if env.database is not None:
        db = env.database
        password = quote(_secret(env, secrets, db.password_secret), safe="")
        variables["DATABASE_URL"] = "%s://%s:%s@%s:%d/%s" % (
            db.url_scheme, quote(db.user, safe=""), password, service_host(db.server, here, addresses), db.port, db.name)
    if env.redis is not None:
        redis = env.redis
        auth = ":%s@" % quote(_secret(env, secrets, redis.password_secret), safe="") if redis.password_secret else ""
        variables["REDIS_URL"] = "redis://%s%s:%d/%d" % (auth, service_host(redis.server, here, addresses), redis.port, redis.db)
    variables.update(env.env)
    for name in env.secrets:
        variables[name] = _secret(env, secrets, name)
    return variables


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return '"%s"' % escaped


def render_env_file(env: Environment, variables: Mapping[str, str]) -> str:
    lines = ["# Written by strackt-move (provision): the environment of every process of env %s." % env.name,
             "# Read by its units (EnvironmentFile=). Do not edit: change the env definition or its secrets."]
    for name, value in variables.items():
        if not ENV_KEY_RE.fullmatch(name) or "\n" in value:
            raise EnvFileError("variable %r cannot go into an env file" % name)
        lines.append("%s=%s" % (name, _quote(value)))
    return "\n".join(lines) + "\n"


def _unquote_double(value: str) -> str:
    out = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(nxt if nxt in '"\\`$' else "\\" + nxt)
        else:
            out.append(char)
    return "".join(out)


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads the form render_env_file writes.

    Comments start with '#' or ';'. Values may be bare (whitespace around them is dropped),
    in single quotes (literal) or in double quotes (backslash escapes '"', '\\', '`', '$').
    """
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not ENV_KEY_RE.fullmatch(key):
            raise EnvFileError("line %d is not KEY=VALUE" % number)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _unquote_double(value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        result[key] = value
    return result
