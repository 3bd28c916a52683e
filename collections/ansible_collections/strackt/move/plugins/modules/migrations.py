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
  - Runs the env's own commands (the definition's C(migrations_check) and C(release)) as the
    env's processes run - C(/bin/sh -c) in the app directory, as the env's user, with the
    variables of the env's env file - so the check is made against the database the env is
    connected to. strackt.move knows no framework; each C(stack) preset brings its framework's
    usual commands.
  - O(action=check) runs O(check_command) - exit 0 means nothing is pending; any other exit means
    something is (or the check could not tell), and its output is returned in RV(output) and
    RV(migrations). It never changes anything (C(changed=false)). Without O(check_command)
    there is nothing to check (C(pending=false)).
  - O(action=apply) runs O(release_command) when the check finds something pending (or always,
    when there is no O(check_command)), then checks again; C(changed) is true when it ran. In check
    mode it only reports.
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
    description: The env's app directory (C(<root>/app)); commands run there.
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
  check_command:
    description:
      - The env's C(migrations_check), a shell command line. Exit 0 = nothing pending.
      - Empty or omitted - nothing to check.
    type: str
  release_command:
    description: The env's C(release), a shell command line (for O(action=apply)).
    type: str
  timeout:
    description: Seconds a command may run before it is stopped and the task fails.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Refuse to move with pending migrations
  strackt.move.migrations:
    env: notes
    action: check
    app_dir: /srv/notes/app
    user: notes
    env_file: /etc/strackt/envs/notes.env
    check_command: python3 -m notes.migrations_check
  register: notes_migrations

- name: Apply migrations on deploy
  strackt.move.migrations:
    env: notes
    action: apply
    app_dir: /srv/notes/app
    user: notes
    env_file: /etc/strackt/envs/notes.env
    check_command: python3 -m notes.migrations_check
    release_command: alembic upgrade head
"""

RETURN = r"""
pending:
  description: True when the check found migrations pending (for O(action=apply), before the release ran).
  returned: success
  type: bool
migrations:
  description: The check's output lines (what is pending, in the stack's own words); empty when nothing is.
  returned: success
  type: list
  elements: str
  sample: ["pending: 0002_note_tags"]
output:
  description: The check's whole output (stdout then stderr), the last 4000 characters.
  returned: success
  type: str
released:
  description: True when the release command ran (O(action=apply)).
  returned: success
  type: bool
applied:
  description: Kept for callers of the first version - the check's output lines when the release ran, else empty.
  returned: success
  type: list
  elements: str
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.environment import USER_RE, env_module
from ansible_collections.strackt.move.plugins.module_utils.env_vars import EnvFileError, parse_env_file

OUTPUT_LIMIT = 4000


def output_lines(out: str, err: str) -> list[str]:
    return [line.strip() for line in (out + "\n" + err).splitlines() if line.strip()][-50:]


class EnvCommands:
    """Runs the env's commands as its processes run: sh -c, as the env user, with the env file."""

    def __init__(self, module: AnsibleModule, env: str) -> None:
        self.module = module
        self.env = env
        p = module.params
        self.app_dir = p["app_dir"]
        self.user = p["user"]
        self.timeout = p["timeout"]
        self.environ = self._read_env_file(p["env_file"])

    def _read_env_file(self, path: str) -> dict[str, str]:
        try:
            with open(path, encoding="utf-8") as handle:
                return parse_env_file(handle.read())
        except OSError as exc:
            self.module.fail_json(msg="cannot read the env file of %r: %s; provision the env first" % (self.env, exc))
        except EnvFileError as exc:
            self.module.fail_json(msg="env file %s of %r is malformed: %s; re-run provision" % (path, self.env, exc))
        return {}

    def run(self, command: str) -> tuple[int, str, str]:
        argv = ["timeout", "--kill-after=10", str(self.timeout), "/bin/sh", "-c", command]
        if os.geteuid() == 0 and self.user != "root":
            runuser = self.module.get_bin_path("runuser", required=True)
            argv = [runuser, "-u", self.user, "--"] + argv
        # the env file's variables, as the units get them; HOME not root's (the user cannot read it)
        environ = dict(self.environ)
        environ.setdefault("HOME", self.app_dir)
        # the shell expands the command line, not run_command (it would expand $VAR from our environment)
        return self.module.run_command(argv, cwd=self.app_dir, environ_update=environ, expand_user_and_vars=False)

    def check(self, command: str | None) -> tuple[bool, str, list[str]]:
        """(pending, output, lines): pending unless the check exits 0."""
        if not command:
            return False, "", []
        rc, out, err = self.run(command)
        if rc == 124 or rc == 137:
            self.module.fail_json(msg="migrations_check of env %r did not finish within %ds: %s" % (self.env, self.timeout, command))
        output = ((out or "") + (err or ""))[-OUTPUT_LIMIT:]
        return rc != 0, output, output_lines(out or "", err or "") if rc != 0 else []

    def release(self, command: str) -> None:
        rc, out, err = self.run(command)
        if rc != 0:
            self.module.fail_json(
                msg="release command of env %r failed (exit %d): %s; output: %s"
                % (self.env, rc, command, ((err or "").strip() or (out or "").strip())[-2000:]),
                rc=rc, stdout=out, stderr=err)


def main() -> None:
    module, env = env_module(
        dict(
            action=dict(type="str", choices=["check", "apply"], default="check"),
            app_dir=dict(type="path", required=True),
            user=dict(type="str", required=True),
            env_file=dict(type="path", required=True),
            check_command=dict(type="str"),
            release_command=dict(type="str"),
            timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check_command, release_command = p["check_command"], p["release_command"]
    for name, command in (("check_command", check_command), ("release_command", release_command)):
        if command and ("\n" in command or "\0" in command):
            module.fail_json(msg="%s must be one command line, got %r" % (name, command))
    if p["action"] == "apply" and not release_command:
        module.fail_json(msg="action=apply needs release_command (the env's release): env %r has none" % env)
    if not USER_RE.fullmatch(p["user"]):
        module.fail_json(msg="user %r is not a valid user name" % p["user"])
    try:
        pwd.getpwnam(p["user"])
    except KeyError:
        module.fail_json(msg="user %r of env %r does not exist on this server; provision the env first" % (p["user"], env))
    if not os.path.isfile(os.path.join(p["app_dir"], "REVISION")):
        module.fail_json(msg="%s/REVISION not found: env %r is not deployed here" % (p["app_dir"], env))

    commands = EnvCommands(module, env)
    pending, output, lines = commands.check(check_command)
    released = False
    if p["action"] == "apply" and (pending or not check_command) and not module.check_mode:
        commands.release(release_command)
        released = True
        still, left_output, dummy = commands.check(check_command)
        if still:
            module.fail_json(msg="migrations still pending after the release of env %r: %s" % (env, left_output.strip()[-2000:]))
    module.exit_json(
        changed=released or (p["action"] == "apply" and pending),
        pending=pending,
        migrations=lines,
        output=output,
        released=released,
        applied=lines if released else [],
    )


if __name__ == "__main__":
    main()
