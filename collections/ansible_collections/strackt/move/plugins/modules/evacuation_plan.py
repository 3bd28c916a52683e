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
  - With O(with_database=true), an env whose PostgreSQL database runs on O(server) moves with it -
    its size (O(database_facts)) orders the placement, and the target facts must count it on the
    filesystem of the target's PostgreSQL data directory (M(strackt.move.server_facts)
    O(strackt.move.server_facts#module:extra_paths)). An env whose database on O(server) is not
    PostgreSQL moves without it, with a warning that O(server) still holds it. Databases on other
    servers are untouched.
  - Whatever an env connects to on O(server) and that stays there (its database without
    O(with_database), a database that is not PostgreSQL, its Redis) is named in C(left_behind),
    with a warning that O(server) cannot be switched off yet.
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
  with_database:
    description: Plan the envs' databases on O(server) too (C(strackt-move evacuate --with-database)).
    type: bool
    default: false
  database_facts:
    description:
      - With O(with_database), the registered results of M(strackt.move.pg_move_facts) run on
        O(server) for each env whose PostgreSQL database runs there (a loop's C(results)), each
        carrying the env's name as C(item).
    type: list
    elements: dict
    default: []
  target_database_facts:
    description:
      - With O(with_database), the registered results of M(strackt.move.pg_move_facts) run on each
        target for each of those envs (C(item) the pair C([env, target])). A failed or unreachable
        result counts as "cannot host".
    type: list
    elements: dict
    default: []
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
      C(data_bytes), C(memory_mb), C(disk_free_after_bytes), C(database_bytes), C(with_database)
      (its database moves with it), C(database_stays) (its database stays on O(server)),
      C(left_behind) (what it connects to on O(server) that stays there - its database unless it
      moves along, its Redis - as the operator reads it) in placement order), C(unplaced) (C(env),
      C(reasons)), C(with_database) and C(warnings) (one sentence per env that leaves something
      on O(server), which then cannot be switched off yet).
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
    DATABASE_MOVES,
    NO_DATABASE,
    Candidate,
    EnvNeed,
    PlacementError,
    database_fate,
    place,
    plan_table,
    services_left_on,
)


def _needs(results: list[dict[str, Any]], server: str, with_database: bool,
           database_facts: dict[str, dict[str, Any]]) -> list[EnvNeed]:
    needs = []
    for r in results:
        try:
            environment = r["item"]["environment"]
            env = str(environment["name"])
            need = EnvNeed(env, int(environment.get("memory_mb") or 0),
                           sum(int(v) for v in (r.get("data_bytes") or {}).values()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlacementError("source_facts: every result needs data_bytes and its item's environment (%s)" % exc) from None
        fate = database_fate(environment.get("database"), server) if with_database else NO_DATABASE
        size = 0
        if fate == DATABASE_MOVES:
            facts = database_facts.get(env)
            if facts is None:
                raise PlacementError("database_facts: no pg_move_facts of %s's database on %s" % (env, server))
            if not facts.get("database_exists"):
                raise PlacementError("%s's database %s does not exist on %s (pg_move_facts): fix database.name "
                                     "or evacuate without the databases" % (env, environment["database"].get("name"), server))
            size = int(facts.get("database_size") or 0)
        database_to = str(environment["database"].get("move_to") or "") if fate == DATABASE_MOVES else ""
        needs.append(EnvNeed(need.env, need.memory_mb, need.data_bytes, database_bytes=size, database=fate,
                             database_to=database_to,
                             left_behind=services_left_on(environment, server, with_database)))
    return needs


def _by_item(results: list[dict[str, Any]], what: str, pair: bool) -> dict[Any, dict[str, Any]]:
    found: dict[Any, dict[str, Any]] = {}
    for result in results:
        item = result.get("item")
        if pair and (not isinstance(item, (list, tuple)) or len(item) != 2):
            raise PlacementError("%s: every result needs its item [env, target], got %r" % (what, item))
        if not pair and not isinstance(item, str):
            raise PlacementError("%s: every result needs its env's name as item, got %r" % (what, item))
        found[(str(item[0]), str(item[1])) if pair else item] = result
    return found


def _candidates(results: list[dict[str, Any]], database_results: list[dict[str, Any]]) -> list[Candidate]:
    databases = _by_item(database_results, "target_database_facts", pair=True)
    return [Candidate.from_facts(env, target, result, databases.get((env, target)))
            for (env, target), result in _by_item(results, "target_facts", pair=True).items()]


def plan_evacuation(p: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The plan and its table from the module's parameters."""
    database_facts = _by_item(p["database_facts"], "database_facts", pair=False)
    needs = _needs(p["source_facts"], p["server"], p["with_database"], database_facts)
    unasked = sorted(set(database_facts) - {n.env for n in needs if n.database == DATABASE_MOVES})
    if unasked:
        raise PlacementError("database_facts name %s, whose database does not move with the evacuation of %s "
                             "(only a PostgreSQL database running there does)" % (", ".join(unasked), p["server"]))
    plan = place(p["server"], list(p["targets"]), needs,
                 _candidates(p["target_facts"], p["target_database_facts"]), with_database=p["with_database"])
    return plan.to_dict(), plan_table(plan)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            server=dict(type="str", required=True),
            targets=dict(type="list", elements="str", required=True),
            source_facts=dict(type="list", elements="dict", required=True),
            target_facts=dict(type="list", elements="dict", required=True),
            with_database=dict(type="bool", default=False),
            database_facts=dict(type="list", elements="dict", default=[]),
            target_database_facts=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        plan, table = plan_evacuation(p)
    except PlacementError as exc:
        module.fail_json(msg="cannot plan the evacuation of %s: %s" % (p["server"], exc))
    module.exit_json(changed=False, plan=plan, table=table)


if __name__ == "__main__":
    main()
