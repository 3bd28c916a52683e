#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_switch
short_description: Hand an env's database over to its new server, undo that, or bring it back
version_added: 0.2.0
description:
  - Runs on the old server (the database's home before the move), with the app stopped; it reaches
    the new server as the move's role. Every action is safe to run again after a crash at any
    point and reaches the same end; a refusal changes nothing.
  - O(action=switch) (inside the freeze, after the app stopped) - refuses while another client
    session uses the database here, while the schemas of both sides differ (DDL is not
    replicated) or while the initial copy runs; then waits until the new server has applied
    everything written here (this server's C(pg_current_wal_lsn()) against the slot's
    C(confirmed_flush_lsn)) up to O(timeout_s); copies every sequence exactly (C(setval) with
    C(last_value) and C(is_called), read back); stops the forward path (the move's role here
    loses LOGIN, its WAL sender ends); creates the way back (subscription C(strackt_<id>_back)
    here on the new server's publication, C(copy_data=false)), so the old database follows the
    new one until finish; then drops the forward slot. The way back's subscription is the commit
    point. Returns the duration of each part.
  - O(action=undo) (the freeze failed before the app ran on the new server) - ends the way back
    and lets the new server follow this one again. Refuses once the new server sent changes back.
  - O(action=back) (rollback after the switch, the app stopped on the new server) - waits until this
    server has applied everything the new one wrote, copies every sequence back, ends the way back.
    Then M(strackt.move.pg_move_cleanup) on both servers, with O(strackt.move.pg_move_cleanup#module:drop_database=true) on the new one.
  - O(action=catch_up) (rollback after the switch, before the new server holds its requests; its app
    still runs) - checks that both schemas agree and waits until this server has applied what the new
    one wrote so far, so O(action=back) inside the hold only waits for its last moments. Changes nothing.
  - After O(action=switch) the new server still holds the stopped forward subscription; the next
    M(strackt.move.pg_move_cleanup) there removes it (finish, or rollback).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.environment
  - strackt.move.pg_move
  - strackt.move.pg_move.peer
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [switch, undo, back, catch_up]
  timeout_s:
    description:
      - Deadline in seconds for the checks and the wait until the other side has applied everything;
        past it the module refuses and changes nothing.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    details: O(action=switch) and O(action=back) make every check and wait, then stop before changing anything.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Switch the database over (inside the freeze, the app stopped on srv1)
  strackt.move.pg_move_switch:
    env: shop
    action: switch
    move_id: "{{ move.move_id }}"
    database: shop
    peer_address: "{{ hostvars['srv2'].ansible_host }}"
    password: "{{ db_move_password }}"
  delegate_to: srv1
  register: db_switch

- name: Roll back after the switch (the app stopped on srv2)
  strackt.move.pg_move_switch:
    env: shop
    action: back
    move_id: "{{ move.move_id }}"
    database: shop
    peer_address: "{{ hostvars['srv2'].ansible_host }}"
    password: "{{ db_move_password }}"
  delegate_to: srv1
"""

RETURN = r"""
state:
  description: Where the database is served from afterwards - C(switched) (the new server), C(not_switched) or C(back) (the old one).
  returned: success
  type: str
already:
  description: True when an earlier run had done it all (nothing was left to do).
  returned: success
  type: bool
checked_only:
  description: True in check mode (every check and wait was made, nothing changed).
  returned: success
  type: bool
target_lsn:
  description: The WAL position the other side had to reach (all writes before the switch).
  returned: success
  type: str
timings:
  description:
    - Seconds per part, in order - for switch C(connect), C(prepare), C(sessions), C(checks), C(wait_applied),
      C(sequences), C(stop_forward), C(way_back), C(drop_forward_slot); for back C(connect), C(sessions), C(checks),
      C(wait_applied), C(sequences), C(end_way_back); for catch_up C(connect), C(checks), C(wait_applied).
  returned: success
  type: dict
  sample: {connect: 0.021, prepare: 0.002, sessions: 0.001, checks: 0.012, wait_applied: 0.004, sequences: 0.006}
total_s:
  description: Seconds the whole action took (the database's share of the freeze).
  returned: success
  type: float
sequences:
  description: Every sequence copied, with C(name), C(last_value) and C(is_called).
  returned: success
  type: list
  elements: dict
notes:
  description: What a rerun found or left for another step.
  returned: success
  type: list
  elements: str
"""

import time

from ansible_collections.strackt.move.plugins.module_utils import pg_module, pg_session, pg_switch
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg


def main() -> None:
    module, _env = pg_module.pg_module(
        dict(
            action=dict(type="str", required=True, choices=["switch", "undo", "back", "catch_up"]),
            timeout_s=dict(type="float", default=10.0),
        ),
        peer=True,
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["timeout_s"] <= 3600:
        module.fail_json(msg="timeout_s must be more than 0 and at most 3600, got %s" % p["timeout_s"])
    names = pg.names_for(p["move_id"])

    def work() -> dict:
        started = time.monotonic()
        with pg_session.connect_local(p["database"], p["port"]) as old, \
                pg_session.connect_remote(p["peer_address"], p["peer_port"], p["database"], names.role,
                                          p["password"], "the new server") as new:
            connected = time.monotonic() - started
            sides = pg_switch.Sides(old=old, new=new, old_name="this server",
                                    new_name="the new server (%s)" % p["peer_address"], database=p["database"])
            if p["action"] == "switch":
                back_connection = pg.conninfo(p["peer_address"], p["peer_port"], p["database"], names.role,
                                              p["password"], names.back)
                report = pg_switch.switch(sides, names, back_connection, timeout_s=p["timeout_s"],
                                          check_only=module.check_mode)
            elif p["action"] == "undo":
                if module.check_mode:
                    return dict(changed=True, state="not_switched", checked_only=True, already=False, timings={},
                                total_s=0.0, sequences=[], notes=["undo makes no checks of its own in check mode"],
                                target_lsn=None)
                report = pg_switch.undo(sides, names)
            elif p["action"] == "catch_up":
                report = pg_switch.catch_up(sides, names, timeout_s=p["timeout_s"])
            else:
                report = pg_switch.back(sides, names, timeout_s=p["timeout_s"], check_only=module.check_mode)
        result = report.to_dict()
        result["timings"] = dict(connect=round(connected, 4), **result["timings"])
        result["total_s"] = round(time.monotonic() - started, 4)
        result["changed"] = result["changed"] or (module.check_mode and not result["already"])
        result.pop("action")
        return result

    pg_module.run(module, work)


if __name__ == "__main__":
    main()
