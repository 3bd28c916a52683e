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
  - rsync exit 24 (files vanished while copying a live tree) is not an error.
  - With O(journal) (push only), a change journal on this server (C(inotifywait -m -r) as the
    transient unit C(strackt-journal-<move_id>), files in C(<key dir>/journal/)) records what
    changes in the data paths; a pass then copies only the paths recorded since the last
    successful pass (C(--files-from), deletions with C(--delete-missing-args)) and reports
    C(kind=incremental). It falls back to a full pass (and restarts the journal before it) when
    the journal could have missed something (no journal yet, the journal unit restarted or
    stopped (a reboot), an inotify queue overflow, a data path removed, a failed pass). Each
    pass's result is still checked by the manifest at the switch-over.
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
    description: Seconds one rsync may run before it is stopped and the pass fails.
    type: float
  journal:
    description: Copy only what the change journal recorded when it can vouch for it (push only; not in check mode).
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
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def main():
    argument_spec = rs.transfer_argument_spec()
    argument_spec.update(
        direction=dict(type="str", default="push", choices=["push", "pull"]),
        kind=dict(type="str", default="full", choices=["full", "incremental", "final", "reverse"]),
        ssh_port=dict(type="int", default=22),
        timeout=dict(type="float"),
        journal=dict(type="bool", default=True),
        journal_dir=dict(type="path"),
    )
    # the transfer options are optional for other modules (freeze's released state), never here
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("direction", "push", rs.TRANSFER_OPTIONS),
                                        ("direction", "pull", rs.TRANSFER_OPTIONS)])
    p = module.params
    journaled = p["journal"] and p["direction"] == "push" and not module.check_mode
    try:
        if journaled:
            journal = jr.Journal(p["journal_dir"] or os.path.join(os.path.dirname(p["key_path"]), "journal"),
                                 p["data_paths"])
            res = rs.journaled_pass(journal, p["data_paths"], p["env_root"], p["target_address"], p["key_path"],
                                    p["known_hosts_path"], ssh_port=p["ssh_port"], timeout=p["timeout"])
        else:
            res = rs.run_pass(p["data_paths"], p["env_root"], p["target_address"], p["key_path"],
                              p["known_hosts_path"], direction=p["direction"], dry_run=module.check_mode,
                              ssh_port=p["ssh_port"], timeout=p["timeout"])
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
