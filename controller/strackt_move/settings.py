"""Where things live: the state directory, the inventory, and the playbooks with the Ansible
settings they run under.

The playbooks are the strackt.move collection's own (``<collection>/playbooks/``), found where
the ``ansible_collections`` package this controller imports lives: the pip-installed copy, or
the checkout's ``collections/`` in a development install. No checkout and no ``ansible.cfg`` is
needed: every run gets the settings it needs as environment variables (``ANSIBLE_SETTINGS``, see
``playbook_run.runner_envvars``), the same the checkout's ``ansible.cfg`` holds for plain
``ansible-playbook``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ansible_collections.strackt.move.plugins.module_utils.move_store import record_store_setting

from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode

STATE_DIR_ENV = "STRACKT_STATE_DIR"
INVENTORY_ENV = "STRACKT_INVENTORY"
#: Ansible's own way of naming an inventory, taken when strackt-move's is not set
ANSIBLE_INVENTORY_ENV = "ANSIBLE_INVENTORY"

#: What every run needs besides the collection itself; the checkout's ansible.cfg says the same
#: for plain ansible-playbook (a unit test holds the two together). Host key checking is set
#: explicitly: ansible-runner exports it off by default.
ANSIBLE_SETTINGS: dict[str, str] = {
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    "ANSIBLE_FORKS": "10",
    "ANSIBLE_TIMEOUT": "20",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=10",
}


def installed_collection() -> Path:
    """The strackt.move collection this controller belongs to (its module_utils are imported by
    the controller, so that copy is the one to run)."""
    from ansible_collections.strackt.move.plugins.module_utils import hold

    return Path(hold.__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to find its files."""

    state_dir: Path
    inventory: Path | None
    collection_dir: Path = field(default_factory=installed_collection)
    #: where move records live: "file" (under state_dir) or a PostgreSQL DSN, from
    #: ``$STRACKT_RECORD_STORE`` only (never an argument: argv is visible to every user, and the
    #: evacuation's children and lock notes repeat it). May hold a password: kept out of repr.
    record_store: str = field(default="file", repr=False)

    @property
    def playbooks_dir(self) -> Path:
        """The collection's playbooks: ansible-runner's project dir."""
        return self.collection_dir / "playbooks"

    @property
    def collections_path(self) -> Path:
        """The directory holding ``ansible_collections/strackt/move`` (ANSIBLE_COLLECTIONS_PATH)."""
        return self.collection_dir.parents[2]

    @property
    def runs_dir(self) -> Path:
        """Private data dirs of ansible-runner, one per run (kept for post-mortems)."""
        return self.state_dir / "runs"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    def require_inventory(self) -> Path:
        """The inventory a command that reaches servers needs; a clear usage error without one."""
        if self.inventory is None:
            raise MoveError(ExitCode.USAGE, "no inventory given: strackt-move does not guess which servers to use",
                            f"name it with `-i PATH` (a directory with hosts.yml and group_vars/), or set "
                            f"{INVENTORY_ENV}")
        if not self.inventory.exists():
            raise MoveError(ExitCode.USAGE, f"the inventory {self.inventory} does not exist",
                            "name your inventory with `-i PATH` (a directory with hosts.yml and group_vars/)")
        return self.inventory


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STRACKT_STATE_DIR``, else ``$XDG_STATE_HOME/strackt-move``, else ``~/.local/state/strackt-move``."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    return base / "strackt-move"


def default_inventory(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$STRACKT_INVENTORY``, else the first of ``$ANSIBLE_INVENTORY``, else none: there is no
    default inventory (the testbed's is named by the tests and the demo)."""
    env = os.environ if environ is None else environ
    value = env.get(INVENTORY_ENV) or env.get(ANSIBLE_INVENTORY_ENV, "").split(",")[0]
    return Path(value.strip()).expanduser() if value.strip() else None


def resolve(state_dir: str | None, inventory: str | None) -> Settings:
    """Command-line values win over the environment, which wins over the defaults."""
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    inv = Path(inventory).expanduser() if inventory else default_inventory()
    return Settings(state_dir=state.resolve(), inventory=inv.resolve() if inv is not None else None,
                    record_store=record_store_setting())
