#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rsync_pass
short_description: One rsync pass of an environment's data paths, straight from server to server
version_added: 0.1.0
description:
  - Runs on the source. Copies each data path to the same path on the target with
    C(rsync -aHAXS --numeric-ids --delete --itemize-changes --stats) over ssh with the move's own
    key and pinned known_hosts (M(strackt.move.move_key)); the data never passes the controller.
  - O(direction=pull) copies target to source instead (a rollback after the switch keeps what
    was written on the target).
  - With O(changes) only the named paths are copied or deleted (a repair after the switch-over,
    the pull of what the new server changed itself); with O(backup) every file the pass replaces
    or deletes on the receiving side (the target for a push, this server for a pull) is kept in
    C(<env root>/.strackt-backup/<move_id>/<pass started, UTC>/<data path relative to the root>),
    nothing is lost. Each pass has a directory of its own, so a pass run again never replaces an
    earlier pass's backup.
  - No device, fifo, socket or setuid/setgid bit is carried (C(-rlptgoHAXS --chmod=Fug-s); the
    target's guard enforces the same). An interrupted transfer keeps what arrived in
    C(.strackt-partial/) next to the file; the next pass sends only the rest.
  - rsync exit 24 (files vanished while copying a live tree) is not an error.
  - With O(journal) (push only, not with O(changes) or O(backup)), a change journal on this server (C(inotifywait -m -r) as the
    transient unit C(strackt-journal-<move_id>-<n>), files in C(<key dir>/journal/)) records what
    changes in the data paths; a pass then copies only the paths recorded since the last
    successful pass (C(--files-from) with C(-I), deletions by include rules) and reports
    C(kind=incremental). It falls back to a full pass (and restarts the journal before it) when
    the journal could have missed something (no journal yet, the journal unit restarted or
    stopped (a reboot, its events file reached its size bound), an inotify queue overflow, a
    data path removed). A failed pass leaves the journal as it was, so the next one copies again
    everything since the last successful pass.
  - In check mode it runs rsync with C(--dry-run) and reports what would change.
  - Every transfer option (O(env_root), O(data_paths), O(target_address), O(key_path),
    O(known_hosts_path)) is required.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.transfer
options:
  direction:
    description: V(push) this server to the other, V(pull) the other to this one.
    type: str
    choices: [push, pull]
    default: push
  kind:
    description: What the pass is, as the move record counts it.
    type: str
    choices: [full, incremental, final, reverse]
    default: full
  ssh_port:
    description: ssh port of the other server.
    type: int
    default: 22
  timeout:
    description:
      - Wall-clock seconds one rsync may run before it is stopped and the pass fails. For a
        deadline (the freeze's budget); a pass outside the freeze leaves it unset and relies on
        O(idle_timeout).
    type: float
  idle_timeout:
    description: Seconds without data moving before rsync gives up (rsync's C(--timeout)); 0 = none.
    type: float
    default: 60
  changes:
    description:
      - "Copy and delete only these paths, per data path: C({<data path>: {copy: [...], delete: [...]}}),
        each relative to its data path. A data path not named is not touched. Absent: the whole tree."
    type: dict
  backup:
    description:
      - Keep every file the pass replaces or deletes on the receiving side under
        C(<env root>/.strackt-backup/<move_id>/<pass started, UTC>/) (the same layout as the data).
        Needs O(move_id).
    type: bool
    default: false
  move_id:
    description: The move (names the backup directory).
    type: str
  journal:
    description:
      - Copy only what the change journal recorded when it can vouch for it (push only; not in
        check mode, not with O(changes) or O(backup), which never use the journal).
    type: bool
    default: true
  journal_dir:
    description: The journal's directory; default C(journal/) next to O(key_path).
    type: path
"""

EXAMPLES = r"""
- name: One pass of shop's data to srv2
  strackt.move.rsync_pass:
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    target_address: 10.77.0.12
    key_path: /root/.strackt-move/shop-20261125T123456Z/id_ed25519
    known_hosts_path: /root/.strackt-move/shop-20261125T123456Z/known_hosts
  register: pass_result
"""

RETURN = r"""
files_changed:
  description: Itemized changes (created, updated, deleted entries).
  returned: success
  type: int
bytes_changed:
  description: Size of the files rsync transferred (C(Total transferred file size)).
  returned: success
  type: int
files_total:
  description: Entries in the data paths (C(Number of files)).
  returned: success
  type: int
bytes_total:
  description: Size of all files in the data paths.
  returned: success
  type: int
duration_s:
  description: Wall time of the pass.
  returned: success
  type: float
started_at:
  description: When the pass started (UTC, YYYY-MM-DDTHH:MM:SSZ).
  returned: success
  type: str
started_at_ns:
  description: When the pass started, in ns since the epoch on this server's clock.
  returned: success
  type: int
mode:
  description: V(full) or V(incremental) (what the journal allowed); only with O(journal).
  returned: success
  type: str
journal:
  description: Why the pass was full or incremental.
  returned: success, with O(journal)
  type: str
kind:
  description: O(kind), or V(incremental) when O(kind=full) and the journal made it incremental.
  returned: success
  type: str
vanished:
  description: Some files vanished during the pass (rsync exit 24).
  returned: success
  type: bool
bytes_sent:
  description: Bytes rsync sent over the connection (what a resumed transfer still needed).
  returned: success
  type: int
literal_bytes:
  description: File data sent as such, not matched against what the receiver had (C(Literal data)).
  returned: success
  type: int
backup_dir:
  description: This pass's backup directory on the receiving side (one sub-directory per data path).
  returned: with O(backup)
  type: str
  sample: /srv/shop/.strackt-backup/shop-20261125T123456Z/20261125T130102.123456Z
backed_up:
  description: Files and links the pass replaced or deleted on the receiving side, each kept in RV(backup_dir).
  returned: with O(backup)
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.names import MOVE_ID_RE


def main():
    argument_spec = rs.transfer_argument_spec()
    argument_spec.update(
        direction=dict(type="str", default="push", choices=["push", "pull"]),
        kind=dict(type="str", default="full", choices=["full", "incremental", "final", "reverse"]),
        ssh_port=dict(type="int", default=22),
        timeout=dict(type="float"),
        idle_timeout=dict(type="float", default=rs.DEFAULT_IDLE_TIMEOUT),
        changes=dict(type="dict"),
        backup=dict(type="bool", default=False),
        move_id=dict(type="str"),
        journal=dict(type="bool", default=True),
        journal_dir=dict(type="path"),
    )
    # the transfer options are optional for other modules (freeze's released state), never here
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("direction", "push", rs.TRANSFER_OPTIONS),
                                        ("direction", "pull", rs.TRANSFER_OPTIONS),
                                        ("backup", True, ("move_id",))])
    p = module.params
    if p["idle_timeout"] < 0 or (p["timeout"] is not None and p["timeout"] <= 0):
        module.fail_json(msg="idle_timeout must be 0 or more and timeout more than 0 (seconds)")
    if p["move_id"] is not None and not MOVE_ID_RE.match(p["move_id"]):
        module.fail_json(msg="move_id %r is not a strackt.move move id (<env>-YYYYMMDDTHHMMSSZ)" % p["move_id"])
    changes = rs.changes_option(module)
    backup_to = rs.backup_root(p["env_root"], p["move_id"]) if p["backup"] else None
    # an explicit list or a backup is a repair or reverse run: the journal's passes are not
    journaled = (p["journal"] and changes is None and not backup_to and p["direction"] == "push"
                 and not module.check_mode)
    try:
        if journaled:
            journal = jr.Journal(p["journal_dir"] or os.path.join(os.path.dirname(p["key_path"]), "journal"),
                                 p["data_paths"])
            res = rs.journaled_pass(journal, p["data_paths"], p["env_root"], p["target_address"], p["key_path"],
                                    p["known_hosts_path"], ssh_port=p["ssh_port"], timeout=p["timeout"],
                                    idle_timeout=p["idle_timeout"])
        else:
            res = rs.run_pass(p["data_paths"], p["env_root"], p["target_address"], p["key_path"],
                              p["known_hosts_path"], direction=p["direction"], dry_run=module.check_mode,
                              ssh_port=p["ssh_port"], timeout=p["timeout"], changes=changes,
                              idle_timeout=p["idle_timeout"], backup_to=backup_to)
    except jr.JournalError as exc:
        module.fail_json(msg="%s pass to %s: the change journal failed: %s" % (p["kind"], p["target_address"], exc))
    except rs.RsyncError as exc:
        module.fail_json(msg="%s pass %s %s failed: %s" % (
            p["kind"], "to" if p["direction"] == "push" else "from", p["target_address"], exc),
            rc=exc.rc, stderr=exc.stderr)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    res["kind"] = "incremental" if p["kind"] == "full" and res.get("mode") == "incremental" else p["kind"]
    module.exit_json(changed=res["files_changed"] > 0, **res)


if __name__ == "__main__":
    main()
