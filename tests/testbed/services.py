"""The connected services on the env source server (srv1): PostgreSQL (shop), MariaDB (notes),
Redis (drop). Configured in srv1's overlay before boot and given their databases and users after
it; on the other servers they are masked, so they never start there.

Also the two ways the testbed grants one more server access (what a move to that server needs,
checked in tests/integration/test_sample_apps.py): MariaDB has per-address accounts
(`'user'@'address'`); Redis has no per-address ACL, so an nftables set of allowed addresses guards
its port inside srv1's own network namespace.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .config import ENV_SOURCE, MARIADB_PORT, NOTES_NAME, REDIS_PORT, TestbedConfig

# Units that run only on the source server.
SOURCE_ONLY_UNITS = (
    "postgresql.service", "postgresql@15-main.service",
    "mariadb.service", "mariadb.socket", "redis-server.service",
)

MARIADB_CONF = """\
# written by the strackt.move testbed: reachable from the other servers, accounts per address
[mysqld]
bind-address = 0.0.0.0
port = {port}
skip-name-resolve
# a small server: the testbed's whole machine is shared by several servers
innodb_buffer_pool_size = 32M
"""

REDIS_CONF = """
# written by the strackt.move testbed (the last value of a directive wins)
bind 127.0.0.1 {address}
port {port}
requirepass {password}
# an acknowledged write is on disk: the append-only file is fsynced before the reply
appendonly yes
appendfsync always
"""

# The nftables guard of Redis's port: only loopback and the addresses in the set get through;
# anyone else is refused at once (a TCP reset, not a timeout).
REDIS_GUARD_TABLE = "strackt_redis"
REDIS_GUARD = """\
table inet {table} {{
    set allowed {{ type ipv4_addr; }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iif "lo" accept
        tcp dport {port} ip saddr @allowed accept
        tcp dport {port} reject with tcp reset
    }}
}}
"""

Ssh = Callable[..., subprocess.CompletedProcess[str]]


def configure_source(cfg: TestbedConfig, root: Path, secrets: dict[str, str]) -> None:
    """Write the services' configuration into the source server's overlay (before boot)."""
    source_address = cfg.server(ENV_SOURCE).address
    etc = root / "etc"
    (etc / "postgresql" / "15" / "main" / "conf.d" / "strackt-testbed.conf").write_text("listen_addresses = '*'\n")
    (etc / "mysql" / "mariadb.conf.d" / "90-strackt-testbed.cnf").write_text(MARIADB_CONF.format(port=MARIADB_PORT))
    # Appending keeps Debian's file (and its owner redis:redis, mode 0640) and overrides its values.
    with open(etc / "redis" / "redis.conf", "a") as conf:
        conf.write(REDIS_CONF.format(address=source_address, port=REDIS_PORT, password=secrets["redis_password"]))


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def mariadb_account_sql(database: str, user: str, host: str, password: str) -> str:
    """An account for `user` connecting from `host` (an address; skip-name-resolve is on) with
    every right on `database`. MariaDB accounts are per (user, host), so each server that runs
    the env needs its own, with the same password."""
    account = f"{_sql_string(user)}@{_sql_string(host)}"
    return (f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_sql_string(password)};\n"
            f"GRANT ALL PRIVILEGES ON `{database}`.* TO {account};\n")


def mariadb_drop_account_sql(user: str, host: str) -> str:
    return f"DROP USER IF EXISTS {_sql_string(user)}@{_sql_string(host)};\n"


def create_mariadb_database(ssh: Ssh, secrets: dict[str, str]) -> None:
    """notes' database, with accounts for the source server itself (socket and 127.0.0.1)."""
    password = secrets["notes_db_password"]
    sql = f"CREATE DATABASE IF NOT EXISTS `{NOTES_NAME}` CHARACTER SET utf8mb4;\n"
    sql += mariadb_account_sql(NOTES_NAME, NOTES_NAME, "localhost", password)
    sql += mariadb_account_sql(NOTES_NAME, NOTES_NAME, "127.0.0.1", password)
    ssh(ENV_SOURCE, "until mariadb-admin ping --silent; do sleep 0.2; done; mariadb --batch", input=sql, timeout=60)


def redis_guard_script(allowed: list[str]) -> str:
    """An `nft -f` script that (re)creates the Redis guard with exactly `allowed` addresses."""
    script = (f"table inet {REDIS_GUARD_TABLE}\ndelete table inet {REDIS_GUARD_TABLE}\n"
              + REDIS_GUARD.format(table=REDIS_GUARD_TABLE, port=REDIS_PORT))
    if allowed:
        script += f"add element inet {REDIS_GUARD_TABLE} allowed {{ {', '.join(allowed)} }}\n"
    return script


def redis_allow_command(address: str, allow: bool) -> str:
    """Open (or close) Redis's port for one more address while the guard is in place."""
    verb = "add" if allow else "delete"
    return f"nft {verb} element inet {REDIS_GUARD_TABLE} allowed '{{ {address} }}'"


def redis_unguard_command() -> str:
    return f"nft delete table inet {REDIS_GUARD_TABLE} 2>/dev/null || true"


def revoke_other_servers(ssh: Ssh, addresses: list[str]) -> None:
    """Take back what moves granted other servers: their MariaDB accounts, their Redis access."""
    sql = "".join(mariadb_drop_account_sql(NOTES_NAME, address) for address in addresses)
    ssh(ENV_SOURCE, "mariadb --batch", input=sql)
    ssh(ENV_SOURCE, "nft -f -", input=redis_guard_script([]))


def redis_cli(ssh: Ssh, server: str, password: str, args: str, *, host: str = "127.0.0.1",
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """redis-cli on `server`; the password goes through stdin (REDISCLI_AUTH), not the command line."""
    return ssh(server, f"read -r REDISCLI_AUTH; export REDISCLI_AUTH; redis-cli -h {host} -p {REDIS_PORT} {args}",
               input=password + "\n", check=check)


def mariadb_as(ssh: Ssh, server: str, user: str, password: str, sql: str, *, host: str,
               database: str = NOTES_NAME, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The mariadb client on `server` as `user`@`host` (the password through stdin, as MYSQL_PWD)."""
    return ssh(server, f"read -r MYSQL_PWD; export MYSQL_PWD; mariadb --connect-timeout=5 -h {host} -P {MARIADB_PORT} "
                       f"-u {user} --batch --skip-column-names -e {_shell_word(sql)} {database}",
               input=password + "\n", check=check)


def _shell_word(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def reset_sample_data(ssh: Ssh, secrets: dict[str, str]) -> None:
    """Empty notes' database and drop's Redis database again (accounts and grants stay)."""
    ssh(ENV_SOURCE, "mariadb --batch",
        input=f"DROP DATABASE IF EXISTS `{NOTES_NAME}`;\nCREATE DATABASE `{NOTES_NAME}` CHARACTER SET utf8mb4;\n")
    redis_cli(ssh, ENV_SOURCE, secrets["redis_password"], "-n 0 FLUSHDB")
