#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_units
short_description: Write (or remove) the systemd units of an environment
version_added: 0.2.0
description:
  - Writes the env's units in C(/etc/systemd/system) from its definition
    (M(strackt.move.env_info) validates it the same way) -
    C(strackt-env-<env>.target), the env as a whole (it C(Wants=) every process and timer, so
    starting it starts all of them);
    C(strackt-env-<env>-<process>.service) for each of O(environments)' C(processes)
    (C(PartOf=) and C(WantedBy=) the target; the C(web) process gets C(PORT));
    C(strackt-env-<env>-<name>.timer) and its C(.service) for each C(schedule) entry (C(PartOf=) the target).
  - Each command runs as C(/bin/sh -c "exec <command>") in C(<root>/app) as the env's user with
    the env file's variables, as a Procfile line runs under foreman.
  - Unit files of the env that the definition no longer has (a process or schedule entry
    removed) are stopped and removed. O(state=absent) stops and removes all of the env's units.
  - A masked unit (its file a link to C(/dev/null), as a copy a move retained has them) is
    replaced by the unit, which unmasks it. The link is renamed over, never written through.
  - Runs C(systemctl daemon-reload) when anything changed. Starts nothing (the deploy role does).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.environment
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  environments:
    description: The whole C(strackt_environments) mapping.
    type: dict
    required: true
  state:
    description: The units as the definition says (V(present)), or none of the env's units (V(absent)).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Write the env's units
  strackt.move.env_units:
    env: notes
    environments: "{{ strackt_environments }}"
  register: notes_units
"""

RETURN = r"""
unit_files:
  description: Every unit file of the env (as the definition says), target first.
  returned: success
  type: list
  elements: str
  sample: [/etc/systemd/system/strackt-env-notes.target, /etc/systemd/system/strackt-env-notes-web.service]
written:
  description: Unit files written (new or changed) by this run.
  returned: success
  type: list
  elements: str
removed:
  description: Unit files of the env removed by this run (no longer defined, or O(state=absent)).
  returned: success
  type: list
  elements: str
"""

import os

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    UNIT_DIR,
    definition_module,
    load_environment,
)
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write
from ansible_collections.strackt.move.plugins.module_utils.units import belongs_to, unit_files


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def existing_units(env_name: str, unit_dir: str = UNIT_DIR) -> dict[str, str]:
    """Path -> content of the unit files in ``unit_dir`` that belong to ``env_name``."""
    found = {}
    for name in sorted(os.listdir(unit_dir)):
        path = os.path.join(unit_dir, name)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        content = _read(path) or ""
        if belongs_to(env_name, name, content):
            found[path] = content
    return found


def main() -> None:
    module, name = definition_module(
        dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    env = load_environment(module, name)
    wanted = unit_files(env) if module.params["state"] == "present" else {}
    have = existing_units(env.name)
    # a mask reads as /dev/null, empty: it is written, and atomic_write's rename replaces the link itself
    written = [path for path, text in wanted.items() if _read(path) != text]
    removed = [path for path in have if path not in wanted]
    diff = dict(before="".join("%s:\n%s" % (p, have.get(p) or "") for p in written + removed),
                after="".join("%s:\n%s" % (p, wanted.get(p, "")) for p in written + removed))
    if not module.check_mode and (written or removed):
        systemctl = module.get_bin_path("systemctl", required=True)
        if removed:
            units = [os.path.basename(p) for p in removed]
            module.run_command([systemctl, "disable", "--now"] + units)  # best effort: the files go anyway
        for path in written:
            atomic_write(path, wanted[path], mode=0o644, owner=(0, 0))
        for path in removed:
            os.unlink(path)
        rc, out, err = module.run_command([systemctl, "daemon-reload"])
        if rc != 0:
            module.fail_json(msg="systemctl daemon-reload failed after writing the units of %r: %s" % (env.name, err or out))
    module.exit_json(changed=bool(written or removed), unit_files=list(wanted), written=written, removed=removed,
                     diff=diff)


if __name__ == "__main__":
    main()
