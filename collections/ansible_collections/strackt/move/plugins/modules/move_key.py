#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: move_key
short_description: The per-move ssh key that lets the source rsync to the target, and nothing else
version_added: 0.1.0
description:
  - O(side=source) (run on the source) generates an ed25519 key for this move in
    C({key_dir}/{move_id}/id_ed25519) (dir 0700) and pins the target's host key in
    C({key_dir}/{move_id}/known_hosts), so the source connects with C(StrictHostKeyChecking=yes).
  - O(side=target) (run on the target) installs the public key in root's authorized_keys
    restricted to the source address and to rsync inside the env's root,
    C(from="<source>",restrict,command="/usr/bin/rrsync <env root>"), with a marker comment
    C(strackt-move:<move_id>).
  - O(state=absent) removes the key directory (source; it also stops the move's change journal
    unit C(strackt-journal-<move_id>), see M(strackt.move.rsync_pass)) or the marked line (target).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  move_id:
    description: The move id (names the key directory and the marker).
    type: str
    required: true
  side:
    description: Which server this runs on.
    type: str
    required: true
    choices: [source, target]
  state:
    description: Whether the key should exist.
    type: str
    choices: [present, absent]
    default: present
  key_dir:
    description: Directory (on the source) holding one sub-directory per move.
    type: path
    default: /root/.strackt-move
  target_address:
    description: Address the source connects to (O(side=source), O(state=present)).
    type: str
  target_host_key:
    description:
      - The target's public host key, one line C(<type> <base64> [comment]), taken from the target
        over the already verified Ansible connection (O(side=source), O(state=present)).
    type: str
  public_key:
    description: The move's public key (O(side=target), O(state=present)).
    type: str
  source_address:
    description: The only address the key is accepted from (O(side=target), O(state=present)).
    type: str
  env_root:
    description: The env's root; rrsync confines the key to it (O(side=target), O(state=present)).
    type: path
  authorized_keys:
    description: The authorized_keys file on the target.
    type: path
    default: /root/.ssh/authorized_keys
  rrsync:
    description: Path of rrsync on the target.
    type: path
    default: /usr/bin/rrsync
"""

EXAMPLES = r"""
- name: Make the move key on the source
  strackt.move.move_key:
    move_id: "{{ move_id }}"
    side: source
    target_address: 10.77.0.12
    target_host_key: "{{ target_host_key.content | b64decode }}"
  register: move_key

- name: Let it in on the target, for rsync into /srv/shop only
  strackt.move.move_key:
    move_id: "{{ move_id }}"
    side: target
    public_key: "{{ move_key.public_key }}"
    source_address: 10.77.0.11
    env_root: /srv/shop
  delegate_to: srv2
"""

RETURN = r"""
public_key:
  description: The move's public key (O(side=source)).
  returned: side=source and state=present
  type: str
key_path:
  description: Private key path on the source.
  returned: side=source
  type: str
known_hosts_path:
  description: The pinned known_hosts file on the source.
  returned: side=source
  type: str
