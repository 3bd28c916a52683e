"""The data check after the switch-over (issue 12 items 4 and 5): paths, not clocks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ansible_collections.strackt.move.plugins.module_utils import data_check, manifest


def entry(path: str, content: str = "x", kind: str = "file", mode: str = "0644", mtime: int = 1) -> dict:
    e = {"path": path, "type": kind, "mode": mode, "uid": 1100, "gid": 1100}
    if kind == "file":
        e.update(size=len(content), mtime_ns=mtime, sha256=content)
    elif kind == "dir":
        e.update(mtime_ns=mtime)
    return e


BASE = [entry("data", kind="dir"), entry("data/a"), entry("data/d", kind="dir"), entry("data/d/b")]


def test_equal_trees_need_nothing() -> None:
    check = data_check.plan(BASE, BASE, target_changed=set())
    assert (check.equal, check.needs_repair, check.excused) == (4, False, [])


def test_the_new_servers_own_changes_are_excused_whatever_its_clock_says() -> None:
    # the target's clock is 30 s behind: its writes carry older mtimes than the source's release
    target = [entry("data", kind="dir"), entry("data/a", "new", mtime=-30), entry("data/d", kind="dir"),
              entry("data/session.tmp", mtime=-29)]
    check = data_check.plan(BASE, target, target_changed={"data/a", "data/session.tmp", "data/d/b"})
    assert check.needs_repair is False
    assert sorted(check.excused) == ["data/a", "data/d/b", "data/session.tmp"]


def test_a_write_the_final_pass_missed_is_repaired_forward() -> None:
    source = BASE + [entry("data/mmap-written", "late")]
    target = [e for e in BASE] + []
    target = [dict(e) for e in target]
    target[1] = entry("data/a", "stale")  # an mmap write on the source the journal never saw
    check = data_check.plan(source, target, target_changed=set())
    assert check.copy == ["data/a", "data/mmap-written"]
    assert check.delete == []


def test_something_only_on_the_target_that_it_did_not_make_is_deleted_there() -> None:
    target = BASE + [entry("data/stray"), entry("data/olddir", kind="dir"), entry("data/olddir/x")]
    check = data_check.plan(BASE, target, target_changed=set())
    # the directory goes as a whole; its content needs no entry of its own
    assert check.delete == ["data/olddir", "data/stray"]


def test_a_directory_the_new_server_renamed_excuses_its_whole_content() -> None:
    target = [entry("data", kind="dir"), entry("data/a"), entry("data/e", kind="dir"), entry("data/e/b")]
    check = data_check.plan(BASE, target, target_changed={"data/d", "data/e"})
    assert check.needs_repair is False
    assert sorted(check.excused) == ["data/d", "data/d/b", "data/e", "data/e/b"]


def test_changed_on_both_sides_is_a_conflict_and_the_new_server_keeps_its_copy() -> None:
    target = [entry("data", kind="dir"), entry("data/a", "target's"), entry("data/d", kind="dir"), entry("data/d/b")]
    check = data_check.plan(BASE, target, target_changed={"data/a"}, source_changed_late={"data/a"})
    assert check.conflicts == ["data/a"]
    assert not check.needs_repair


def test_grouping_by_data_path() -> None:
    assert data_check.by_data_path(["data/a", "media/x/y", "data/d/b"], ["data", "media"]) == {
        "data": ["a", "d/b"], "media": ["x/y"]}


def test_setuid_bits_never_make_a_difference_and_specials_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = root / "data"
    data.mkdir(parents=True)
    (data / "tool").write_text("#!/bin/sh\n")
    os.chmod(data / "tool", 0o4755)
    os.mkfifo(data / "fifo")
    (data / ".strackt-partial").mkdir()
    (data / ".strackt-partial" / "half").write_text("h")
    (data / ".strackt-barrier-m1").write_text("")
    skipped: list[str] = []
    entries = manifest.build([str(data)], str(root), skipped=skipped)
    assert [e["path"] for e in entries] == ["data", "data/tool"]
    assert skipped == ["data/fifo"]
    stripped = dict(entries[1], mode="0755")
    assert manifest.comparable(entries[1]) == manifest.comparable(stripped)
    assert stat.S_IMODE(os.stat(data / "tool").st_mode) == 0o4755


def test_the_module_gives_rsync_pass_its_changes_per_data_path(capsys) -> None:
    import json

    import pytest
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.strackt.move.plugins.modules import data_check as module

    source = BASE + [entry("data/mmap-written", "late"), entry("uploads", kind="dir"), entry("uploads/u1")]
    target = [entry("data", kind="dir"), entry("data/a", "mine"), entry("data/d", kind="dir"), entry("data/d/b"),
              entry("data/stale"), entry("uploads", kind="dir")]
    args = dict(env_root="/srv/shop/", data_paths=["/srv/shop/data", "/srv/shop/uploads"], source_entries=source,
                target_entries=target, target_changed=["data/a"], source_changed_late=["data/a"])
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    out = json.loads(capsys.readouterr().out)
    assert out["needs_repair"] and out["conflicts"] == ["data/a"] and out["excused"] == 1
    assert out["changes"] == {"/srv/shop/data": {"copy": ["mmap-written"], "delete": ["stale"]},
                              "/srv/shop/uploads": {"copy": ["u1"], "delete": []}}
    assert out["summary"].startswith("8 compared, 4 equal, 1 excused") and "2 to copy, 1 to delete, 1 conflicts" in out["summary"]
