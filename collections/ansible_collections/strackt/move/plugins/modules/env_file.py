#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_file
short_description: Write the env file every process of an environment reads
version_added: 0.2.0
description:
  - Writes C(/etc/strackt/envs/<env>.env) (mode 0640, owner root, group the env's user), the
    C(EnvironmentFile=) of every unit of the env, with exactly these variables -
    C(DATA_DIR) (the first data path); C(ALLOWED_HOSTS) (the domains, comma-separated);
    C(DATABASE_URL) (C(postgresql://user:password@host:port/name) or C(mysql://...) for
    MariaDB) when the env has a C(database); C(REDIS_URL) (C(redis://:password@host:port/db)) when it has
    C(redis); every variable of C(env); every secret named in C(secrets) with its value.
    C(PORT) is set in the web unit. Passwords are percent-encoded in the URLs.
  - The host of a connected service is C(127.0.0.1) on the service's own server, else its
    address from O(addresses).
  - Fails, changing nothing, when a secret the definition names has no value in O(secrets).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  environments:
    description: The whole C(strackt_environments) mapping.
    type: dict
    required: true
  secrets:
    description: The env's secrets, C(strackt_env_secrets[env]) (name to value).
    type: dict
    default: {}
  server:
    description: The inventory name of the server this runs on (where the env runs).
    type: str
    required: true
  addresses:
    description: Inventory server name to address, for the servers of the connected services.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Write the env file
  strackt.move.env_file:
    env: notes
    environments: "{{ strackt_environments }}"
    secrets: "{{ strackt_env_secrets.notes }}"
    server: "{{ inventory_hostname }}"
    addresses: "{{ dict(groups['servers'] | zip(groups['servers'] | map('extract', hostvars, 'ansible_host'))) }}"
  no_log: true
"""

RETURN = r"""
path:
  description: The env file.
  returned: success
  type: str
  sample: /etc/strackt/envs/notes.env
variables:
  description: The names of the variables written (not their values).
  returned: success
  type: list
  elements: str
  sample: [DATA_DIR, ALLOWED_HOSTS, DATABASE_URL, NOTES_SECRET_KEY]
"""

import grp
import os

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    ENV_FILE_DIR,
    definition_module,
    load_environment,
)
from ansible_collections.strackt.move.plugins.module_utils.env_vars import (
    MissingSecret,
    process_variables,
    render_env_file,
)
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write


def main() -> None:
    module, name = definition_module(
        dict(
            secrets=dict(type="dict", default={}, no_log=True),
            server=dict(type="str", required=True),
            addresses=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    env = load_environment(module, name, secret_names=list(p["secrets"]))
    try:
        addresses = {str(k): str(v) for k, v in p["addresses"].items()}
        text = render_env_file(env, process_variables(env, p["secrets"], p["server"], addresses))
        variables = [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    except (MissingSecret, ValueError) as exc:
        module.fail_json(msg=str(exc))
    try:
        gid = grp.getgrnam(env.user).gr_gid
    except KeyError:
        module.fail_json(msg="group %r of env %r does not exist here: create the env's user first (provision)" % (env.user, env.name))
    try:
        with open(env.env_file, encoding="utf-8") as handle:
            before = handle.read()
        info = os.stat(env.env_file)
        same_mode = (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o640, 0, gid)
    except FileNotFoundError:
        before, same_mode = None, False
    changed = before != text or not same_mode
    if changed and not module.check_mode:
        os.makedirs(ENV_FILE_DIR, 0o755, exist_ok=True)
        atomic_write(env.env_file, text, mode=0o640, owner=(0, gid))
    module.exit_json(changed=changed, path=env.env_file, variables=variables)


if __name__ == "__main__":
    main()
