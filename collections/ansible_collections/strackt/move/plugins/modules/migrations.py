#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migrations
short_description: Check for, or apply, an environment's pending database migrations
version_added: 0.1.0
description:
  - Runs the framework's own migration commands in the env's app directory, as the env's user,
    with the variables of the env's env file, so the check is made against the database the
    env is connected to.
  - O(action=check) lists pending migrations (C(manage.py showmigrations --plan)) and confirms
    the verdict with C(manage.py migrate --check). It never changes anything (C(changed=false)).
  - O(action=apply) runs C(manage.py migrate --noinput) when migrations are pending;
    C(changed) is true only when some were applied. In check mode it only reports what it would apply.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  action:
    description: Check only, or apply pending migrations.
    type: str
    choices: [check, apply]
    default: check
  app_dir:
    description: The env's app directory (the one holding C(manage.py)).
    type: path
    required: true
  user:
    description: The env's system user; commands run as this user (via C(runuser) when run as root).
    type: str
    required: true
  env_file:
    description: The env's env file (C(/etc/strackt/envs/<env>.env)), read as systemd reads it.
    type: path
    required: true
  framework:
    description: The env's framework.
    type: str
    choices: [django]
    default: django
  python:
    description: The Python interpreter that runs C(manage.py).
    type: path
    default: /usr/bin/python3
"""

EXAMPLES = r"""
- name: Refuse to move with pending migrations
  strackt.move.migrations:
    env: shop
    action: check
    app_dir: /srv/shop/app
    user: shop
    env_file: /etc/strackt/envs/shop.env
  register: shop_migrations

- name: Apply migrations on deploy
  strackt.move.migrations:
    env: shop
    action: apply
    app_dir: /srv/shop/app
    user: shop
    env_file: /etc/strackt/envs/shop.env
"""

RETURN = r"""
pending:
  description: True when migrations are (or, after apply, were) pending.
  returned: success
  type: bool
migrations:
  description: Names of the pending migrations (C(app.name)), in plan order.
  returned: success
  type: list
  elements: str
  sample: [shop.0002_order_customer]
applied:
  description: Names of the migrations applied by this run (empty for O(action=check) and in check mode).
  returned: success
  type: list
  elements: str
"""

import os
import pwd
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.environment import USER_RE, env_module

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHOWMIGRATIONS_RE = re.compile(r"^\[(?P<mark>[ X-])\]\s+(?P<name>\S+)")


class EnvFileError(ValueError):
    pass


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
    """KEY=VALUE lines as systemd's EnvironmentFile= reads the form provision writes.

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


def parse_showmigrations_plan(output: str) -> list[str]:
    """Unapplied migrations, in plan order, from ``manage.py showmigrations --plan``."""
    pending = []
    for line in output.splitlines():
        match = SHOWMIGRATIONS_RE.match(line.strip())
        if match and match.group("mark") == " ":
            pending.append(match.group("name"))
    return pending


class Django:
    """Runs manage.py as the env user with the env file's variables."""

    def __init__(self, module: AnsibleModule, env: str) -> None:
        self.module = module
        self.env = env
        p = module.params
        self.app_dir = p["app_dir"]
        self.manage = os.path.join(self.app_dir, "manage.py")
        self.python = p["python"]
        self.user = p["user"]
        self.environ = self._read_env_file(p["env_file"])

    def _read_env_file(self, path: str) -> dict[str, str]:
        try:
            with open(path, encoding="utf-8") as handle:
                environ = parse_env_file(handle.read())
        except OSError as exc:
            self.module.fail_json(msg="cannot read the env file of %r: %s; provision the env first" % (self.env, exc))
        except EnvFileError as exc:
            self.module.fail_json(msg="env file %s of %r is malformed: %s; re-run provision" % (path, self.env, exc))
        environ["PYTHONDONTWRITEBYTECODE"] = "1"
        return environ

    def run(self, *args: str) -> tuple[int, str, str]:
        command = [self.python, self.manage] + list(args)
        if os.geteuid() == 0 and self.user != "root":
            runuser = self.module.get_bin_path("runuser", required=True)
            command = [runuser, "-u", self.user, "--"] + command
        return self.module.run_command(command, cwd=self.app_dir, environ_update=self.environ)

    def fail(self, what: str, rc: int, out: str, err: str) -> None:
        self.module.fail_json(
            msg="%s for env %r failed (exit %d): %s" % (what, self.env, rc, (err.strip() or out.strip())[-2000:]),
            rc=rc, stdout=out, stderr=err,
        )

    def pending(self) -> list[str]:
        rc, out, err = self.run("showmigrations", "--plan")
        if rc != 0:
            self.fail("manage.py showmigrations --plan", rc, out, err)
        listed = parse_showmigrations_plan(out)
        rc, out2, err2 = self.run("migrate", "--check", "--noinput")
        if rc == 0 and listed:
            self.module.fail_json(
                msg="manage.py showmigrations lists %s as unapplied but migrate --check found nothing "
                "pending for env %r; inspect the app" % (", ".join(listed), self.env)
            )
        if rc not in (0, 1) or (rc == 1 and not listed):
            self.fail("manage.py migrate --check", rc, out2, err2)
        return listed

    def apply(self) -> None:
        rc, out, err = self.run("migrate", "--noinput")
        if rc != 0:
            self.fail("manage.py migrate", rc, out, err)


def main() -> None:
    module, env = env_module(
        dict(
            action=dict(type="str", choices=["check", "apply"], default="check"),
            app_dir=dict(type="path", required=True),
            user=dict(type="str", required=True),
            env_file=dict(type="path", required=True),
            framework=dict(type="str", choices=["django"], default="django"),
            python=dict(type="path", default="/usr/bin/python3"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not USER_RE.fullmatch(p["user"]):
        module.fail_json(msg="user %r is not a valid user name" % p["user"])
    try:
        pwd.getpwnam(p["user"])
    except KeyError:
        module.fail_json(msg="user %r of env %r does not exist on this server; provision the env first" % (p["user"], env))
    if not os.path.isfile(os.path.join(p["app_dir"], "manage.py")):
        module.fail_json(msg="%s/manage.py not found: env %r is not deployed here" % (p["app_dir"], env))

    app = Django(module, env)
    pending = app.pending()
    applied: list[str] = []
    if p["action"] == "apply" and pending and not module.check_mode:
        app.apply()
        left = app.pending()
        if left:
            module.fail_json(msg="migrations still pending after migrate for env %r: %s" % (env, ", ".join(left)))
        applied = pending
    module.exit_json(
        changed=p["action"] == "apply" and bool(pending),
        pending=bool(pending),
        migrations=pending,
        applied=applied,
    )


if __name__ == "__main__":
    main()
