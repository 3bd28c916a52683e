#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: change_journal
short_description: A server's change journal of an env's data, and what it changed itself
version_added: 0.2.0
description:
  - Runs on a server of a move. O(state=started) arms a change journal (C(inotifywait) as the
    transient unit C(strackt-journal-<move_id>-<n>)) over the data paths, its files in
    C(<key_dir>/<move_id>/target-journal); armed already, it changes nothing.
  - O(state=changes) with O(since_marker) returns the paths (relative to the env root) created,
    modified, deleted or renamed after the marker file (the freeze's barrier) arrived in the first
    data path - what the new server changed itself, with no clock compared. With
    O(since_last_pass) (the source's own pass journal, O(journal_dir)) it returns what changed
    after the last committed pass. C(trustworthy) is false, with the reason, when the journal
    stopped or was restarted since it was armed, overflowed, or the marker never arrived; then
    C(changed_paths) is empty and must not be used.
  - O(state=stopped) stops the journal (its files stay until the key directory is removed).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
options:
  move_id:
    description: The move (names the journal unit and its directory).
    type: str
    required: true
  env_root:
    description: The env's root (paths are returned relative to it).
    type: path
  data_paths:
    description: The data paths (absolute, under O(env_root)).
    type: list
    elements: path
  key_dir:
    description: Directory of the per-move files on this server.
    type: path
    default: /root/.strackt-move
  journal_dir:
    description: The journal's directory; default C(<key_dir>/<move_id>/target-journal).
    type: path
  state:
    description: What to do.
    type: str
    choices: [started, changes, stopped]
    default: started
  since_marker:
    description: (V(changes)) The marker file's name in the first data path, e.g. C(.strackt-barrier-<move_id>).
    type: str
  since_last_pass:
    description: (V(changes)) What changed after the last pass committed against this journal.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Arm the target's change journal before the freeze
  strackt.move.change_journal:
    move_id: shop-20261125T123456Z
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    state: started

- name: What the new server changed itself since the barrier
  strackt.move.change_journal:
    move_id: shop-20261125T123456Z
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    state: changes
    since_marker: .strackt-barrier-shop-20261125T123456Z
  register: target_changes
"""

RETURN = r"""
trustworthy:
  description: The journal vouches for RV(changed_paths) (V(changes)).
  returned: O(state=changes)
  type: bool
reason:
  description: Why it cannot vouch, or how many paths changed.
  returned: O(state=changes)
  type: str
marker_seen:
  description: The marker's arrival is in the journal.
  returned: O(state=changes)
  type: bool
changed_paths:
  description: Paths relative to the env root changed after the marker (or the last pass).
  returned: O(state=changes)
  type: list
  elements: str
changes:
  description:
    - RV(changed_paths) as M(strackt.move.rsync_pass)'s C(changes) takes them - data path to the
      paths (relative to it) that exist here now (C(copy)) and that are gone (C(delete)). Empty when
      not RV(trustworthy).
  returned: O(state=changes)
  type: dict
records:
  description: Journal records read after the marker.
  returned: O(state=changes)
  type: int
journal_unit:
  description: The journal's unit.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils import change_journal as cj
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd


def main():
    module = AnsibleModule(
        argument_spec=dict(
            move_id=dict(type="str", required=True),
            env_root=dict(type="path"),
            data_paths=dict(type="list", elements="path"),
            key_dir=dict(type="path", default="/root/.strackt-move"),
            journal_dir=dict(type="path"),
            state=dict(type="str", default="started", choices=["started", "changes", "stopped"]),
            since_marker=dict(type="str"),
            since_last_pass=dict(type="bool", default=False),
        ),
        required_if=[("state", "started", ("env_root", "data_paths")), ("state", "changes", ("env_root", "data_paths"))],
        mutually_exclusive=[("since_marker", "since_last_pass")],
        supports_check_mode=True,
    )
    p = module.params
    if "/" in p["move_id"] or p["move_id"] in ("", ".", ".."):
        module.fail_json(msg="move_id %r is not a move id" % p["move_id"])
    journal_dir = p["journal_dir"] or os.path.join(p["key_dir"], p["move_id"], "target-journal")
    systemd = Systemd(run=module.run_command, systemctl=module.get_bin_path("systemctl", required=True),
                      systemd_run=module.get_bin_path("systemd-run", required=True),
                      timeout=module.get_bin_path("timeout", required=True))
    paths = p["data_paths"] or ["/"]
    journal = cj.ServerJournal(journal_dir, paths, p["env_root"] or "/", jr.Journal(journal_dir, paths, systemd))
    unit = journal.journal.unit
    try:
        if p["state"] == "started":
            if module.check_mode:
                module.exit_json(changed=journal.journal.invocation() is None, journal_unit=unit)
            missing = [d for d in paths if not os.path.isdir(d)]
            if missing:
                module.fail_json(msg="data path(s) %s missing on this server: nothing to watch" % ", ".join(missing))
            module.exit_json(changed=journal.start(), journal_unit=unit)
        if p["state"] == "changes":
            if not p["since_marker"] and not p["since_last_pass"]:
                module.fail_json(msg="state=changes needs since_marker (the barrier's name) or since_last_pass")
            found = journal.since_marker(p["since_marker"]) if p["since_marker"] else journal.since_last_pass()
            module.exit_json(changed=False, journal_unit=unit, trustworthy=found.trustworthy, reason=found.reason,
                             marker_seen=found.marker_seen, changed_paths=found.changed, records=found.records,
                             changes=found.by_data_path(p["env_root"], paths) if found.trustworthy else {})
        if module.check_mode:
            module.exit_json(changed=journal.journal.invocation() is not None, journal_unit=unit)
        module.exit_json(changed=journal.stop(), journal_unit=unit)
    except jr.JournalError as exc:
        module.fail_json(msg="the change journal %s: %s" % (unit, exc), journal_unit=unit)


if __name__ == "__main__":
    main()
