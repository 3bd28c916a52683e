"""The env's directories in one module run (provision): made with their owner and mode, set when
they exist, refused before anything is made when one cannot be."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.modules import env_directories as module

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")


def run(capsys, directories: list[dict[str, Any]], check: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"directories": directories}
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def attrs(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


@needs_root
def test_missing_directories_are_made_with_their_owner_and_mode_then_nothing_changes(tmp_path, capsys):
    root = tmp_path / "srv" / "shop"
    wanted = [{"path": str(root)}, {"path": str(root / "app")},
              {"path": str(root / "data"), "owner": "nobody", "group": "nogroup", "mode": "0750"}]
    planned = run(capsys, wanted, check=True)
    assert planned["changed"] and planned["made"] == [str(tmp_path / "srv"), str(root), str(root / "app"),
                                                      str(root / "data")]
    assert not (tmp_path / "srv").exists()  # check mode makes nothing
    made = run(capsys, wanted)
    assert made["changed"] and made["made"] == planned["made"]
    assert attrs(tmp_path / "srv") == (0, 0, "0o755")  # a directory made above an entry is root's
    assert attrs(root / "app") == (0, 0, "0o755")
    nobody = root / "data"
    assert nobody.stat().st_uid != 0 and attrs(nobody)[2] == "0o750"
    again = run(capsys, wanted)
    assert not again["changed"] and again["made"] == [] and again["changed_paths"] == []


@needs_root
def test_an_existing_directory_gets_its_owner_and_mode_and_a_link_counts_as_its_target(tmp_path, capsys):
    real = tmp_path / "volume"
    real.mkdir(mode=0o777)
    os.chmod(real, 0o777)
    link = tmp_path / "data"
    link.symlink_to(real)
    entry = [{"path": str(link), "mode": "0750"}]
    assert run(capsys, entry, check=True)["changed_paths"] == [str(link)]
    assert attrs(real)[2] == "0o777"
    out = run(capsys, entry)
    assert out["changed_paths"] == [str(link)] and out["made"] == []
    assert attrs(real)[2] == "0o750" and link.is_symlink()


@pytest.mark.parametrize("entry, why", [
    ({"path": "relative/dir"}, "is not an absolute path"),
    ({"path": "/tmp/x", "mode": "rwx"}, "is not an octal mode"),
    ({"path": "/tmp/x", "owner": "no-such-user-strackt"}, "the user 'no-such-user-strackt' of /tmp/x does not exist"),
    ({"path": "/tmp/x", "group": "no-such-group-strackt"}, "the group 'no-such-group-strackt' of /tmp/x does not"),
])
def test_a_bad_entry_is_refused_naming_it(capsys, entry, why):
    out = run(capsys, [entry])
    assert out["failed"] and why in out["msg"]


def test_a_file_in_the_way_refuses_before_anything_is_made(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file")
    out = run(capsys, [{"path": str(tmp_path / "first")}, {"path": str(tmp_path / "blocker")}])
    assert out["failed"] and f"{tmp_path / 'blocker'} exists and is not a directory" in out["msg"]
    assert not (tmp_path / "first").exists()


def test_check_mode_on_a_new_server_reports_instead_of_refusing_an_owner_not_made_yet(tmp_path, capsys):
    """In --check the tasks before it made no user: the directories would still be made."""
    out = run(capsys, [{"path": str(tmp_path / "d"), "owner": "no-such-user-strackt"}], check=True)
    assert not out.get("failed") and out["made"] == [str(tmp_path / "d")]


@pytest.mark.parametrize("blocker", ["file", "dangling link"])
def test_a_file_or_dangling_link_above_a_directory_refuses_before_anything_is_made(tmp_path, capsys, blocker):
    if blocker == "file":
        (tmp_path / "above").write_text("a file")
    else:
        (tmp_path / "above").symlink_to(tmp_path / "nowhere")
    out = run(capsys, [{"path": str(tmp_path / "first")}, {"path": str(tmp_path / "above" / "d")}])
    assert out["failed"] and f"{tmp_path / 'above'} is not a directory" in out["msg"]
    assert not (tmp_path / "first").exists()


@needs_root
def test_a_link_where_the_env_user_could_have_put_it_is_refused_and_parents_made_are_roots(tmp_path, capsys):
    """The env user owns a data path's parent: it could swap the data path for a link to /etc,
    and provision (root) would hand /etc to it. A directory made above an entry is root's."""
    made = run(capsys, [{"path": str(tmp_path / "var" / "uploads"), "owner": "nobody", "group": "nogroup",
                         "mode": "0750"}])
    assert made["made"] == [str(tmp_path / "var"), str(tmp_path / "var" / "uploads")]
    assert attrs(tmp_path / "var") == (0, 0, "0o755") and (tmp_path / "var" / "uploads").stat().st_uid != 0
    victim = tmp_path / "etc-like"
    victim.mkdir(mode=0o755)
    swap = tmp_path / "var" / "uploads"
    swap.rmdir()
    os.chown(tmp_path / "var", 65534, 65534)  # a parent the env user owns
    swap.symlink_to(victim)
    out = run(capsys, [{"path": str(swap), "owner": "nobody", "group": "nogroup", "mode": "0750"}])
    assert out["failed"] and "is a link in a directory" in out["msg"]
    assert attrs(victim) == (0, 0, "0o755")
