"""The env the bench moves, with every value it needs taken from the env's definition in the
testbed inventory (tests/testbed/inventory.py), so any env of the testbed can be benched."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

from tests.testbed import inventory
from tests.testbed.client import APPS, App
from tests.testbed.config import TestbedConfig

# Where a server keeps the "site closed" marker of an env it is not attached to (the layout of
# docs/architecture.md; tests/testbed/testbed.py removes the same files on reset).
CLOSED_DIR = "/var/lib/strackt-move/closed"
TREE_NAME = "bench"  # the reference tree, inside the env's first data path


@dataclass(frozen=True)
class BenchEnv:
    name: str
    domains: tuple[str, ...]
    data_paths: tuple[str, ...]
    root: str
    uid: int
    gid: int
    health_path: str
    health_status: int
    health_timeout_s: int

    @classmethod
    def from_definition(cls, name: str, definition: dict[str, Any]) -> "BenchEnv":
        """From one entry of strackt_environments; a field the bench needs and the entry lacks
        is a ValueError naming it."""
        missing = [k for k in ("domains", "data_paths", "uid", "root") if not definition.get(k)]
        if missing:
            raise ValueError(f"the definition of env {name!r} has no {', '.join(missing)}")
        if name not in APPS:
            raise ValueError(f"tests/testbed/client.py has no app adapter for env {name!r} "
                             f"(it has: {', '.join(APPS)})")
        health = definition.get("health") or {}
        uid = int(definition["uid"])
        return cls(
            name=name,
            domains=tuple(definition["domains"]),
            data_paths=tuple(definition["data_paths"]),
            root=definition["root"],
            uid=uid,
            gid=uid,  # provision creates the env's group with the env's uid as its gid
            health_path=health.get("path", "/"),
            health_status=int(health.get("status", 200)),
            health_timeout_s=int(health.get("timeout", 5)),
        )

    @property
    def domain(self) -> str:
        """The domain the clients use and DNS switches (the first one)."""
        return self.domains[0]

    @property
    def data_dir(self) -> str:
        """The app's DATA_DIR: the first data path."""
        return self.data_paths[0]

    @property
    def tree(self) -> str:
        return posixpath.join(self.data_dir, TREE_NAME)

    @property
    def target_unit(self) -> str:
        """The unit every process and timer of the env is part of."""
        return f"strackt-env-{self.name}.target"

    @property
    def closed_file(self) -> str:
        return posixpath.join(CLOSED_DIR, self.name)

    @property
    def record_file(self) -> str:
        """The move record's file name in the controller's state dir (moves/<env>.json)."""
        return f"{self.name}.json"

    def new_app(self) -> App:
        """A fresh adapter of the client for this env's app (one per Client: some keep counts)."""
        return APPS[self.name]()

    def health_check_sh(self) -> str:
        """A shell test that is true when the env answers its health status through the front
        proxy of the server it runs on."""
        url = shlex.quote(f"http://127.0.0.1{self.health_path}")
        return (f"[ \"$(curl -s -o /dev/null -m {self.health_timeout_s} -w '%{{http_code}}' "
                f"-H {shlex.quote('Host: ' + self.domain)} {url})\" = {self.health_status} ]")


def known_definitions(cfg: TestbedConfig | None = None) -> dict[str, dict[str, Any]]:
    """Every env of the testbed inventory by name (shop first)."""
    return inventory.all_environments(cfg or TestbedConfig.from_env())


def load(name: str, cfg: TestbedConfig | None = None) -> BenchEnv:
    definitions = known_definitions(cfg)
    if name not in definitions:
        raise ValueError(f"no env {name!r} in the testbed inventory (known: {', '.join(definitions)})")
    return BenchEnv.from_definition(name, definitions[name])


def database(name: str, server: str, new_server: str, cfg: TestbedConfig | None = None):
    """The env's PostgreSQL database for --with-database; a ValueError naming what is missing."""
    from .database import BenchDatabase  # the database part needs the testbed's psql helpers

    definition = known_definitions(cfg).get(name) or {}
    db = definition.get("database") or {}
    if db.get("engine", "postgresql") != "postgresql" or not db.get("name"):
        raise ValueError(f"env {name!r} has no PostgreSQL database in the testbed inventory: "
                         f"--with-database needs one")
    if db.get("server", server) != server:
        raise ValueError(f"the database of env {name!r} is on {db.get('server')}, not on {server}")
    return BenchDatabase(name=db["name"], server=server, new_server=new_server)
