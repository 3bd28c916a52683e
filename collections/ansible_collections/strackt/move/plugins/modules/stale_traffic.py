#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stale_traffic
short_description: Count the requests the old server still takes after a switch-over
version_added: 0.3.0
description:
  - Runs on the old server of a switched move. Every request that reaches it after the release
    came with an old DNS answer (a resolver that keeps the old address past the TTL, a client
    that resolved once); its front proxy forwards it to the new server and logs it in the env
    site's JSON access log (C(/var/log/caddy/strackt-<env>.access.log), rolled by Caddy).
  - Reads that log and the files Caddy rolled it into since O(since_ns) and returns the total,
    the last request seen and the requests per minute over the last O(minutes) minutes.
    Requests from loopback (checks run on the server itself) are not counted.
  - The finish decides from it (module_utils C(forwarding)) and the move record keeps the latest
    measurement (C(move_record action=set_stale)).
  - Changes nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  since_ns:
    description: Count requests from this instant on (ns since the epoch; the release of the move's freeze).
    type: int
    required: true
  access_log:
    description: The env site's access log; default C(/var/log/caddy/strackt-<env>.access.log).
    type: path
  minutes:
    description: Count requests per minute over this many last minutes.
    type: int
    default: 15
  site_file:
    description:
      - The env's site file on this server. Caddy creates the access log at the first request it
        logs, so when the log does not exist but this site logs to it, no request came (C(log_found)
        true, none counted). Without it, a missing log cannot be told from a site that logs nothing.
    type: path
"""

EXAMPLES = r"""
- name: Measure what the old server still takes
  strackt.move.stale_traffic:
    env: shop
    since_ns: "{{ move.freeze.released_at_ns }}"
    site_file: /etc/caddy/sites/shop.caddy
  delegate_to: "{{ move.source }}"
  register: stale
"""

RETURN = r"""
measured_at:
  description: When it was measured (this server's clock, UTC).
  returned: always
  type: str
  sample: "2026-11-30T10:02:00Z"
since:
  description: O(since_ns) as a timestamp.
  returned: always
  type: str
total:
  description: Requests taken since O(since_ns).
  returned: always
  type: int
last_seen:
  description: When the last of them came (null when none came).
  returned: always
  type: str
per_minute:
  description: Requests in each of the last O(minutes) minutes, oldest first (the last entry is the minute up to now).
  returned: always
  type: list
  elements: int
log_found:
  description:
    - Whether the access log exists, or O(site_file) logs to it (false - the site logs nothing,
      the tail cannot be measured).
  returned: always
  type: bool
skipped_lines:
  description: Lines that were not an access log entry (cut by a roll, another logger).
  returned: always
  type: int
access_log:
  description: The log read.
  returned: always
  type: str
"""

import time

from ansible_collections.strackt.move.plugins.module_utils import stale_traffic
from ansible_collections.strackt.move.plugins.module_utils.environment import env_module


def main():
    options = dict(
        since_ns=dict(type="int", required=True),
        access_log=dict(type="path"),
        minutes=dict(type="int", default=stale_traffic.DEFAULT_MINUTES),
        site_file=dict(type="path"),
    )
    module, env = env_module(options, supports_check_mode=True)
    p = module.params
    if p["since_ns"] < 0:
        module.fail_json(msg="since_ns must be >= 0 (ns since the epoch: the release of the move's freeze)")
    if not 1 <= p["minutes"] <= 1440:
        module.fail_json(msg="minutes must be between 1 and 1440, got %d" % p["minutes"])
    path = p["access_log"] or stale_traffic.access_log_path(env)
    try:
        measured = stale_traffic.measure(path, p["since_ns"] / 1e9, time.time(), p["minutes"],
                                         configured=stale_traffic.site_logs_to(p["site_file"], path))
    except OSError as exc:
        module.fail_json(msg="cannot read the access log %s: %s" % (path, exc))
    module.exit_json(changed=False, access_log=path, **measured.to_dict())


if __name__ == "__main__":
    main()
