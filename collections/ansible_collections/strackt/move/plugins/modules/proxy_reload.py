#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxy_reload
short_description: Reload the front proxy, never inside another env's freeze
version_added: 0.3.0
description:
  - Reloads the server's front proxy (Caddy) so it reads changed sites, or starts it when it
    does not run.
  - A reload drops the requests the proxy holds. While any env on the server is frozen (its hold
    file exists, see M(strackt.move.freeze)) or its held requests may still be retried (its retry
    permission), the reload waits, at most O(wait) seconds, and fails naming those envs if they
    stay so. It takes the server's proxy lock exclusively meanwhile, so no freeze begins between
    the wait and the reload; a freeze holds that lock shared from its hold to its release.
  - Used by the roles wherever a site changes on a server other envs may be moving from or to
    (provision, finish, rollback).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  service:
    description: The proxy's systemd service.
    type: str
    default: caddy
  hold_dir:
    description: Where the freezes keep their hold and retry files (module_utils C(hold)).
    type: path
    default: /run/strackt-move/hold
  wait:
    description: Seconds to wait at most for held envs and for the proxy lock together.
    type: int
    default: 120
"""

EXAMPLES = r"""
- name: Reload Caddy on the old server
  strackt.move.proxy_reload:
  delegate_to: "{{ move.source }}"
"""

RETURN = r"""
action:
  description: C(reloaded), or C(started) when the proxy did not run.
  returned: always
  type: str
waited_s:
  description: Seconds waited for the lock and for held envs.
  returned: always
  type: float
held_envs:
  description: The envs found held (or retrying) when it began.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd, SystemdError


def reload_proxy(systemd, hold_dir, service, wait_s, check_mode=False, sleep=time.sleep, monotonic=time.monotonic):
    """Reload (or start) ``service`` once no env in ``hold_dir`` is held; the result dict.
    Raises hd.ProxyBusy or SystemdError with what is wrong."""
    start = monotonic()
    found = hd.held_envs(hold_dir)
    if check_mode:
        return dict(changed=True, action="reloaded", waited_s=0.0, held_envs=found)
    lock = hd.ProxyLock(hold_dir, sleep=sleep, monotonic=monotonic)
    lock.acquire(exclusive=True, timeout_s=wait_s)
    try:
        # a released freeze's retry permission lingers a few seconds (its transient timer)
        held = hd.held_envs(hold_dir)
        while held:
            if monotonic() - start >= wait_s:
                raise hd.ProxyBusy(
                    "%s not reloaded: %s stayed held for %d s (a freeze in progress, or one that died and left "
                    "its hold file in %s: `strackt-move status <env>`)" % (service, ", ".join(held), wait_s, hold_dir))
            sleep(0.1)
            held = hd.held_envs(hold_dir)
        action = "reloaded" if systemd.is_active(service) else "started"
        systemd.systemctl("reload" if action == "reloaded" else "start", service, check=True)
    finally:
        lock.release()
    return dict(changed=True, action=action, waited_s=round(monotonic() - start, 3), held_envs=found)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            service=dict(type="str", default="caddy"),
            hold_dir=dict(type="path", default=hd.HOLD_DIR),
            wait=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["wait"] < 0:
        module.fail_json(msg="wait must be >= 0 seconds, got %d" % p["wait"])
    systemd = Systemd(run=module.run_command, systemctl=module.get_bin_path("systemctl", required=True))
    try:
        result = reload_proxy(systemd, p["hold_dir"], p["service"], p["wait"], module.check_mode)
    except (hd.ProxyBusy, SystemdError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
