"""Names, addresses and paths of one testbed, all derived from its index."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("STRACKT_TESTBED_CACHE", "/var/cache/strackt-testbed"))
STATE_ROOT = Path(os.environ.get("STRACKT_TESTBED_STATE", "/var/lib/strackt-testbed"))

# What every server needs. Changing this list changes the cache key, so the
# root filesystem is rebuilt on the next `up`.
ROOTFS_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "rsync",
    "caddy", "postgresql", "python3-django", "gunicorn", "python3-psycopg2",
    "git", "acl", "attr", "inotify-tools", "iproute2", "curl",
    "ca-certificates", "procps", "python3-apt",
    # the sample env notes (Flask + SQLAlchemy + Alembic) and its MariaDB
    "python3-flask", "python3-sqlalchemy", "python3-alembic", "alembic", "python3-pymysql",
    "mariadb-server",
    # the sample env drop (Node.js) and its Redis
    "nodejs", "node-redis", "node-busboy", "redis-server",
    # per-address access to Redis, which has no per-address ACL of its own
    "nftables",
)
ROOTFS_SUITE = "bookworm"

SERVER_NAMES = ("srv1", "srv2", "srv3")
# srv3 is the "target without room" server: a small filesystem on /srv.
SMALL_DISK = {"srv3": "/srv:size=64M"}
DNS_ZONE = "example.test"
TSIG_KEY_NAME = "strackt-move"
ENV_NAME = "shop"
ENV_DOMAIN = f"{ENV_NAME}.{DNS_ZONE}"
ENV_SOURCE = "srv1"
ENV_TTL = 30  # short, so a finished move need not wait long for caches of the old address

# Every sample app under tests/testbed/apps/ gets a git repo and a DNS name pointing at
# ENV_SOURCE. shop is deployed by `up`; notes and drop (issue 13) only once the product can
# deploy an env of another stack (see inventory.sample_app_environments).
NOTES_NAME = "notes"
DROP_NAME = "drop"
APP_NAMES = (ENV_NAME, NOTES_NAME, DROP_NAME)
APP_DOMAINS = {name: f"{name}.{DNS_ZONE}" for name in APP_NAMES}
# The connected services of notes and drop, on ENV_SOURCE like PostgreSQL.
MARIADB_PORT = 3306
REDIS_PORT = 6379


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    netns: str
    host_veth: str
    machine: str
    small_disk: str | None


@dataclass(frozen=True)
class TestbedConfig:
    """Everything that distinguishes testbed N from testbed M."""

    __test__ = False  # not a pytest test class

    index: int
    prefix: str = field(init=False)
    subnet: str = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 200:
            raise ValueError("STRACKT_TESTBED_INDEX must be 0..200")
        object.__setattr__(self, "prefix", f"smv{self.index}")
        object.__setattr__(self, "subnet", f"10.77.{self.index}")

    @classmethod
    def from_env(cls) -> "TestbedConfig":
        return cls(int(os.environ.get("STRACKT_TESTBED_INDEX", "0")))

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.1"

    @property
    def dns_address(self) -> str:
        return f"{self.subnet}.2"

    @property
    def dns_netns(self) -> str:
        return f"{self.prefix}-dns"

    @property
    def servers(self) -> tuple[Server, ...]:
        return tuple(
            Server(
                name=name,
                address=f"{self.subnet}.{11 + i}",
                netns=f"{self.prefix}-{name}",
                host_veth=f"{self.prefix}-{name}",
                machine=f"{self.prefix}-{name}",
                small_disk=SMALL_DISK.get(name),
            )
            for i, name in enumerate(SERVER_NAMES)
        )

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(f"no server {name!r} in the testbed (have {', '.join(SERVER_NAMES)})")

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / str(self.index)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def inventory_dir(self) -> Path:
        if self.index == 0:
            return REPO_ROOT / "inventories" / "testbed"
        return self.state_dir / "inventory"

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        # In a hidden directory so Ansible does not try to parse it as an inventory source.
        return self.inventory_dir / ".ssh" / "known_hosts"

    @property
    def git_dir(self) -> Path:
        return self.state_dir / "git"

    @property
    def repo_url(self) -> str:
        return self.app_repo_url(ENV_NAME)

    def app_repo_url(self, app: str) -> str:
        return f"git://{self.bridge_address}/{app}.git"
