#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: manifest
short_description: A manifest of an environment's data paths, optionally compared with another
version_added: 0.1.0
description:
  - Walks the data paths on this server and lists every entry relative to the env root (type,
    mode, uid, gid, size, mtime_ns, sha256 of files, link target of symlinks, hardlink group,
    xattrs and ACLs hashed). Returns the entries and their digest.
  - With O(expected) (the entries of the other server's manifest) it compares and fails naming
    the first differences. With O(changed_since_ns), differences explained by a source that kept
    changing after that instant (the start of the last pass) are counted as settling, not as
    differences; O(strict) refuses those too (the source is stopped, e.g. after the freeze).
  - With O(save) the entries are kept in a file on the control node instead of being returned
    (RV(manifest_file)), and O(expected_file) compares with such a file on the control node. A
    manifest of tens of thousands of entries costs Ansible seconds per task as a variable or a
    module argument and nothing as a file. Both are carried out by the action plugin of the same
    name, which runs this module on the task's host for the entries.
  - Changes nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  root:
    description: The env's root (entries are named relative to it).
    type: path
    required: true
  paths:
    description: The data paths (absolute, under O(root)).
    type: list
    elements: path
    required: true
  expected:
    description: Entries of the other server's manifest to compare with (this one is the target).
    type: list
    elements: dict
  expected_file:
    description:
      - A manifest file a task with O(save) wrote, compared with like O(expected), on the control
        node. Mutually exclusive with O(expected).
    type: path
  save:
    description:
      - Keep the entries in a new file on the control node (mode 0600, in Ansible's local
        temporary directory, removed when the playbook run ends) and return its path as
        RV(manifest_file). The entries are returned too only if O(return_entries) is set.
    type: bool
    default: false
  save_to:
    description:
      - A new file on this server to write the entries to (the manifest file format, mode 0600,
        owned like its directory) instead of returning them. The action plugin uses it with
        Ansible's remote temporary directory, and fetches the file - a manifest of a million
        entries is hundreds of megabytes, faster as a file than as a module's output.
    type: path
  expected_side:
    description: What O(expected) or O(expected_file) describes, for messages.
    type: str
    default: source
  side:
    description: What this server is, for messages.
    type: str
    default: target
  changed_since_ns:
    description: Start of the last sync pass on the source's clock (ns); see the description.
    type: int
  strict:
    description: Settling differences fail too.
    type: bool
    default: false
  complete:
    description:
      - Every entry on this server must be in O(expected), as it is here or changed there since
        O(changed_since_ns); one missing there is never excused by its directory having changed
        there. For the check after the switch-over, run on the stopped old server with the new
        server's manifest as O(expected) and the release of the freeze as O(changed_since_ns).
    type: bool
    default: false
  return_entries:
    description:
      - Return the entries (to compare with them as O(expected) on another server). Default - true,
        but false with O(save) (the file holds them).
    type: bool
  limit:
    description: How many differences to report.
    type: int
    default: 20
"""

EXAMPLES = r"""
- name: Manifest on the source
  strackt.move.manifest:
    root: /srv/shop
    paths: [/srv/shop/data]
  register: source_manifest

- name: Same data on the target
  strackt.move.manifest:
    root: /srv/shop
    paths: [/srv/shop/data]
    expected: "{{ source_manifest.entries }}"
    return_entries: false
  delegate_to: srv2

- name: The same with the source's entries kept in a file on the control node
  strackt.move.manifest:
    root: /srv/shop
    paths: [/srv/shop/data]
    save: true
    return_entries: false
  register: source_manifest

- name: Compare the target with that file
  strackt.move.manifest:
    root: /srv/shop
    paths: [/srv/shop/data]
    expected_file: "{{ source_manifest.manifest_file }}"
    return_entries: false
  delegate_to: srv2
"""

RETURN = r"""
digest:
  description: sha256 over the entries (directory times excluded).
  returned: success
  type: str
summary:
  description: entries, files, bytes.
  returned: success
  type: dict
entries:
  description: The entries.
  returned: when return_entries
  type: list
  elements: dict
comparison:
  description: equal, consistent, difference_count, differences (first ones), settling.
  returned: when expected or expected_file is given
  type: dict
manifest_file:
  description: The file on the control node holding the entries.
  returned: when save
  type: str
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import manifest as mf


def argument_spec():
    """The options (shared with the action plugin of the same name)."""
    return dict(
        root=dict(type="path", required=True),
        paths=dict(type="list", elements="path", required=True),
        expected=dict(type="list", elements="dict"),
        expected_file=dict(type="path"),
        save=dict(type="bool", default=False),
        expected_side=dict(type="str", default="source"),
        side=dict(type="str", default="target"),
        changed_since_ns=dict(type="int"),
        strict=dict(type="bool", default=False),
        complete=dict(type="bool", default=False),
        return_entries=dict(type="bool"),
        save_to=dict(type="path"),
        limit=dict(type="int", default=20),
    )


MUTUALLY_EXCLUSIVE = [("expected", "expected_file")]


def check(params, entries, expected):
    """The comparison of this server's ``entries`` with ``expected`` and why it fails the task
    (None: it passes), as the module and the action plugin both report it."""
    sides = (params["expected_side"], params["side"])
    cmp = mf.compare(expected, entries, changed_since_ns=params["changed_since_ns"], limit=params["limit"],
                     sides=sides, complete=params["complete"])
    return cmp, mf.verdict(cmp, strict=params["strict"], sides=sides)


def write_for_fetch(entries, path):
    """The entries as a manifest file at ``path``, owned like its directory (a become user's
    module writes into the connecting user's temporary directory, who fetches it)."""
    mf.write(entries, path, socket.gethostname())
    parent = os.stat(os.path.dirname(os.path.abspath(path)) or "/")
    if os.geteuid() == 0 and parent.st_uid != 0:
        os.chown(path, parent.st_uid, parent.st_gid)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    p = module.params
    if p["save"] or p["expected_file"]:
        module.fail_json(msg="save and expected_file work with files on the control node: they are done by the action "
                             "plugin strackt.move.manifest, not by the module alone")
    expected = p["expected"]
    try:
        entries = mf.build(p["paths"], p["root"])
    except (ValueError, OSError) as exc:
        module.fail_json(msg="cannot make the manifest: %s" % exc)
    result = dict(changed=False, digest=mf.digest(entries), summary=mf.summary(entries))
    if p["save_to"]:
        try:
            write_for_fetch(entries, p["save_to"])
        except OSError as exc:
            module.fail_json(msg="cannot write the manifest to %s: %s" % (p["save_to"], exc))
    elif p["return_entries"] is not False:
        result["entries"] = entries
    if expected is not None:
        result["comparison"], failure = check(p, entries, expected)
        if failure:
            module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
