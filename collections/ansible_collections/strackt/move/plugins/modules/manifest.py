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
  expected_side:
    description: What O(expected) describes, for messages.
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
    description: Return the entries (needed to compare on another server).
    type: bool
    default: true
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
  returned: when expected is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import manifest as mf


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            paths=dict(type="list", elements="path", required=True),
            expected=dict(type="list", elements="dict"),
            expected_side=dict(type="str", default="source"),
            side=dict(type="str", default="target"),
            changed_since_ns=dict(type="int"),
            strict=dict(type="bool", default=False),
            complete=dict(type="bool", default=False),
            return_entries=dict(type="bool", default=True),
            limit=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        entries = mf.build(p["paths"], p["root"])
    except (ValueError, OSError) as exc:
        module.fail_json(msg="cannot make the manifest: %s" % exc)
    result = dict(changed=False, digest=mf.digest(entries), summary=mf.summary(entries))
    if p["return_entries"]:
        result["entries"] = entries
    if p["expected"] is not None:
        cmp = mf.compare(p["expected"], entries, changed_since_ns=p["changed_since_ns"], limit=p["limit"],
                         sides=(p["expected_side"], p["side"]), complete=p["complete"])
        result["comparison"] = cmp
        if not cmp["consistent"] or (p["strict"] and not cmp["equal"]):
            if cmp["consistent"]:
                first = "%d entries still settling (changed on the %s after the last pass)" % (
                    cmp["settling"], p["expected_side"])
            else:
                first = "; ".join(cmp["differences"])
            module.fail_json(
                msg="the data on the %s differs from the %s in %d entries (%s ahead: %d). First: %s. Run "
                    "another sync pass and verify again" % (
                        p["side"], p["expected_side"], cmp["difference_count"], p["expected_side"],
                        cmp["settling"], first),
                **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
