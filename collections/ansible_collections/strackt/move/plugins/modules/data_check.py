#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: data_check
short_description: The data check after the switch-over, without comparing two servers' clocks
version_added: 0.2.0
description:
  - Compares the stopped source's manifest (O(source_entries)) with the serving target's
    (O(target_entries)), both as M(strackt.move.manifest) returns them. A difference on a path
    the new server changed itself after the freeze's barrier (O(target_changed), from
    M(strackt.move.change_journal)), or under a directory it changed, is excused. Every other
    difference is something the final pass did not carry and is to be repaired forward from the
    source - RV(changes) is what M(strackt.move.rsync_pass) copies and deletes for that.
  - A path both the target changed and the source changed after the final pass
    (O(source_changed_late)) is a conflict - the target's copy stays, the source's is named.
  - Pure comparison - runs anywhere (the control node), changes nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
options:
  env_root:
    description: The env's root (manifest entries are relative to it).
    type: path
    required: true
  data_paths:
    description: The data paths (absolute, under O(env_root)).
    type: list
    elements: path
    required: true
  source_entries:
    description: The stopped source's manifest entries.
    type: list
    elements: dict
    required: true
  target_entries:
    description: The target's manifest entries.
    type: list
    elements: dict
    required: true
  target_changed:
    description: Paths (relative to O(env_root)) the new server changed itself after the barrier.
    type: list
    elements: str
    default: []
  source_changed_late:
    description: Paths (relative to O(env_root)) the source's journal saw change after the final pass.
    type: list
    elements: str
    default: []
  limit:
    description: At most this many paths per list in the result's details.
    type: int
    default: 50
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Compare the stopped source with the target
  strackt.move.data_check:
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    source_entries: "{{ source_manifest.entries }}"
    target_entries: "{{ target_manifest.entries }}"
    target_changed: "{{ target_changes.changed_paths }}"
  register: check
"""

RETURN = r"""
compared:
  description: Entries compared (the union of both sides).
  returned: always
  type: int
equal:
  description: Entries equal on both sides.
  returned: always
  type: int
excused:
  description: Differences on paths the new server changed itself.
  returned: always
  type: int
copy:
  description: Paths (relative to the env root) to copy from the source (first O(limit)).
  returned: always
  type: list
  elements: str
delete:
  description: Paths (relative to the env root) to delete on the target (first O(limit)).
  returned: always
  type: list
  elements: str
copy_count:
  description: How many paths are to be copied.
  returned: always
  type: int
delete_count:
  description: How many paths are to be deleted.
  returned: always
  type: int
conflicts:
  description: Paths changed on both sides after the final pass; the target's copy stays.
  returned: always
  type: list
  elements: str
details:
  description: "C(path: why) of the differences to repair (first O(limit))."
  returned: always
  type: list
  elements: str
needs_repair:
  description: Whether anything is to be repaired forward.
  returned: always
  type: bool
changes:
  description:
    - What to repair, as M(strackt.move.rsync_pass)'s C(changes) wants it - absolute data path to
      copy and delete lists, relative to that data path.
  returned: always
  type: dict
summary:
  description: One line for the record.
  returned: always
  type: str
"""

import posixpath

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils import data_check as dc
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env_root=dict(type="path", required=True),
            data_paths=dict(type="list", elements="path", required=True),
            source_entries=dict(type="list", elements="dict", required=True),
            target_entries=dict(type="list", elements="dict", required=True),
            target_changed=dict(type="list", elements="str", default=[]),
            source_changed_late=dict(type="list", elements="str", default=[]),
            limit=dict(type="int", default=50),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = posixpath.normpath(p["env_root"])
    try:
        rels = [rs.remote_rel(root, path) for path in p["data_paths"]]
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    check = dc.plan(p["source_entries"], p["target_entries"], p["target_changed"], p["source_changed_late"],
                    limit=p["limit"])
    copies = dc.by_data_path(check.copy, rels)
    deletions = dc.by_data_path(check.delete, rels)
    changes = {posixpath.join(root, rel): {"copy": copies[rel], "delete": deletions[rel]}
               for rel in rels if copies[rel] or deletions[rel]}
    result = check.to_dict(limit=p["limit"])
    summary = "%d compared, %d equal, %d excused (changed by the new server), %d to copy, %d to delete, %d conflicts" % (
        check.compared, check.equal, len(check.excused), len(check.copy), len(check.delete), len(check.conflicts))
    module.exit_json(changed=False, needs_repair=check.needs_repair, changes=changes, summary=summary, **result)


if __name__ == "__main__":
    main()
