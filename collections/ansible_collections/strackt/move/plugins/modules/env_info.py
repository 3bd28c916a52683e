#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_info
short_description: Validate an environment definition and return it with its derived names
version_added: 0.1.0
description:
  - Looks O(env) up in O(environments) (the inventory's C(strackt_environments)), validates it
    and returns it normalised, with the names strackt.move derives from it (unit, env file,
    site file, app directory) and the settings of the front proxy's hold switch (C(hold_dir),
    C(hold_port), C(hold_check_interval)) that the provision templates and the freeze share.
  - Fails naming every field that is wrong and what to do about it.
  - Changes nothing; reads nothing but its arguments, so it can run anywhere.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  environments:
    description:
      - The whole C(strackt_environments) mapping (env name to definition).
    type: dict
    required: true
  servers:
    description:
      - Inventory host names an env may be attached to (usually C(groups['servers'])).
      - When given, C(server) and C(database.server) must be one of them.
    type: list
    elements: str
  require_attached:
    description:
      - Fail when the env is not attached to a server (C(server) empty).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Validate the env
  strackt.move.env_info:
    env: shop
    environments: "{{ strackt_environments }}"
    servers: "{{ groups['servers'] }}"
    require_attached: true
  register: shop_env

- name: Show where it runs
  ansible.builtin.debug:
    msg: "{{ shop_env.environment.server }} {{ shop_env.environment.unit_name }}"
"""

RETURN = r"""
environment:
  description: The validated definition, normalised, plus derived names.
  returned: success
  type: dict
  sample:
    name: shop
    server: srv1
    attached: true
    repo: git://10.77.0.1/shop.git
    branch: main
    root: /srv/shop
    app_dir: /srv/shop/app
    revision_file: /srv/shop/app/REVISION
    data_paths: [/srv/shop/data]
    data_dir: /srv/shop/data
    domains: [shop.example.test]
    app_port: 8001
    user: shop
    uid: 1100
    memory_mb: 256
    disk_headroom_mb: 64
    framework: django
    database: {server: srv1, name: shop, user: shop, port: 5432}
    unit_name: strackt-env-shop.service
    unit_file: /etc/systemd/system/strackt-env-shop.service
    env_file: /etc/strackt/envs/shop.env
    site_file: /etc/caddy/sites/shop.caddy
    hold_dir: /run/strackt-move/hold
    hold_port: 2099
    hold_check_interval: 50ms
"""

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    EnvironmentDefinitionError,
    env_module,
    find_environment,
)


def main() -> None:
    module, name = env_module(
        dict(
            environments=dict(type="dict", required=True),
            servers=dict(type="list", elements="str"),
            require_attached=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    servers = module.params["servers"]
    try:
        env = find_environment(
            name,
            module.params["environments"],
            frozenset(servers) if servers is not None else None,
        )
    except EnvironmentDefinitionError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems)
    if module.params["require_attached"] and not env.attached:
        module.fail_json(
            msg="env %r is not attached to a server (strackt_environments.%s.server is empty): "
            "deploy it to a server first" % (env.name, env.name)
        )
    module.exit_json(changed=False, environment=env.to_dict())


if __name__ == "__main__":
    main()
