#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_directories
short_description: Create an environment's directories, with their owner and mode, in one call
version_added: 0.9.0
description:
  - Makes each directory of O(directories) that is missing with the entry's owner, group and
    mode (the missing ones above it root's, 0755), and sets them on a directory that exists. It does what one
    M(ansible.builtin.file) C(state=directory) per directory does, in one module run. Each item of
    a loop is a module run of its own on the server (0.3-0.6 s each), and provision makes six or
    more directories.
  - A link to a directory counts as the directory (its target gets the owner and mode, as
    M(ansible.builtin.file) follows it), but only in a parent directory only root may write. One an
    env's user may write could have been swapped for a link to a system directory, which would
    then be handed to that user, so the module refuses it.
  - A path that exists and is not a directory, or one below a file or a dangling link, fails the
    module, naming it, before any directory is made or changed. In check mode an owner that does
    not exist yet (the tasks before it made none) is reported as a change, not refused.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  directories:
    description: The directories, in the order they are made.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      owner:
        description: User name (or uid) that owns it.
        type: str
        default: root
      group:
        description: Group name (or gid) that owns it.
        type: str
        default: root
      mode:
        description: Its mode, octal (C("0750")).
        type: str
        default: "0755"
"""

EXAMPLES = r"""
- name: Create the env's directories
  strackt.move.env_directories:
    directories:
      - path: /srv/shop
      - path: /srv/shop/app
      - path: /srv/shop/data
        owner: shop
        group: shop
        mode: "0750"
"""

RETURN = r"""
made:
  description: The directories that were missing (and made, unless in check mode), above ones included.
  returned: always
  type: list
  elements: str
  sample: [/srv/shop, /srv/shop/data]
changed_paths:
  description: The directories whose owner, group or mode was set (or would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.file_owner import MODE_RE, unknown_owner


def _root_only(directory: str) -> bool:
    """Only root may write ``directory`` (a link in it is root's doing)."""
    st = os.stat(directory)
    return st.st_uid == 0 and not st.st_mode & 0o022


def missing_chain(path: str) -> list[str]:
    """The directories to make for ``path``, the topmost missing one first."""
    chain = []
    current = path
    while not os.path.lexists(current) and current != os.path.dirname(current):
        chain.append(current)
        current = os.path.dirname(current)
    return list(reversed(chain))


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="str", default="0755"),
            )),
        ),
        supports_check_mode=True,
    )
    entries = module.params["directories"]
    unknown = set()  # owners not made yet: --check skipped the tasks that make them
    # every refusal before anything is made or changed
    for entry in entries:
        path = entry["path"]
        if not os.path.isabs(path):
            module.fail_json(msg="directory %r is not an absolute path" % path)
        if not MODE_RE.match(entry["mode"]):
            module.fail_json(msg="mode %r of %s is not an octal mode such as 0750" % (entry["mode"], path))
        missing = unknown_owner(entry["owner"], entry["group"])
        if missing is not None:
            if not module.check_mode:
                module.fail_json(msg="%s of %s does not exist on this server" % (missing, path))
            unknown.add(path)
        if os.path.lexists(path) and not os.path.isdir(path):
            module.fail_json(msg="%s exists and is not a directory; move it away or fix the env's definition"
                             % path)
        chain = missing_chain(path)
        above = os.path.dirname(chain[0]) if chain else None
        if above is not None and not os.path.isdir(above):
            module.fail_json(msg="%s is not a directory (a file or a dangling link), so %s cannot be made; move "
                             "it away" % (above, path))
        if os.path.islink(path) and not _root_only(os.path.dirname(path)):
            module.fail_json(msg="%s is a link in a directory not only root may write: its target would get %s's "
                             "owner and mode. Replace the link with the directory (or make its parent root's, "
                             "0755)" % (path, entry["owner"]))
    made: list[str] = []
    changed_paths: list[str] = []
    for entry in entries:
        path = entry["path"]
        chain = [d for d in missing_chain(path) if d not in made]  # check mode made none of them
        made += chain
        if module.check_mode and (path in made or path in unknown):
            if path not in made:
                changed_paths.append(path)  # an owner --check did not make: it would be set
            continue
        for directory in chain:
            # the ones above it root's: an env user owning a parent could swap the directory for a link
            os.mkdir(directory, 0o755 if directory != path else 0o700)
        for directory in chain[:-1]:
            os.chown(directory, 0, 0)
            os.chmod(directory, 0o755)
        # a link counts as its target, as ansible.builtin.file follows it (only in a root-only parent)
        real = os.path.realpath(path) if os.path.islink(path) else path
        wanted = module.load_file_common_arguments(dict(path=real, owner=entry["owner"], group=entry["group"],
                                                        mode=int(entry["mode"], 8)))
        if module.set_fs_attributes_if_different(wanted, False) and not chain:
            changed_paths.append(path)
    module.exit_json(changed=bool(made or changed_paths), made=made, changed_paths=changed_paths)


if __name__ == "__main__":
    main()
