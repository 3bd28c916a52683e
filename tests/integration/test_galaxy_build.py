"""The collection as Galaxy ships it (issue 6): build the tarball, install it into a fresh path,
document every module from there, and run the playbooks against the installed copy only: the
checkout's entry points, and the collection's own playbooks by name (a move to the gate with
`ansible-playbook strackt.move.move`, from a directory outside the checkout, without its
ansible.cfg)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.testbed import Testbed
from tests.testbed.config import ENV_NAME

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "strackt" / "move"
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
JUNK = ("__pycache__", ".pyc", "tests/output", ".pytest_cache", ".mypy_cache", ".tar.gz", ".ansible/")


def _env(collections_path: Path) -> dict[str, str]:
    """Only the fresh path: not the repo's collections/, not ~/.ansible, not sys.path."""
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "False"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")  # its collections_path is overridden above
    env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tarball, fresh collections path with the tarball installed)."""
    work = tmp_path_factory.mktemp("galaxy")
    build, fresh = work / "build", work / "fresh"
    build.mkdir()
    env = _env(fresh)
    _run(["ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(build)], env, work)
    tarballs = list(build.glob("strackt-move-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    _run(["ansible-galaxy", "collection", "install", str(tarballs[0]), "-p", str(fresh)], env, work)
    return tarballs[0], fresh


def test_tarball_holds_the_collection_and_no_junk(installed: tuple[Path, Path]) -> None:
    tarball, _ = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "meta/runtime.yml" in names
    assert {f"plugins/modules/{m}.py" for m in MODULES} <= set(names)
    assert any(n.startswith("roles/cutover/meta/argument_specs.yml") for n in names)
    playbooks = {p.relative_to(COLLECTION).as_posix() for p in (COLLECTION / "playbooks").rglob("*.yml")}
    assert {"playbooks/move.yml", "playbooks/stages/verify.yml"} <= playbooks <= set(names)
    assert not [n for n in names if any(j in n for j in JUNK)]


def test_installed_copy_is_the_only_one_seen(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, fresh = installed
    listing = _run(["ansible-galaxy", "collection", "list", "strackt.move"], _env(fresh), tmp_path).stdout
    assert str(fresh) in listing
    assert str(REPO / "collections") not in listing


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module(installed: tuple[Path, Path], tmp_path: Path, module: str) -> None:
    _, fresh = installed
    out = _run(["ansible-doc", "-t", "module", f"strackt.move.{module}"], _env(fresh), tmp_path).stdout
    assert str(fresh / "ansible_collections" / "strackt" / "move" / "plugins" / "modules") in out
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in out, f"{module}: no {section}"


def test_ansible_doc_lists_every_module_and_role(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, fresh = installed
    env = _env(fresh)
    listed = _run(["ansible-doc", "-t", "module", "-l", "strackt.move"], env, tmp_path).stdout
    assert {f"strackt.move.{m}" for m in MODULES} <= {line.split()[0] for line in listed.splitlines() if line}
    specs = {p.name: p / "meta" / "argument_specs.yml" for p in (COLLECTION / "roles").iterdir()
             if (p / "meta" / "argument_specs.yml").exists()}
    for role, spec in sorted(specs.items()):
        out = _run(["ansible-doc", "-t", "role", f"strackt.move.{role}"], env, tmp_path).stdout
        # every entry point the role documents (a stage role has main; the database role's are
        # the stages' steps, included with tasks_from)
        entry_points = yaml.safe_load(spec.read_text())["argument_specs"]
        assert entry_points, role
        for entry_point in entry_points:
            assert f"ENTRY POINT: *{entry_point}*" in out, (role, entry_point)


@pytest.mark.testbed
def test_playbooks_run_against_the_installed_copy(installed: tuple[Path, Path], fresh_testbed: Testbed,
                                                  tmp_path: Path) -> None:
    _, fresh = installed
    # the playbooks alone, away from the repository's collections/ (no adjacent collections dir)
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", playbooks)
    env = _env(fresh)
    inventory = str(fresh_testbed.inventory_dir)
    status = _run(["ansible-playbook", "-i", inventory, str(playbooks / "status.yml"), "-e", f"env={ENV_NAME}"],
                  env, tmp_path).stdout
    assert "no move in progress" in status
    deploy = _run(["ansible-playbook", "-i", inventory, str(playbooks / "deploy.yml"), "-e", f"env={ENV_NAME}",
                   "--check", "-v"], env, tmp_path).stdout
    assert "failed=0" in deploy
    assert str(fresh / "ansible_collections" / "strackt" / "move") in _run(
        ["ansible-playbook", "-i", inventory, str(playbooks / "status.yml"), "-e", f"env={ENV_NAME}", "-vvv"],
        env, tmp_path).stdout


@pytest.mark.testbed
def test_a_move_runs_from_the_installed_collection_by_name(installed: tuple[Path, Path], fresh_testbed: Testbed,
                                                           tmp_path: Path) -> None:
    """`ansible-playbook strackt.move.move -e ...` with only the installed collection: no checkout
    in the working directory, no ansible.cfg, no playbook file named by path."""
    _, fresh = installed
    env = _env(fresh)
    env.pop("ANSIBLE_CONFIG")
    env["ANSIBLE_CONFIG"] = str(tmp_path / "none.cfg")  # not the checkout's, not ~/.ansible.cfg
    out = _run(["ansible-playbook", "-i", str(fresh_testbed.inventory_dir), "strackt.move.move",
                "-e", f"env={ENV_NAME} target=srv2", "-e", "no_prompt=true", "-vv"], env, tmp_path).stdout
    assert "awaiting confirmation" in out and "failed=0" in out
    assert str(fresh / "ansible_collections" / "strackt" / "move" / "playbooks" / "stages") in out
    record = json.loads((fresh_testbed.cfg.state_dir / "moves" / "moves" / f"{ENV_NAME}.json").read_text())
    assert (record["stage"], record["state"]) == ("awaiting_confirmation", "waiting")
    # the roles recorded every stage themselves: each started once and completed
    events = [(e["stage"], e["event"]) for e in record["history"]]
    for stage in ("preflight", "provision", "deploy", "sync", "verify"):
        assert events.count((stage, "started")) == 1 and events.count((stage, "completed")) == 1, events
