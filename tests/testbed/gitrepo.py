"""The sample apps' git repositories, served to the servers by `git daemon` on the bridge address."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import APP_NAMES, ENV_NAME, TestbedConfig
from .shell import run

APPS_DIR = Path(__file__).resolve().parent / "apps"
# A file each app's source must have (a missing checkout says so before git does).
APP_MARKER = {"shop": "manage.py", "notes": "alembic.ini", "drop": "package.json"}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "strackt testbed", "GIT_AUTHOR_EMAIL": "testbed@example.test",
    "GIT_COMMITTER_NAME": "strackt testbed", "GIT_COMMITTER_EMAIL": "testbed@example.test",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def bare_repo(cfg: TestbedConfig, app: str = ENV_NAME) -> Path:
    return cfg.git_dir / f"{app}.git"


def _git(args: list[str], cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, text=True,
                          capture_output=True).stdout.strip()


def create_repos(cfg: TestbedConfig) -> dict[str, str]:
    """A fresh bare repo for every sample app; returns each one's head commit."""
    return {app: create_repo(cfg, app) for app in APP_NAMES}


def create_repo(cfg: TestbedConfig, app: str = ENV_NAME) -> str:
    """A fresh bare repo holding the sample app on branch main; returns the head commit."""
    source = APPS_DIR / app
    if not (source / APP_MARKER[app]).exists():
        raise RuntimeError(f"the sample app {app} is missing at {source}")
    bare = bare_repo(cfg, app)
    if bare.exists():
        shutil.rmtree(bare)
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", "--bare", "-b", "main", str(bare)], cfg.git_dir)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / app
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
        _git(["init", "-q", "-b", "main"], work)
        _git(["add", "-A"], work)
        _git(["commit", "-q", "-m", f"{app}: the sample environment"], work)
        _git(["push", "-q", str(bare), "main"], work)
    return _git(["rev-parse", "main"], bare)


def push_commit(cfg: TestbedConfig, files: dict[str, str], message: str, app: str = ENV_NAME) -> str:
    """Add a commit on main (tests use it to move the branch head); returns its sha."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git(["clone", "-q", str(bare_repo(cfg, app)), str(work)], Path(tmp))
        for rel, text in files.items():
            path = work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _git(["add", "-A"], work)
        _git(["commit", "-q", "-m", message], work)
        _git(["push", "-q", "origin", "main"], work)
        return _git(["rev-parse", "HEAD"], work)


def head(cfg: TestbedConfig, app: str = ENV_NAME) -> str:
    return _git(["rev-parse", "main"], bare_repo(cfg, app))


def start_daemon(cfg: TestbedConfig) -> int:
    log = cfg.state_dir / "git-daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={cfg.git_dir}",
             f"--listen={cfg.bridge_address}", "--port=9418", str(cfg.git_dir)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return proc.pid


def wait_daemon(cfg: TestbedConfig, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while True:
        result = run(["git", "ls-remote", cfg.repo_url, "main"], check=False, timeout=5)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"git daemon not answering at {cfg.repo_url}: {result.stderr.strip()}")
        time.sleep(0.2)
