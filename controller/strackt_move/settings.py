"""Where things live: the state directory, the project (playbooks, ansible.cfg), the inventory."""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

STATE_DIR_ENV = "STRACKT_STATE_DIR"
PROJECT_DIR_ENV = "STRACKT_PROJECT_DIR"
DEFAULT_INVENTORY = "inventories/testbed"


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to find its files."""

    state_dir: Path
    project_dir: Path  # repo root: holds playbooks/, ansible.cfg, collections/
    inventory: Path

    @property
    def playbooks_dir(self) -> Path:
        return self.project_dir / "playbooks"

    @property
    def ansible_cfg(self) -> Path:
        return self.project_dir / "ansible.cfg"

    @property
    def runs_dir(self) -> Path:
        """Private data dirs of ansible-runner, one per run (kept for post-mortems)."""
        return self.state_dir / "runs"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STRACKT_STATE_DIR``, else ``$XDG_STATE_HOME/strackt-move``, else ``~/.local/state/strackt-move``."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    return base / "strackt-move"


def _looks_like_project(path: Path) -> bool:
    return (path / "playbooks").is_dir() and (path / "ansible.cfg").is_file()


def find_project_dir(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """``$STRACKT_PROJECT_DIR``; else the nearest parent of the cwd with ``playbooks/`` and
    ``ansible.cfg``; else the checkout this package lives in; else the cwd."""
    env = os.environ if environ is None else environ
    if env.get(PROJECT_DIR_ENV):
        return Path(env[PROJECT_DIR_ENV]).expanduser().resolve()
    start = (cwd or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if _looks_like_project(candidate):
            return candidate
    here = Path(__file__).resolve()
    for candidate in here.parents:
        if _looks_like_project(candidate):
            return candidate
    return start


def default_inventory(project_dir: Path) -> Path:
    """The ``inventory`` of ansible.cfg's ``[defaults]`` (relative to ansible.cfg), else
    ``inventories/testbed`` under the project."""
    cfg = project_dir / "ansible.cfg"
    if cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
        try:
            parser.read(cfg)
            value = parser.get("defaults", "inventory", fallback="").strip()
        except configparser.Error:
            value = ""
        if value:
            first = value.split(",")[0].strip()
            path = Path(first).expanduser()
            return path if path.is_absolute() else (project_dir / path).resolve()
    return project_dir / DEFAULT_INVENTORY


def resolve(state_dir: str | None, project_dir: str | None, inventory: str | None) -> Settings:
    """Command-line values win over the environment, which wins over the defaults."""
    project = Path(project_dir).expanduser().resolve() if project_dir else find_project_dir()
    state = Path(state_dir).expanduser() if state_dir else default_state_dir()
    inv = Path(inventory).expanduser().resolve() if inventory else default_inventory(project)
    return Settings(state_dir=state.resolve(), project_dir=project, inventory=inv)
