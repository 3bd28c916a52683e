#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: retained_copy
short_description: Look at, or remove, the stopped copy of an env a move left on its old server
version_added: 0.3.0
description:
  - After a move the old server keeps the env's app and data as a retained copy (the finish stops and
    masks every unit, closes and removes the site, removes the env file). This module says whether the
    copy on this server is such a retired one (O(state=query)), or removes it (O(state=absent)).
  - The copy is retired only when none of O(units) is active, every one of them that exists in
    O(unit_dir) is masked (a link to C(/dev/null)), O(site_file) and O(env_file) are absent and
    O(closed_file) is there. Anything else may be the live env - O(state=absent) then fails and removes
    nothing, naming what it found.
  - O(state=absent) removes only O(paths) (each strictly under O(root), none leading out of it), the
    unit files the finish kept (O(retired_units_dir)), the masks of O(units) and O(closed_file); then
    O(root) if it is left empty. The env's user stays.
  - The rules are in module_utils C(retention).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  state:
    description: V(query) only looks; V(absent) removes the retired copy.
    type: str
    default: query
    choices: [query, absent]
  root:
    description: The env's root.
    type: path
    required: true
  paths:
    description: The paths of the copy (the C(retained_paths) of M(strackt.move.env_info)), each under O(root).
    type: list
    elements: path
    required: true
  units:
    description: Every unit name of the env (the C(units) of M(strackt.move.env_info)).
    type: list
    elements: str
    required: true
  unit_dir:
    description: Where the env's unit files (or their masks) are.
    type: path
    default: /etc/systemd/system
  site_file:
    description: The env's proxy site.
    type: path
    required: true
  closed_file:
    description: The env's closed-site marker.
    type: path
    required: true
  env_file:
    description: The env's env file.
    type: path
    required: true
  retired_units_dir:
    description: Where the finish kept the env's unit files on this server; removed with the copy.
    type: path
"""

EXAMPLES = r"""
- name: Remove the retained copy of shop from srv1
  strackt.move.retained_copy:
    env: shop
    state: absent
    root: "{{ env_def.root }}"
    paths: "{{ env_def.retained_paths }}"
    units: "{{ env_def.units }}"
    site_file: "{{ env_def.site_file }}"
    closed_file: "{{ env_def.closed_file }}"
    env_file: "{{ env_def.env_file }}"
    retired_units_dir: /var/lib/strackt-move/retired/shop
  delegate_to: srv1
"""

RETURN = r"""
present:
  description: Whether any of O(paths) exists on the server.
  returned: always
  type: bool
retired:
  description: Whether what is there of the env is a retired copy (RV(live_signs) empty).
  returned: always
  type: bool
live_signs:
  description: What says the env may be live here (a running or unmasked unit, its site, its env file, no closed marker).
  returned: always
  type: list
  elements: str
removed:
  description: What O(state=absent) removed (or would remove, in check mode).
  returned: always
  type: list
  elements: str
unmasked:
  description: The unit names whose mask was removed.
  returned: always
  type: list
  elements: str
bytes_freed:
  description: Apparent size of what was removed.
  returned: always
  type: int
"""

import os

from ansible_collections.strackt.move.plugins.module_utils import retention
from ansible_collections.strackt.move.plugins.module_utils.environment import env_module
from ansible_collections.strackt.move.plugins.module_utils.systemd import ACTIVE_STATES, Systemd


class CopyRefused(Exception):
    """The copy may be the live env, or a path is not the env's: nothing was removed."""


def active_units(systemd: Systemd, units: list) -> list:
    """The units systemd reports active (or on the way to it)."""
    if not units:
        return []
    _rc, out = systemd.systemctl("is-active", *units)
    states = out.split()
    return [u for u, s in zip(units, states) if s in ACTIVE_STATES]


def handle(env: str, layout: retention.ServerLayout, state: str, running: list, check_mode: bool) -> dict:
    """The module's result; raises CopyRefused when it must not remove."""
    problems = retention.path_problems(layout)
    kept = layout.retired_units_dir
    if kept and (os.path.normpath(kept) != kept or os.path.basename(kept) != env):
        problems.append("retired_units_dir %s is not a directory of this env's own (.../%s)" % (kept, env))
    if problems:
        raise CopyRefused("env %s: %s: fix the env definition; nothing was removed" % (env, "; ".join(problems)))
    signs = retention.live_signs(layout, running)
    present = any(os.path.lexists(p) for p in layout.paths)
    result = dict(changed=False, present=present, retired=not signs, live_signs=signs, removed=[], unmasked=[],
                  bytes_freed=0)
    if state == "query":
        return result
    if signs:
        raise CopyRefused("env %s may be live on this server (%s): refusing to remove it; a retained copy has every "
                          "unit stopped and masked, no site, no env file and its closed marker (what the finish of a "
                          "move leaves)" % (env, ", ".join(signs)))
    removal = retention.remove_copy(layout, check_mode)
    result.update(changed=removal.changed, removed=removal.removed, unmasked=removal.unmasked,
                  bytes_freed=removal.bytes_freed)
    return result


def main():
    module, env = env_module(
        dict(
            state=dict(type="str", default="query", choices=["query", "absent"]),
            root=dict(type="path", required=True),
            paths=dict(type="list", elements="path", required=True),
            units=dict(type="list", elements="str", required=True),
            unit_dir=dict(type="path", default="/etc/systemd/system"),
            site_file=dict(type="path", required=True),
            closed_file=dict(type="path", required=True),
            env_file=dict(type="path", required=True),
            retired_units_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    layout = retention.ServerLayout(root=p["root"], paths=tuple(p["paths"]), units=tuple(p["units"]),
                                    unit_dir=p["unit_dir"], site_file=p["site_file"], closed_file=p["closed_file"],
                                    env_file=p["env_file"], retired_units_dir=p["retired_units_dir"])
    systemd = Systemd(run=module.run_command, systemctl=module.get_bin_path("systemctl", required=True))
    try:
        result = handle(env, layout, p["state"], active_units(systemd, list(p["units"])), module.check_mode)
    except (CopyRefused, OSError) as exc:
        module.fail_json(msg=str(exc))
    if result["changed"] and not module.check_mode:
        systemd.systemctl("daemon-reload")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
