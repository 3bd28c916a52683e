#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: attachment
short_description: Attach an environment to a server in the environments file
version_added: 0.1.0
description:
  - Runs on the control node. Rewrites C(strackt_environments.<env>.server) in the
    environments file (C(strackt_environments_file)) atomically (temp file, fsync, rename),
    changing only that line, so every later run (deploys, inventory) sees the new server.
  - O(expect_server) makes it a compare-and-swap; it refuses when the env is attached to
    neither O(expect_server) nor O(server).
  - The result is parsed again before it replaces the file; only the server may differ.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.environment
options:
  path:
    description: The environments file.
    type: path
    required: true
  server:
    description: The server to attach the env to.
    type: str
    required: true
  expect_server:
    description: The server the env must be attached to now.
    type: str
  database_server:
    description:
      - Also rewrite C(strackt_environments.<env>.database.server) (block or flow style) - the env's
        database moved with it (finish of a move that carried the database). Only that value changes.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Re-attach shop to srv2
  strackt.move.attachment:
    path: "{{ strackt_environments_file }}"
    env: shop
    server: srv2
    expect_server: srv1
  delegate_to: localhost
"""

RETURN = r"""
previous:
  description: The server the env was attached to before.
  returned: success
  type: str
previous_database_server:
  description: The database's server before (with O(database_server)).
  returned: success, with O(database_server)
  type: str
"""

import os
import re

from ansible_collections.strackt.move.plugins.module_utils.environment import env_module
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

SERVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def rewrite(text, env, server):
    """Return (new text, old server) with only strackt_environments.<env>.server changed."""
    lines = text.splitlines(keepends=True)
    top = env_line = None
    for i, line in enumerate(lines):
        if re.match(r"^strackt_environments:\s*(#.*)?$", line):
            top = i
            break
    if top is None:
        raise ValueError("no top-level strackt_environments: mapping")
    env_indent = None
    for i in range(top + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ind = _indent(line)
        if ind == 0:
            break
        if env_indent is None:
            env_indent = ind
        if ind == env_indent and re.match(r"^\s*['\"]?%s['\"]?:\s*(#.*)?$" % re.escape(env), line):
            env_line = i
            break
    if env_line is None:
        raise ValueError("env %s is not in strackt_environments" % env)
    key_indent = None
    for i in range(env_line + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ind = _indent(line)
        if ind <= env_indent:
            break
        if key_indent is None:
            key_indent = ind
        m = re.match(r"^(\s*)server:(\s*)([^#\n]*?)(\s*#.*)?(\r?\n)?$", line)
        if ind == key_indent and m:
            old = m.group(3).strip().strip("'\"") or None
            if old in ("null", "~"):
                old = None
            lines[i] = "%sserver: %s%s%s" % (m.group(1), server, m.group(4) or "", m.group(5) or "")
            return "".join(lines), old
    # no server key yet: add one as the env's first key
    pad = " " * (key_indent if key_indent is not None else env_indent + 2)
    lines.insert(env_line + 1, "%sserver: %s\n" % (pad, server))
    return "".join(lines), None


def rewrite_database_server(text, env, server):
    """Return the text with only strackt_environments.<env>.database.server changed to ``server``
    (the caller parses the result again and compares). The database's value is the lines from its
    key to the next key of the env, in block or flow style."""
    lines = text.splitlines(keepends=True)
    env_line = next((i for i, line in enumerate(lines)
                     if re.match(r"^\s+['\"]?%s['\"]?:\s*(#.*)?$" % re.escape(env), line)), None)
    if env_line is None:
        raise ValueError("env %s is not in strackt_environments" % env)
    env_indent = _indent(lines[env_line])
    start = key_indent = None
    for i in range(env_line + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _indent(line) <= env_indent:
            break
        key_indent = key_indent if key_indent is not None else _indent(line)
        if _indent(line) == key_indent and re.match(r"^\s*database:", line):
            start = i
            break
    if start is None:
        raise ValueError("env %s has no database" % env)
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > key_indent):
        end += 1
    region = "".join(lines[start:end])
    new_region, count = re.subn(r"(\bserver:\s*)(['\"]?)[A-Za-z0-9._-]+\2", r"\g<1>\g<2>%s\g<2>" % server,
                                region, count=1)
    if not count:
        raise ValueError("the database of env %s names no server" % env)
    return "".join(lines[:start]) + new_region + "".join(lines[end:])


# the options besides env (environment.env_module adds it and checks its name)
OPTIONS = {
    "path": {"type": "path", "required": True},
    "server": {"type": "str", "required": True},
    "expect_server": {"type": "str"},
    "database_server": {"type": "str"},
}


def main():
    module, env = env_module(OPTIONS, supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg="PyYAML is needed (it comes with ansible-core)")
    p = module.params
    server, path, db_server = p["server"], p["path"], p["database_server"]
    for name in (server, db_server):
        if name is not None and not SERVER_RE.match(name):
            module.fail_json(msg="server %r is not an inventory host name" % name)
    try:
        with open(path) as fh:
            text = fh.read()
        before = yaml.safe_load(text) or {}
        entry = (before.get("strackt_environments") or {}).get(env) or {}
        current = entry.get("server")
        current_db = (entry.get("database") or {}).get("server")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        module.fail_json(msg="cannot read the environments file %s: %s" % (path, exc))
    result = dict(previous=current)
    if db_server is not None:
        result["previous_database_server"] = current_db
    if current == server and (db_server is None or current_db == db_server):
        module.exit_json(changed=False, **result)
    if current != server and p["expect_server"] is not None and current != p["expect_server"]:
        module.fail_json(msg="env %s is attached to %s in %s, not %s as this move expects: someone "
                             "changed it; not re-attaching" % (env, current, path, p["expect_server"]),
                         previous=current)
    try:
        new_text = rewrite(text, env, server)[0] if current != server else text
        if db_server is not None and current_db != db_server:
            new_text = rewrite_database_server(new_text, env, db_server)
        after = yaml.safe_load(new_text)
    except (ValueError, yaml.YAMLError) as exc:
        module.fail_json(msg="cannot rewrite the server of %s in %s: %s" % (env, path, exc))
    expected = before
    expected["strackt_environments"][env]["server"] = server
    if db_server is not None:
        expected["strackt_environments"][env]["database"]["server"] = db_server
    if after != expected:
        module.fail_json(msg="rewriting %s would change more than strackt_environments.%s.server%s; "
                             "not touching it" % (path, env, " and its database.server" if db_server else ""))
    diff = dict(before=text, after=new_text, before_header=path, after_header=path)
    if not module.check_mode:
        st = os.stat(path)
        # keep the file's mode, and its owner where we may set it (as root)
        owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
        atomic_write(path, new_text, mode=st.st_mode & 0o7777, owner=owner)
    module.exit_json(changed=True, diff=diff, **result)


if __name__ == "__main__":
    main()
