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
  - Looks O(env) up in O(environments) (the inventory's C(strackt_environments)), validates it,
    fills in its C(stack) preset's defaults and returns it normalised, with the names strackt.move
    derives from it (units, env file, site file, closed file, app directory) and the settings of
    the front proxy's hold switch (C(hold_dir), C(hold_port), C(hold_check_interval)) that the
    provision templates and the freeze share.
  - Fails naming every field that is wrong and what to do about it. A definition of the first,
    Django-only kind (C(framework), C(app_port)) is refused with how to rewrite it.
  - Changes nothing; reads nothing but its arguments, so it can run anywhere.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  environments:
    description:
      - The whole C(strackt_environments) mapping (env name to definition). A definition says what
        the app needs, not what it is written in. Its keys -
      - C(server) - the inventory host the env is attached to (empty - none); strackt.move rewrites it
        at switch-over and rollback.
      - C(repo), C(branch) - the git repository (C(git://), C(https://), C(ssh://), C(file://) or
        C(user@host:path)) and branch deployed into C(<root>/app) (deploy writes the commit to
        C(<root>/app/REVISION)).
      - C(root) - the env's own directory (not a system directory); C(data_paths) - non-empty list of
        absolute paths under C(root), not inside C(<root>/app) - what a move carries.
      - C(domains) - host names the env serves (each env its own).
      - C(user), C(uid) (1000-59999) - the system user every process runs as; C(memory_mb),
        C(disk_headroom_mb) - what a target needs free.
      - C(stack) - a preset that fills C(processes), C(release), C(migrations_check), C(health.path)
        and C(packages) where the definition leaves them out - one of C(django), C(rails),
        C(laravel), C(flask-alembic), C(node), C(generic) (default, no defaults). Each field given
        in the definition wins (C(processes) entries are merged by name).
      - C(port) (1024-65535) - the web process listens on C(127.0.0.1:$PORT); each env its own.
      - C(processes) - process name (lower-case letters, digits, C(-)) to shell command line, as in a
        Procfile; C(web) is required and gets C($PORT), the others are workers. Each becomes
        C(strackt-env-<env>-<name>.service), part of C(strackt-env-<env>.target).
      - C(schedule) - name to C({command, every}) (C(every) - a systemd time span such as C(30s),
        C(10min), C(1h)); each becomes C(strackt-env-<env>-<name>.timer) and its C(.service).
      - C(release) - command run on deploy (migrations); C(migrations_check) - command whose exit 0
        means nothing is pending (any other exit refuses a move, showing its output).
      - C(health) - C({path, status, timeout}) (defaults C(/) or the preset's path, 200, 5) - what
        a healthy env answers through the front proxy (M(strackt.move.health)).
      - C(env) - plain variables (name to one-line value); C(secrets) - names of secrets, each
        looked up in C(strackt_env_secrets.<env>) and given to the processes under that name.
        Neither may use a built-in name (C(PORT), C(DATA_DIR), C(DATABASE_URL), C(REDIS_URL),
        C(ALLOWED_HOSTS)).
      - C(packages) - Debian packages the env needs on a server (provision installs them).
      - C(database) - optional connected database, staying where it is during a move -
        C(engine) (C(postgresql) (default) or C(mariadb)), C(server), C(name), C(user), C(port)
        (default 5432 or 3306), C(password_secret) (the secret holding the password). The processes
        get C(DATABASE_URL). C(move) (default false; PostgreSQL only) - a move carries the database
        to the move's target (or C(move_to)) by logical replication, switched inside the freeze.
      - C(redis) - optional connected Redis - C(server), C(port) (6379), C(db) (0),
        C(password_secret), C(nft_allow_set) (an nftables set C(<family> <table> <set>) on the Redis
        server that lists the addresses let through; strackt.move adds a server before the env
        starts there). The processes get C(REDIS_URL).
      - C(freeze_stop) - how the freeze stops the env's processes - C(graceful) (default, systemd's
        stop, each process's own shutdown) or C(kill) (SIGKILL once no request is in flight; only
        for an app that answers a write once it is durable).
    type: dict
    required: true
  servers:
    description:
      - Inventory host names an env may be attached to (usually C(groups['servers'])).
      - When given, C(server), C(database.server) and C(redis.server) must be one of them.
    type: list
    elements: str
  secret_names:
    description:
      - The names defined in C(strackt_env_secrets.<env>) (not their values).
      - When given, every secret the definition names (C(secrets), C(database.password_secret),
        C(redis.password_secret)) must be one of them.
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
    env: notes
    environments: "{{ strackt_environments }}"
    servers: "{{ groups['servers'] }}"
    secret_names: "{{ strackt_env_secrets.notes.keys() | list }}"
    require_attached: true
  register: notes_env

- name: Show where it runs
  ansible.builtin.debug:
    msg: "{{ notes_env.environment.server }} {{ notes_env.environment.target_unit }}"
"""

RETURN = r"""
environment:
  description:
    - The validated definition with its preset applied, plus derived names - C(target_unit),
      C(web_unit), C(process_units) (web first), C(timer_units), C(job_units), C(units) (all, in stop order), C(unit_files),
      C(env_file), C(site_file), C(closed_dir), C(closed_file), C(backup_root), C(app_dir),
      C(revision_file), C(data_dir), C(data_paths_rel), C(retained_paths) (what a move leaves on the old
      server - the app dir and the data paths), C(retention_s) (how long, from C(retention), default 7 days),
      C(freeze_stop) (V(graceful) by default),
      and the hold switch settings.
  returned: success
  type: dict
  sample:
    name: notes
    server: srv1
    attached: true
    repo: git://10.77.0.1/notes.git
    branch: main
    root: /srv/notes
    app_dir: /srv/notes/app
    revision_file: /srv/notes/app/REVISION
    data_paths: [/srv/notes/data]
    data_paths_rel: [data]
    data_dir: /srv/notes/data
    domains: [notes.example.test]
    user: notes
    uid: 1101
    memory_mb: 256
    disk_headroom_mb: 64
    stack: flask-alembic
    port: 8002
    processes: {web: "gunicorn --bind 127.0.0.1:$PORT notes.app:app", worker: python3 -m notes.worker}
    schedule: {cull-cache: {command: python3 -m notes.cull, every: 30s}}
    release: alembic upgrade head
    migrations_check: python3 -m notes.migrations_check
    health: {path: /up, status: 200, timeout: 5}
    env: {NOTES_CACHE_TTL: "20"}
    secrets: [NOTES_SECRET_KEY]
    packages: [python3-flask, gunicorn]
    database: {engine: mariadb, server: srv1, name: notes, user: notes, port: 3306, password_secret: NOTES_DB_PASSWORD}
    redis: null
    target_unit: strackt-env-notes.target
    web_unit: strackt-env-notes-web.service
    process_units: [strackt-env-notes-web.service, strackt-env-notes-worker.service]
    timer_units: [strackt-env-notes-cull-cache.timer]
    job_units: [strackt-env-notes-cull-cache.service]
    unit_files: [/etc/systemd/system/strackt-env-notes.target, /etc/systemd/system/strackt-env-notes-web.service]
    env_file: /etc/strackt/envs/notes.env
    site_file: /etc/caddy/sites/notes.caddy
    closed_dir: /var/lib/strackt-move/closed
    closed_file: /var/lib/strackt-move/closed/notes
    backup_root: /srv/notes/.strackt-backup
    retained_paths: [/srv/notes/app, /srv/notes/data]
    retention_s: 604800
    freeze_stop: graceful
    hold_dir: /run/strackt-move/hold
    hold_port: 2099
    hold_check_interval: 50ms
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    EnvironmentDefinitionError, environment_argument_spec, find_environment)
from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed, run_as_module


def argument_spec() -> dict:
    """The options (shared with the action plugin of the same name)."""
    spec = environment_argument_spec()
    spec.update(
        environments=dict(type="dict", required=True),
        servers=dict(type="list", elements="str"),
        secret_names=dict(type="list", elements="str", no_log=False),
        require_attached=dict(type="bool", default=False),
    )
    return spec


def work(params: dict, check_mode: bool) -> dict:
    """The env's normalised definition (raises TaskFailed naming every problem)."""
    del check_mode  # changes nothing either way
    servers, secret_names = params["servers"], params["secret_names"]
    try:
        env = find_environment(params["env"], params["environments"],
                               frozenset(servers) if servers is not None else None, secret_names)
    except EnvironmentDefinitionError as exc:
        raise TaskFailed(str(exc), problems=exc.problems) from None
    if params["require_attached"] and not env.attached:
        raise TaskFailed(
            "env %r is not attached to a server (strackt_environments.%s.server is empty): "
            "deploy it to a server first" % (env.name, env.name)
        )
    return dict(changed=False, environment=env.to_dict())


def main() -> None:
    run_as_module(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), work)


if __name__ == "__main__":
    main()
