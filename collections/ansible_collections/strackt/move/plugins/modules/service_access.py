#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_access
short_description: Open or close a connected service (MariaDB, Redis) for one server's address
version_added: 0.2.0
description:
  - Run on the server of the connected service. Lets a server that runs the env reach the
    service (O(state=present)) or takes that away (O(state=absent)); a move opens it for the
    new server before the env starts there and closes it for the old one at finish.
  - O(service=mariadb) - MariaDB accounts are per C(user@host), so the address gets its own
    account C(O(user)@O(address)) with the env's password and every right on O(database);
    absent drops that account (the env's other accounts stay). Runs the C(mariadb) client as
    root over the server's socket.
  - O(service=redis) - Redis has no per-address access of its own; the address is added to
    (removed from) the nftables set O(nft_set) that the Redis server's firewall lets through.
  - PostgreSQL access is a C(pg_hba.conf) rule (the deploy role writes it).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  service:
    description: The kind of service.
    type: str
    choices: [mariadb, redis]
    required: true
  address:
    description: The IPv4 address of the server that runs (or ran) the env.
    type: str
    required: true
  state:
    description: Open (V(present)) or close (V(absent)) the service for O(address).
    type: str
    choices: [present, absent]
    default: present
  database:
    description: The env's database (O(service=mariadb)).
    type: str
  user:
    description: The env's database user (O(service=mariadb)).
    type: str
  password:
    description: The env's database password (O(service=mariadb), O(state=present)).
    type: str
  nft_set:
    description: The nftables set, as C(<family> <table> <set>) (O(service=redis)).
    type: str
"""

EXAMPLES = r"""
- name: Let srv2 use notes' MariaDB database
  strackt.move.service_access:
    env: notes
    service: mariadb
    address: 10.77.0.12
    database: notes
    user: notes
    password: "{{ strackt_env_secrets.notes.NOTES_DB_PASSWORD }}"
  delegate_to: srv1

- name: Let srv2 through to Redis
  strackt.move.service_access:
    env: drop
    service: redis
    address: 10.77.0.12
    nft_set: inet strackt_redis allowed
  delegate_to: srv1
"""

RETURN = r"""
account:
  description: The MariaDB account (O(service=mariadb)).
  returned: when service is mariadb
  type: str
  sample: "'notes'@'10.77.0.12'"
"""

import re

from ansible_collections.strackt.move.plugins.module_utils.environment import NFT_SET_RE, SQL_NAME_RE, env_module

IPV4_RE = re.compile(r"^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$")


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def mariadb_account(user: str, address: str) -> str:
    return "%s@%s" % (sql_string(user), sql_string(address))


def mariadb_present_sql(database: str, user: str, address: str, password: str) -> str:
    account = mariadb_account(user, address)
    password_sql = sql_string(password)
    return ("CREATE USER IF NOT EXISTS %s IDENTIFIED BY %s;\nALTER USER %s IDENTIFIED BY %s;\n"
            "GRANT ALL PRIVILEGES ON `%s`.* TO %s;\n" % (account, password_sql, account, password_sql, database, account))


def mariadb_state_sql(database: str, user: str, address: str, password: str | None) -> str:
    """One line: '<exists> <password matches> <has the grant>' as 0/1."""
    where = "User=%s AND Host=%s" % (sql_string(user), sql_string(address))
    matches = ("(SELECT COUNT(*) FROM mysql.user WHERE %s AND authentication_string = PASSWORD(%s))"
               % (where, sql_string(password)) if password is not None else "1")
    grant = ("(SELECT COUNT(*) FROM mysql.db WHERE %s AND Db=%s AND Select_priv='Y' AND Insert_priv='Y' "
             "AND Update_priv='Y' AND Delete_priv='Y' AND Create_priv='Y' AND Alter_priv='Y')"
             % (where, sql_string(database)))
    return "SELECT (SELECT COUNT(*) FROM mysql.user WHERE %s), %s, %s;\n" % (where, matches, grant)


def main() -> None:
    module, env = env_module(
        dict(
            service=dict(type="str", choices=["mariadb", "redis"], required=True),
            address=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            database=dict(type="str"),
            user=dict(type="str"),
            password=dict(type="str", no_log=True),
            nft_set=dict(type="str"),
        ),
        supports_check_mode=True,
        required_if=[("service", "mariadb", ("database", "user")), ("service", "redis", ("nft_set",))],
    )
    p = module.params
    if not IPV4_RE.fullmatch(p["address"]):
        module.fail_json(msg="address %r is not an IPv4 address: give the server's address as the service sees it" % p["address"])
    if p["service"] == "redis":
        redis(module, env)
    else:
        mariadb(module, env)


def redis(module, env: str) -> None:
    p = module.params
    if not NFT_SET_RE.fullmatch(p["nft_set"]):
        module.fail_json(msg="nft_set %r is not '<family> <table> <set>'" % p["nft_set"])
    nft = module.get_bin_path("nft", required=True)
    family, table, name = p["nft_set"].split()
    element = "{ %s }" % p["address"]
    rc, out, err = module.run_command([nft, "list", "set", family, table, name])
    if rc != 0:
        module.fail_json(msg="the nftables set %r does not exist on this server (%s): create the Redis guard's set "
                         "first, or leave redis.nft_allow_set of env %r empty" % (p["nft_set"], (err or out).strip(), env))
    rc, out, err = module.run_command([nft, "get", "element", family, table, name, element])
    present = rc == 0
    changed = present != (p["state"] == "present")
    if changed and not module.check_mode:
        verb = "add" if p["state"] == "present" else "delete"
        rc, out, err = module.run_command([nft, verb, "element", family, table, name, element])
        if rc != 0:
            module.fail_json(msg="nft %s element %s %s failed: %s" % (verb, p["nft_set"], element, (err or out).strip()))
    module.exit_json(changed=changed)


def mariadb(module, env: str) -> None:
    p = module.params
    for key in ("database", "user"):
        if not SQL_NAME_RE.fullmatch(p[key]):
            module.fail_json(msg="%s %r is not a database name: lower-case letters, digits and '_'" % (key, p[key]))
    if p["state"] == "present" and not p["password"]:
        module.fail_json(msg="password is needed to give %s an account for env %r" % (p["address"], env))
    client = module.get_bin_path("mariadb") or module.get_bin_path("mysql", required=True)

    def sql(text: str) -> str:
        rc, out, err = module.run_command([client, "--batch", "--skip-column-names"], data=text, binary_data=True)
        if rc != 0:
            module.fail_json(msg="the mariadb client failed on this server (exit %d): %s" % (rc, (err or out).strip()[-1000:]))
        return out

    account = mariadb_account(p["user"], p["address"])
    state = sql(mariadb_state_sql(p["database"], p["user"], p["address"], p["password"] if p["state"] == "present" else None)).split()
    exists, password_ok, granted = (int(x) > 0 for x in state[:3])
    if p["state"] == "present":
        changed = not (exists and password_ok and granted)
        if changed and not module.check_mode:
            sql(mariadb_present_sql(p["database"], p["user"], p["address"], p["password"]))
    else:
        changed = exists
        if changed and not module.check_mode:
            sql("DROP USER IF EXISTS %s;\n" % account)
    module.exit_json(changed=changed, account=account)


if __name__ == "__main__":
    main()
