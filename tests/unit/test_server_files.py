"""A server's small files in one module run (provision's Caddy files and closed marker): written
whole or not at all, owners and modes set, links and odd paths refused before anything changes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.modules import server_files as module

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")


def run(capsys, files: list[dict[str, Any]], check: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"files": files}
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def attrs(path: Path) -> tuple[int, int, str]:
    st = path.lstat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


@needs_root
def test_files_are_written_with_owner_and_mode_then_nothing_changes(tmp_path, capsys):
    conf, site = tmp_path / "Caddyfile", tmp_path / "shop.caddy"
    wanted = [{"path": str(conf), "content": "global\n"},
              {"path": str(site), "content": "site\n", "owner": "nobody", "group": "nogroup", "mode": "0640"}]
    planned = run(capsys, wanted, check=True)
    assert planned["changed"] and planned["changed_paths"] == [str(conf), str(site)]
    assert not conf.exists() and not site.exists()  # check mode writes nothing
    done = run(capsys, wanted)
    assert done["changed_paths"] == [str(conf), str(site)]
    assert conf.read_text() == "global\n" and attrs(conf) == (0, 0, "0o644")
    assert site.lstat().st_uid != 0 and attrs(site)[2] == "0o640"
    again = run(capsys, wanted)
    assert not again["changed"] and again["changed_paths"] == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@needs_root
def test_changed_content_is_replaced_whole_and_a_changed_mode_alone_is_set(tmp_path, capsys):
    conf = tmp_path / "Caddyfile"
    conf.write_text("old\n")
    inode = conf.stat().st_ino
    assert run(capsys, [{"path": str(conf), "content": "new\n"}])["changed_paths"] == [str(conf)]
    assert conf.read_text() == "new\n" and conf.stat().st_ino != inode  # renamed over it, not rewritten in place
    os.chmod(conf, 0o600)
    inode = conf.stat().st_ino
    assert run(capsys, [{"path": str(conf), "content": "new\n"}])["changed_paths"] == [str(conf)]
    assert attrs(conf) == (0, 0, "0o644") and conf.stat().st_ino == inode


def test_force_false_only_creates_and_absent_removes(tmp_path, capsys):
    marker = tmp_path / "closed"
    first = run(capsys, [{"path": str(marker), "content": "closed\n", "force": False}])
    assert first["changed_paths"] == [str(marker)]
    marker.write_text("someone's own note\n")
    kept = run(capsys, [{"path": str(marker), "content": "closed\n", "force": False}])
    assert not kept["changed"] and marker.read_text() == "someone's own note\n"
    assert run(capsys, [{"path": str(marker), "state": "absent"}], check=True)["changed"] and marker.exists()
    assert run(capsys, [{"path": str(marker), "state": "absent"}])["changed_paths"] == [str(marker)]
    assert not marker.exists()
    assert not run(capsys, [{"path": str(marker), "state": "absent"}])["changed"]


@pytest.mark.parametrize("case", ["link", "directory", "no parent", "relative", "no content", "bad mode", "no owner"])
def test_a_bad_entry_fails_naming_it_before_any_file_is_written(tmp_path, capsys, case):
    first = tmp_path / "first"
    target = tmp_path / "elsewhere"
    target.write_text("not to be touched\n")
    bad: dict[str, Any] = {"path": str(tmp_path / "bad"), "content": "x\n"}
    if case == "link":
        (tmp_path / "bad").symlink_to(target)
    elif case == "directory":
        (tmp_path / "bad").mkdir()
    elif case == "no parent":
        bad["path"] = str(tmp_path / "missing" / "bad")
    elif case == "relative":
        bad["path"] = "bad"
    elif case == "no content":
        del bad["content"]
    elif case == "bad mode":
        bad["mode"] = "rw-r--r--"
    elif case == "no owner":
        bad["owner"] = "no-such-user-strackt"
    with patch_module_args({"files": [{"path": str(first), "content": "1\n"}, bad]}), pytest.raises(SystemExit):
        module.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and "bad" in out["msg"], out
    assert not first.exists()  # nothing written: the refusal came first
    assert target.read_text() == "not to be touched\n"


def test_check_mode_reports_a_file_whose_directory_or_owner_is_not_made_yet(tmp_path, capsys):
    """--check skips the tasks that would make them: the file would be written, not refused."""
    later = tmp_path / "app" / "REVISION"
    owned = tmp_path / "owned"
    planned = run(capsys, [{"path": str(later), "content": "abc\n"},
                           {"path": str(owned), "content": "x\n", "owner": "no-such-user-strackt"}], check=True)
    assert planned["changed_paths"] == [str(later), str(owned)]
    assert not (tmp_path / "app").exists() and not owned.exists()
