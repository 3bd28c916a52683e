#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: evacuation_plan
short_description: Place every env of a server being emptied onto target servers, by room
version_added: 0.2.0
description:
  - Given what M(strackt.move.server_facts) said of each (env, target) pair, the same facts
    preflight refuses a move on, chooses a target for every env of O(server) so that no
    filesystem or memory is counted twice. The env with the fewest targets that have room for it
    is placed first (the biggest among those), each on the target with room for it that has the
    fewest envs planned, then the most free disk left.
  - Envs that fit nowhere are listed with one reason per target (no room, already there,
    unreachable). Changes nothing; runs anywhere (usually on the control node).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
options:
  server:
    description: The server being emptied.
    type: str
    required: true
  targets:
    description: The servers the envs may go to (not O(server)).
    type: list
    elements: str
    required: true
  source_facts:
    description:
      - The registered results of M(strackt.move.server_facts) with C(measure_data) run on
        O(server) for each env (a loop's C(results)), each carrying as C(item) the result of
        M(strackt.move.env_info) for the env (its C(environment) with C(name) and C(memory_mb)).
    type: list
    elements: dict
    required: true
  target_facts:
    description:
      - The registered results of M(strackt.move.server_facts) run for each env on each target (a
        loop's C(results)), each carrying as C(item) the pair C([env, target]). An unreachable or
        failed result counts as "cannot host".
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Plan where the envs of srv1 go
  strackt.move.evacuation_plan:
    server: srv1
    targets: [srv2, srv3]
    source_facts: "{{ evacuation_source_facts.results }}"
    target_facts: "{{ evacuation_target_facts.results }}"
  register: evacuation
"""

RETURN = r"""
plan:
  description:
    - C(server), C(targets), C(complete) (every env has a target), C(placed) (C(env), C(target),
      C(data_bytes), C(memory_mb), C(disk_free_after_bytes) in placement order) and C(unplaced)
      (C(env), C(reasons)).
  returned: always
  type: dict
table:
  description: The plan as lines of a table, then one line per env that fits nowhere.
  returned: always
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.placement import (
    Candidate,
    EnvNeed,
    PlacementError,
    place,
    plan_table,
)


def _needs(results: list[dict[str, Any]]) -> list[EnvNeed]:
    try:
        return [EnvNeed(str(r["item"]["environment"]["name"]), int(r["item"]["environment"].get("memory_mb") or 0),
                        sum(int(v) for v in (r.get("data_bytes") or {}).values()))
                for r in results]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlacementError("source_facts: every result needs data_bytes and its item's environment (%s)" % exc) from None


def _candidates(results: list[dict[str, Any]]) -> list[Candidate]:
    found = []
    for result in results:
        item = result.get("item")
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise PlacementError("target_facts: every result needs its item [env, target], got %r" % (item,))
        found.append(Candidate.from_facts(str(item[0]), str(item[1]), result))
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            server=dict(type="str", required=True),
            targets=dict(type="list", elements="str", required=True),
            source_facts=dict(type="list", elements="dict", required=True),
            target_facts=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        plan = place(p["server"], list(p["targets"]), _needs(p["source_facts"]), _candidates(p["target_facts"]))
    except PlacementError as exc:
        module.fail_json(msg="cannot plan the evacuation of %s: %s" % (p["server"], exc))
    module.exit_json(changed=False, plan=plan.to_dict(), table=plan_table(plan))


if __name__ == "__main__":
    main()