"""

import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write
from ansible_collections.strackt.move.plugins.module_utils.names import MOVE_ID_RE
KEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+$")
ADDR_RE = re.compile(r"^[0-9A-Fa-f:.]+$")


def marker(move_id):
    return "strackt-move:%s" % move_id


def key_of(line):
    parts = line.strip().split()
    if len(parts) < 2:
        return None
    return "%s %s" % (parts[0], parts[1])


def source_side(module, p):
    move_dir = os.path.join(p["key_dir"], p["move_id"])
    key_path = os.path.join(move_dir, "id_ed25519")
    kh_path = os.path.join(move_dir, "known_hosts")
    result = dict(changed=False, key_path=key_path, known_hosts_path=kh_path)
    if p["state"] == "absent":
        journal = jr.Journal(os.path.join(move_dir, "journal"), ["/"])
        if journal.invocation():
            result["changed"] = True
            if not module.check_mode:
                journal.stop()  # the move's change journal (rsync_pass) ends with its key
        if os.path.exists(move_dir):
            result["changed"] = True
            if not module.check_mode:
                shutil.rmtree(move_dir)
        module.exit_json(**result)

    for opt in ("target_address", "target_host_key"):
        if not p[opt]:
            module.fail_json(msg="side=source state=present needs %s" % opt)
    if not ADDR_RE.match(p["target_address"]):
        module.fail_json(msg="target_address %r is not an IP address" % p["target_address"])
    host_key = key_of(p["target_host_key"])
    if not host_key or not KEY_RE.match(host_key):
        module.fail_json(msg="target_host_key is not a public host key line (<type> <base64>): %r"
                         % p["target_host_key"][:80])
    kh_line = "%s %s\n" % (p["target_address"], host_key)

    if not os.path.exists(key_path):
        result["changed"] = True
        if module.check_mode:
            module.exit_json(public_key="", **result)
        os.makedirs(p["key_dir"], 0o700, exist_ok=True)
        os.makedirs(move_dir, 0o700, exist_ok=True)
        os.chmod(p["key_dir"], 0o700)
        os.chmod(move_dir, 0o700)
        rc, out, err = module.run_command(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", marker(p["move_id"]), "-f", key_path])
        if rc != 0:
            module.fail_json(msg="ssh-keygen failed (rc %d): %s" % (rc, err.strip()))
    current_kh = None
    if os.path.exists(kh_path):
        with open(kh_path) as fh:
            current_kh = fh.read()
    if current_kh != kh_line:
        result["changed"] = True
        if not module.check_mode:
            atomic_write(kh_path, kh_line, 0o600)
    with open(key_path + ".pub") as fh:
        result["public_key"] = key_of(fh.read())
    module.exit_json(**result)


def target_side(module, p):
    path = p["authorized_keys"]
    mark = marker(p["move_id"])
    lines = []
    if os.path.exists(path):
        with open(path) as fh:
            lines = fh.read().splitlines()
    kept = [ln for ln in lines if not ln.rstrip().endswith(" " + mark)]
    if p["state"] == "absent":
        changed = len(kept) != len(lines)
        if changed and not module.check_mode:
            atomic_write(path, "".join(ln + "\n" for ln in kept), 0o600)
        module.exit_json(changed=changed)

    for opt in ("public_key", "source_address", "env_root"):
        if not p[opt]:
            module.fail_json(msg="side=target state=present needs %s" % opt)
    if not ADDR_RE.match(p["source_address"]):
        module.fail_json(msg="source_address %r is not an IP address" % p["source_address"])
    pub = key_of(p["public_key"])
    if not pub or not KEY_RE.match(pub):
        module.fail_json(msg="public_key is not an ssh public key: %r" % p["public_key"][:80])
    root = os.path.normpath(p["env_root"])
    if root in ("/", "/srv", "/root", "/etc") or not re.match(r"^/[A-Za-z0-9._/+-]+$", root):
        module.fail_json(msg="env_root %r cannot confine the move key: give the env's own root" % root)
    line = 'from="%s",restrict,command="%s %s" %s %s' % (p["source_address"], p["rrsync"], root, pub, mark)
    new = kept + [line]
    changed = new != lines
    if changed and not module.check_mode:
        ssh_dir = os.path.dirname(path)
        if not os.path.isdir(ssh_dir):
            os.makedirs(ssh_dir, 0o700)
        atomic_write(path, "".join(ln + "\n" for ln in new), 0o600)
    module.exit_json(changed=changed, authorized_key=line)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            move_id=dict(type="str", required=True),
            side=dict(type="str", required=True, choices=["source", "target"]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            key_dir=dict(type="path", default="/root/.strackt-move"),
            target_address=dict(type="str"),
            target_host_key=dict(type="str", no_log=False),
            public_key=dict(type="str"),
            source_address=dict(type="str"),
            env_root=dict(type="path"),
            authorized_keys=dict(type="path", default="/root/.ssh/authorized_keys"),
            rrsync=dict(type="path", default="/usr/bin/rrsync"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not MOVE_ID_RE.match(p["move_id"]):
        module.fail_json(msg="move_id %r is not a strackt.move move id (<env>-YYYYMMDDTHHMMSSZ)" % p["move_id"])
    if p["side"] == "source":
        source_side(module, p)
    else:
        target_side(module, p)


if __name__ == "__main__":
    main()
