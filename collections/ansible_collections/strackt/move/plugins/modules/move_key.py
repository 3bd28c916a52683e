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
  - O(side=target) (run on the target) installs strackt.move's rsync guard as O(guard_path) (root,
    0755) and the public key in root's authorized_keys restricted to the source address and to
    the guard, C(from="<source>",restrict,command="<guard> <env root> <move_id> <data paths
    relative to the root>"), with a marker comment C(strackt-move:<move_id>). The guard runs only
    C(rsync --server) with path arguments inside the data paths, a C(--backup-dir) only under
    C(<env root>/.strackt-backup/<move_id>), and adds C(--no-devices --no-specials --chmod=Fug-s)
    after the client's options, so no device, fifo, socket or setuid/setgid bit crosses in either
    direction.
  - O(state=absent) removes the key directory (source; it also stops the move's follower and change journal
    unit C(strackt-journal-<move_id>-<n>), see M(strackt.move.rsync_pass)) or the marked line
    (target; the guard file too once no key line names it any more).
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
    description: The env's root (O(side=target), O(state=present)).
    type: path
  data_paths:
    description:
      - The env's data paths, absolute and under O(env_root); the only paths the key may read or
        write (O(side=target), O(state=present)).
    type: list
    elements: path
  authorized_keys:
    description: The authorized_keys file on the target.
    type: path
    default: /root/.ssh/authorized_keys
  guard_path:
    description: Where the guard (the key's forced command) is installed on the target.
    type: path
    default: /usr/local/lib/strackt-move/rsync-guard.py
"""

EXAMPLES = r"""
- name: Make the move key on the source
  strackt.move.move_key:
    move_id: "{{ move_id }}"
    side: source
    target_address: 10.77.0.12
    target_host_key: "{{ target_host_key.content | b64decode }}"
  register: move_key

- name: Let it in on the target, for rsync into /srv/shop/data only
  strackt.move.move_key:
    move_id: "{{ move_id }}"
    side: target
    public_key: "{{ move_key.public_key }}"
    source_address: 10.77.0.11
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
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
authorized_key:
  description: The key's line in authorized_keys (O(side=target)).
  returned: side=target and state=present
  type: str
guard_path:
  description: The installed guard (O(side=target)).
  returned: side=target and state=present
  type: str
"""

import fcntl
import os
import re
import shutil
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import follower as fl
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync_guard
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write
from ansible_collections.strackt.move.plugins.module_utils.names import MOVE_ID_RE, source_key_paths
KEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+$")
ADDR_RE = re.compile(r"^[0-9A-Fa-f:.]+$")
# what may stand unquoted in the key's command= (sshd hands it to root's shell)
COMMAND_WORD_RE = re.compile(r"^/[A-Za-z0-9._/+@:,=-]+$")


def marker(move_id):
    return "strackt-move:%s" % move_id


def key_of(line):
    parts = line.strip().split()
    if len(parts) < 2:
        return None
    return "%s %s" % (parts[0], parts[1])


def source_side(module, p):
    move_dir = os.path.join(p["key_dir"], p["move_id"])
    key_path, kh_path = source_key_paths(p["key_dir"], p["move_id"])
    result = dict(changed=False, key_path=key_path, known_hosts_path=kh_path)
    if p["state"] == "absent":
        # the follower and the change journal (rsync_pass) end with the key, the follower first
        if not module.check_mode:
            try:
                result["changed"] = fl.stop_for_move(p["move_id"])
            except fl.FollowError as exc:
                module.fail_json(msg="%s; the key directory %s stays" % (exc, move_dir))
        journal = jr.Journal(os.path.join(move_dir, "journal"), ["/"])
        if journal.invocation():
            result["changed"] = True
            if not module.check_mode:
                journal.stop()
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
    if p["state"] == "present":
        line, guard = _target_line(module, p)
    with _file_lock(os.path.dirname(path), create=p["state"] == "present" and not module.check_mode):
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
            removed = remove_guard_unless_named(module, os.path.normpath(p["guard_path"]), kept)
            result = dict(changed=changed or removed)
        else:
            result = _install(module, path, lines, kept + [line], guard)
    module.exit_json(**result)


@contextmanager
def _file_lock(directory, create):
    """Moves to one target run at once (an evacuation prepares several): each reads, changes and
    writes authorized_keys and the guard, so each holds an exclusive lock on their directory
    meanwhile, or one move's line could be lost to another's write."""
    if not os.path.isdir(directory):
        if not create:
            yield  # nothing to read, nothing to write
            return
        os.makedirs(directory, 0o700, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _target_line(module, p):
    """The key's line in authorized_keys and the guard's path, or a failed task naming what is wrong."""
    for opt in ("public_key", "source_address", "env_root", "data_paths"):
        if not p[opt]:
            module.fail_json(msg="side=target state=present needs %s" % opt)
    if not ADDR_RE.match(p["source_address"]):
        module.fail_json(msg="source_address %r is not an IP address" % p["source_address"])
    pub = key_of(p["public_key"])
    if not pub or not KEY_RE.match(pub):
        module.fail_json(msg="public_key is not an ssh public key: %r" % p["public_key"][:80])
    root = os.path.normpath(p["env_root"])
    if root in ("/", "/srv", "/root", "/etc") or not COMMAND_WORD_RE.match(root):
        module.fail_json(msg="env_root %r cannot confine the move key: give the env's own root" % root)
    data_rel = []
    for data_path in p["data_paths"] or []:
        norm = os.path.normpath(data_path)
        if not norm.startswith(root + "/") or not COMMAND_WORD_RE.match(norm):
            module.fail_json(msg="data path %r is not a plain path under the env root %s: fix the env's data_paths"
                             % (data_path, root))
        data_rel.append(os.path.relpath(norm, root))
    if not data_rel:
        module.fail_json(msg="side=target state=present needs data_paths (the only paths the key may reach)")
    guard = os.path.normpath(p["guard_path"])
    if not COMMAND_WORD_RE.match(guard):
        module.fail_json(msg="guard_path %r must be an absolute plain path" % guard)
    line = 'from="%s",restrict,command="%s %s %s %s" %s %s' % (
        p["source_address"], guard, root, p["move_id"], " ".join(data_rel), pub, marker(p["move_id"]))
    return line, guard


def _install(module, path, lines, new, guard):
    """Write the guard and ``new`` (the key lines with this move's) where they differ."""
    script = rsync_guard.script_text()
    current = None
    if os.path.exists(guard):
        with open(guard) as fh:
            current = fh.read()
    changed = current != script or (current is not None and _mode_owner(guard) != (0o755, 0, 0))
    changed = changed or new != lines
    if changed and not module.check_mode:
        guard_dir = os.path.dirname(guard)
        if not os.path.isdir(guard_dir):
            os.makedirs(guard_dir, 0o755)
        atomic_write(guard, script, 0o755, owner=(0, 0))
        if new != lines:
            atomic_write(path, "".join(ln + "\n" for ln in new), 0o600)
    return dict(changed=changed, authorized_key=new[-1], guard_path=guard)


def _mode_owner(path):
    st = os.stat(path)
    return st.st_mode & 0o7777, st.st_uid, st.st_gid


def remove_guard_unless_named(module, guard, lines):
    """The guard goes with the last key line that names it (another move may still use it)."""
    if any(guard + " " in ln for ln in lines) or not os.path.exists(guard):
        return False
    if not module.check_mode:
        os.unlink(guard)
        try:
            os.rmdir(os.path.dirname(guard))
        except OSError:
            pass  # not empty: not only ours
    return True


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
            data_paths=dict(type="list", elements="path"),
            authorized_keys=dict(type="path", default="/root/.ssh/authorized_keys"),
            guard_path=dict(type="path", default="/usr/local/lib/strackt-move/rsync-guard.py"),
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
