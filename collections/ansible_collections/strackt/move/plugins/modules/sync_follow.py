#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sync_follow
short_description: Stream an env's changes to the target while the move waits for confirmation
version_added: 0.3.0
description:
  - Runs on the source. O(state=started) starts the follower, the transient unit
    C(strackt-follow-<move_id>). Every O(interval) seconds it looks at the move's change journal
    (the one the sync passes of M(strackt.move.rsync_pass) keep) and, when anything changed since the
    last pass, runs an incremental pass to the target over one kept-open ssh connection with the
    move's key. The target then lags the source by about a second, not by the sync loop's interval,
    and the freeze's final pass carries only the last instant.
  - Running already, it changes nothing. It refuses once the switch-over released the traffic to
    the target (the freeze's marker); nothing may push the source over the target after that.
  - O(state=stopped) stops the follower and waits for the pass it is running; stopped already, it
    changes nothing. M(strackt.move.freeze) stops it too, before anything else, so no pass of it
    reaches into the freeze, whoever runs the switch-over.
  - O(state=status) reads its figures.
  - Its passes, the sync passes and the freeze's final pass take the journal's pass lock, one at a time.
  - O(key_path) and O(known_hosts_path) default to where M(strackt.move.move_key) keeps them,
    C(<key_dir>/<move_id>/id_ed25519) and C(known_hosts).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.transfer
options:
  move_id:
    description: The move (names the unit; its files are in C(<key_dir>/<move_id>/follow)).
    type: str
    required: true
  key_dir:
    description: Directory of the per-move files on this server.
    type: path
    default: /root/.strackt-move
  ssh_port:
    description: ssh port of the target.
    type: int
    default: 22
  interval:
    description: Seconds between two looks at the journal (a pass runs only when it recorded something).
    type: float
    default: 0.25
  idle_timeout:
    description: rsync's C(--timeout) of each pass (a hung link ends the pass; the next one goes on).
    type: int
    default: 60
  state:
    description: What to do.
    type: str
    choices: [started, stopped, status]
    default: started
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Keep the target current while the move waits
  strackt.move.sync_follow:
    move_id: shop-20261125T123456Z
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    target_address: 10.77.0.12
  delegate_to: srv1

- name: Stop it (the freeze does this by itself)
  strackt.move.sync_follow:
    move_id: shop-20261125T123456Z
    state: stopped
  delegate_to: srv1
"""

RETURN = r"""
unit:
  description: The follower's unit.
  returned: always
  type: str
  sample: strackt-follow-shop-20261125T123456Z.service
running:
  description: Whether the follower runs now.
  returned: always
  type: bool
follow:
  description:
    - Its figures, from C(<key_dir>/<move_id>/follow/status.json) (empty before its first start) -
      C(passes), C(files_copied), C(bytes_sent), C(full_passes), C(last_pass_at), C(last_pass_s),
      C(failures) (in all), C(failing) (in a row now), C(last_error), C(started_at), C(ended_at),
      C(state) (running, stopped, or released when it ended by itself at the freeze's marker).
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils import follower as fl
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.names import source_key_paths
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd, SystemdError


def main():
    spec = rs.transfer_argument_spec()
    spec.update(
        move_id=dict(type="str", required=True),
        key_dir=dict(type="path", default="/root/.strackt-move"),
        ssh_port=dict(type="int", default=22),
        interval=dict(type="float", default=fl.DEFAULT_INTERVAL_S),
        idle_timeout=dict(type="int", default=60),
        state=dict(type="str", default="started", choices=["started", "stopped", "status"]),
    )
    # the key and the pinned host key default to where move_key keeps them
    needed = tuple(o for o in rs.TRANSFER_OPTIONS if o not in ("key_path", "known_hosts_path"))
    module = AnsibleModule(argument_spec=spec, required_if=[("state", "started", needed)], supports_check_mode=True)
    p = module.params
    move_id = p["move_id"]
    if "/" in move_id or move_id in ("", ".", ".."):
        module.fail_json(msg="move_id %r is not a move id" % move_id)
    if p["interval"] <= 0:
        module.fail_json(msg="interval must be more than 0 seconds, got %s" % p["interval"])
    key_path, known_hosts_path = source_key_paths(p["key_dir"], move_id)
    systemd = Systemd(run=module.run_command, systemctl=module.get_bin_path("systemctl", required=True),
                      systemd_run=module.get_bin_path("systemd-run", required=True),
                      timeout=module.get_bin_path("timeout", required=True))
    settings = fl.FollowSettings(
        move_id=move_id, move_dir=os.path.join(p["key_dir"], move_id), env_root=p["env_root"] or "/",
        data_paths=tuple(p["data_paths"] or ()), target_address=p["target_address"] or "",
        key_path=p["key_path"] or key_path, known_hosts_path=p["known_hosts_path"] or known_hosts_path, ssh_port=p["ssh_port"],
        interval_s=p["interval"], idle_timeout=p["idle_timeout"])
    follower = fl.Follower(settings, systemd)
    running = follower.running()
    try:
        if p["state"] == "status":
            changed = False
        elif p["state"] == "started":
            missing = [d for d in settings.data_paths if not os.path.isdir(d)]
            if missing:
                module.fail_json(msg="data path(s) %s missing on this server: nothing to follow" % ", ".join(missing))
            if not os.path.isfile(settings.key_path):
                module.fail_json(msg="the move's key %s is not on this server: run the sync stage first" % settings.key_path)
            if module.check_mode:
                if os.path.exists(settings.released_marker):
                    raise fl.FollowError("the switch-over of %s released the traffic already" % move_id)
                changed = not running
            else:
                changed = follower.start()
        elif module.check_mode:
            changed = running
        else:
            changed = follower.stop()
    except fl.FollowError as exc:
        module.fail_json(msg=str(exc), unit=settings.unit, running=follower.running(), follow=follower.status())
    except (SystemdError, OSError) as exc:
        module.fail_json(msg="the follower %s of %s: %s" % (settings.unit, move_id, exc), unit=settings.unit)
    status = follower.status()
    module.exit_json(changed=changed, unit=settings.unit, running=status.pop("running"),
                     follow={k: v for k, v in status.items() if k != "unit"})


if __name__ == "__main__":
    main()
