"""strackt-move as pip installs it: the project's wheel in a fresh virtualenv outside the
checkout, run from a directory that is not the checkout, with nothing of the checkout on any path
(no PYTHONPATH, no ANSIBLE_CONFIG, no collections path, not the checkout's venv on PATH). It
finds the playbooks in the collection it installed with itself, and on the testbed it moves shop
to the confirmation gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import Testbed
from tests.testbed.config import ENV_NAME

REPO = Path(__file__).resolve().parents[2]

# `make test-all`, not `make test` (README: the two tiers)
pytestmark = pytest.mark.extended


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, ok: bool = True,
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    print(f"$ {' '.join(cmd)} -> {result.returncode}\n{result.stdout[-4000:]}{result.stderr[-3000:]}")
    if ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from the checkout's tracked files (not its build/ leftovers)."""
    work = tmp_path_factory.mktemp("installed")
    source, dist, venv = work / "source", work / "dist", work / "venv"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], work)
    (wheel,) = dist.glob("strackt_move-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)], work)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], work, timeout=1800)
    return venv


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without anything that points into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "STRACKT_", "PYTHON", "VIRTUAL_ENV", "MOLECULE_"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                   "/usr/bin", "/sbin", "/bin"])
    env.update(extra)
    return env


def test_the_installed_copy_is_its_own(venv: Path, tmp_path: Path) -> None:
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import strackt_move.settings as s; print(s.__file__); print(s.installed_collection())"],
                 tmp_path, _clean_env(venv)).stdout.split()
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(where[0]).is_relative_to(site) and Path(where[1]) == site / "ansible_collections" / "strackt" / "move"
    assert (Path(where[1]) / "playbooks" / "stages" / "preflight.yml").is_file()
    assert not any(REPO.as_posix() in line for line in where)


def test_status_and_list_run_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    cli = str(venv / "bin" / "strackt-move")
    env = _clean_env(venv, STRACKT_STATE_DIR=str(tmp_path / "state"))
    listing = _run([cli, "list", "--json"], tmp_path, env).stdout
    assert json.loads(listing)["moves"] == []
    status = _run([cli, "status", ENV_NAME], tmp_path, env, ok=False)
    assert status.returncode == 6 and "no move of shop is in progress" in status.stderr
    # a command that reaches servers names the inventory it needs: there is no default one
    start = _run([cli, "start", ENV_NAME, "--target", "srv2"], tmp_path, env, ok=False)
    assert start.returncode == 2 and "no inventory given" in start.stderr and "-i PATH" in start.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.testbed
def test_start_reaches_the_gate_from_the_installed_copy(venv: Path, fresh_testbed: Testbed, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = _clean_env(venv, STRACKT_STATE_DIR=str(state), STRACKT_INVENTORY=str(fresh_testbed.inventory_dir))
    cli = str(venv / "bin" / "strackt-move")
    started = _run([cli, "start", ENV_NAME, "--target", "srv2"], tmp_path, env, ok=False, timeout=1200)
    assert started.returncode == 4, started.stdout[-4000:] + started.stderr[-3000:]
    assert "waiting for confirmation" in started.stdout
    status = json.loads(_run([cli, "status", ENV_NAME, "--json"], tmp_path, env).stdout)
    (move,) = status["moves"]
    assert (move["stage"], move["state"]) == ("awaiting_confirmation", "waiting")
    # every run used the installed collection's playbooks, and its own ssh control path directory
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    runs = sorted((state / "runs" / ENV_NAME).iterdir())
    # preflight and the stages after it up to the gate run in one ansible-playbook
    assert [r.name.split("-", 1)[1] for r in runs] == ["preflight-to-verify"]
    for run in runs:
        (command,) = run.glob("artifacts/*/command")
        cwd = json.loads(command.read_text())["cwd"]
        assert Path(cwd) == site / "ansible_collections" / "strackt" / "move" / "playbooks", cwd
        note = run / "ssh-control-path-dir"
        assert (run / "cp").is_dir() or (note.exists() and not Path(note.read_text().strip()).exists())
    rolled = _run([cli, "rollback", ENV_NAME], tmp_path, env, ok=False, timeout=900)
    assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr[-2000:]
