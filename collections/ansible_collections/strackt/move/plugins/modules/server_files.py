#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: server_files
short_description: Write or remove a server's small files (configuration, markers) in one call
version_added: 0.9.0
description:
  - Puts each file of O(files) in place with its content, owner, group and mode, or removes it. It
    does what one M(ansible.builtin.copy) or M(ansible.builtin.template) per file does, in one
    module run. Those cost one or two module runs on the server per file (0.3-0.6 s each), and
    provision writes three such files. Render templates on the control node, for example with the
    C(ansible.builtin.template) lookup, and pass the text as the content.
  - A file whose content differs is replaced whole, through a temporary file in its directory
    renamed over it. A reader sees the old file or the new one, never a mix. Only its owner, group
    or mode is set when the content is the same.
  - A path that is a link, a directory or another non-regular file fails the module, naming it,
    before any file is written or removed. So does a path whose directory does not exist, or an
    owner the server does not have. M(ansible.builtin.copy) would follow a link, and the server's
    root would then write where the link points.
  - In check mode a missing directory or owner (the tasks before it, skipped, would have made
    them) is reported as a change, not refused.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  files:
    description: The files, in the order they are written.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: Its content. Required unless O(files[].state=absent).
        type: str
      state:
        description: V(present) writes the file, V(absent) removes it.
        type: str
        choices: [present, absent]
        default: present
      force:
        description:
          - Whether a file that exists gets this content, owner, group and mode.
          - With V(false) only a missing file is written, as M(ansible.builtin.copy) C(force=false) does.
        type: bool
        default: true
      owner:
        description: User name (or uid) that owns it.
        type: str
        default: root
      group:
        description: Group name (or gid) that owns it.
        type: str
        default: root
      mode:
        description: Its mode, octal (C("0644")).
        type: str
        default: "0644"
"""

EXAMPLES = r"""
- name: Write the proxy's configuration and a marker in one call
  strackt.move.server_files:
    files:
      - path: /etc/caddy/Caddyfile
        content: "{{ lookup('ansible.builtin.template', 'Caddyfile.j2') }}"
      - path: /var/lib/strackt-move/closed/shop
        content: "closed\n"
        force: false
      - path: /etc/caddy/sites/old.caddy
        state: absent
"""

RETURN = r"""
changed_paths:
  description: The files written, set or removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/caddy/Caddyfile]
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.file_owner import MODE_RE, unknown_owner
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write


def refusal(entry: dict, check: bool = False) -> str | None:
    """Why ``entry`` cannot be put in place (None: it can), before anything is written. In check
    mode a directory or owner not made yet is no reason: the tasks that make them were skipped."""
    path = entry["path"]
    if not os.path.isabs(path):
        return "file %r is not an absolute path" % path
    if entry["state"] == "present":
        if entry["content"] is None:
            return "%s has no content; give its content, or state=absent to remove it" % path
        if not MODE_RE.match(entry["mode"]):
            return "mode %r of %s is not an octal mode such as 0644" % (entry["mode"], path)
        if not os.path.isdir(os.path.dirname(path)) and not check:
            return "the directory of %s does not exist; make it first" % path
        missing = unknown_owner(entry["owner"], entry["group"])
        if missing is not None and not check:
            return "%s of %s does not exist on this server" % (missing, path)
    if os.path.lexists(path):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return "%s is a link: replace it with the file itself (writing through it would write where it points)" % path
        if not stat.S_ISREG(st.st_mode):
            return "%s exists and is not a regular file; move it away" % path
    return None


def _same_content(path: str, content: bytes) -> bool:
    if os.path.getsize(path) != len(content):
        return False
    with open(path, "rb") as f:
        return f.read() == content


def put(module: AnsibleModule, entry: dict) -> bool:
    """Put one file in place (nothing changes in check mode); whether anything changed."""
    path = entry["path"]
    if entry["state"] == "absent":
        if not os.path.lexists(path):
            return False
        if not module.check_mode:
            os.unlink(path)
        return True
    exists = os.path.lexists(path)
    if exists and not entry["force"]:
        return False
    if module.check_mode and (not exists or unknown_owner(entry["owner"], entry["group"])):
        return True  # a file, directory or owner the skipped tasks before it would have made
    content = entry["content"].encode("utf-8")
    mode = int(entry["mode"], 8)
    written = not exists or not _same_content(path, content)
    if written and not module.check_mode:
        atomic_write(path, content, mode)  # root's, with its mode, until its owner is set below
    # the owner, group and mode as AnsibleModule sets them (and reports them in check mode)
    wanted = module.load_file_common_arguments(dict(path=path, owner=entry["owner"], group=entry["group"], mode=mode))
    return module.set_fs_attributes_if_different(wanted, written)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str"),
                state=dict(type="str", choices=["present", "absent"], default="present"),
                force=dict(type="bool", default=True),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="str", default="0644"),
            )),
        ),
        supports_check_mode=True,
    )
    entries = module.params["files"]
    for entry in entries:  # every refusal before anything is written or removed
        problem = refusal(entry, module.check_mode)
        if problem is not None:
            module.fail_json(msg=problem)
    changed_paths = [entry["path"] for entry in entries if put(module, entry)]
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths)


if __name__ == "__main__":
    main()
