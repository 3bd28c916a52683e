#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_move_plan
short_description: Decide whether a move carries the env's PostgreSQL database, and where to
version_added: 0.2.0
description:
  - The opt-in rule of the database move, in one place (C(plugins/module_utils/pg_preflight.py)
    C(database_plan)). The per-move wish O(move_database) wins over the env's C(database.move)
    (default false); the new home is the move's target.
  - Refuses, saying what to do, a database that is not PostgreSQL, one that does not run on the
    env's server, or a C(database.move_to) other than the target.
  - Changes nothing; reads nothing but its arguments. Runs on the control node (its action plugin
    runs it in Ansible's worker).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  database:
    description: The env's C(database) as M(strackt.move.env_info) returns it (none - the env has none).
    type: dict
  env_server:
    description: The server the env runs on (the move's source).
    type: str
    required: true
  target:
    description: The move's target server.
    type: str
    required: true
  move_database:
    description: The move's wish (C(strackt-move start --with-database), C(-e move_database=true)); none leaves it to the env.
    type: bool
"""

EXAMPLES = r"""
- name: Decide whether the database moves
  strackt.move.pg_move_plan:
    env: shop
    database: "{{ shop_def.database }}"
    env_server: srv1
    target: srv2
    move_database: true
  register: plan
"""

RETURN = r"""
move:
  description: Whether the move carries the database.
  returned: success
  type: bool
server:
  description: The database's new home (the target), or none.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.environment import environment_argument_spec
from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed, run_as_module
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError, validate_env_name
from ansible_collections.strackt.move.plugins.module_utils.pg_move import PgMoveError
from ansible_collections.strackt.move.plugins.module_utils.pg_preflight import database_plan


def argument_spec() -> dict:
    """The options (shared with the action plugin of the same name)."""
    spec = environment_argument_spec()
    spec.update(
        database=dict(type="dict"),
        env_server=dict(type="str", required=True),
        target=dict(type="str", required=True),
        move_database=dict(type="bool"),
    )
    return spec


def work(params: dict, check_mode: bool) -> dict:
    del check_mode  # changes nothing either way
    try:
        env = validate_env_name(params["env"])
    except EnvNameError as exc:
        raise TaskFailed(str(exc)) from None
    try:
        plan = database_plan(params["database"], params["env_server"], params["target"], params["move_database"])
    except PgMoveError as exc:
        raise TaskFailed("%s: the database cannot move with this move - %s. Nothing was changed." % (env, exc)) from None
    return dict(changed=False, move=plan.move, server=plan.new_server)


def main() -> None:
    run_as_module(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), work)


if __name__ == "__main__":
    main()
