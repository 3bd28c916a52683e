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
  - The manifests come as entries (O(source_entries), O(target_entries)) or, for trees of tens of
    thousands of entries, as the files M(strackt.move.manifest) saved with O(strackt.move.manifest#module:save)
    (O(source_manifest_file), O(target_manifest_file)).
  - Pure comparison - runs on the control node (its action plugin runs it in Ansible's worker),
    changes nothing.
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
    description: The stopped source's manifest entries (or O(source_manifest_file)).
    type: list
    elements: dict
  target_entries:
    description: The target's manifest entries (or O(target_manifest_file)).
    type: list
    elements: dict
  source_manifest_file:
    description: The stopped source's manifest, as a file on the control node (RV(strackt.move.manifest#module:manifest_file)).
    type: path
  target_manifest_file:
    description: The target's manifest, as a file on the control node.
    type: path
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

- name: The same with manifests saved on the control node
  strackt.move.data_check:
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    source_manifest_file: "{{ source_manifest.manifest_file }}"
    target_manifest_file: "{{ target_manifest.manifest_file }}"
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
from ansible_collections.strackt.move.plugins.module_utils import manifest as mf
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed, run_as_module

MANIFESTS = (("source_entries", "source_manifest_file"), ("target_entries", "target_manifest_file"))


def argument_spec():
    """The options (shared with the action plugin of the same name)."""
    return dict(
        env_root=dict(type="path", required=True),
        data_paths=dict(type="list", elements="path", required=True),
        source_entries=dict(type="list", elements="dict"),
        target_entries=dict(type="list", elements="dict"),
        source_manifest_file=dict(type="path"),
        target_manifest_file=dict(type="path"),
        target_changed=dict(type="list", elements="str", default=[]),
        source_changed_late=dict(type="list", elements="str", default=[]),
        limit=dict(type="int", default=50),
    )


def _entries(params, entries_option, file_option):
    if (params[entries_option] is None) == (params[file_option] is None):
        raise TaskFailed("give exactly one of %s and %s" % (entries_option, file_option))
    if params[entries_option] is not None:
        return params[entries_option]
    try:
        return mf.load(params[file_option])
    except ValueError as exc:
        raise TaskFailed(str(exc)) from None


def work(params, check_mode):
    """What to repair forward, from the two manifests (raises TaskFailed on bad input)."""
    del check_mode  # changes nothing either way
    source, target = (_entries(params, *pair) for pair in MANIFESTS)
    root = posixpath.normpath(params["env_root"])
    try:
        rels = [rs.remote_rel(root, path) for path in params["data_paths"]]
    except ValueError as exc:
        raise TaskFailed(str(exc)) from None
    check = dc.plan(source, target, params["target_changed"], params["source_changed_late"], limit=params["limit"])
    copies = dc.by_data_path(check.copy, rels)
    deletions = dc.by_data_path(check.delete, rels)
    changes = {posixpath.join(root, rel): {"copy": copies[rel], "delete": deletions[rel]}
               for rel in rels if copies[rel] or deletions[rel]}
    result = check.to_dict(limit=params["limit"])
    summary = "%d compared, %d equal, %d excused (changed by the new server), %d to copy, %d to delete, %d conflicts" % (
        check.compared, check.equal, len(check.excused), len(check.copy), len(check.delete), len(check.conflicts))
    return dict(changed=False, needs_repair=check.needs_repair, changes=changes, summary=summary, **result)


def main():
    run_as_module(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), work)


if __name__ == "__main__":
    main()
