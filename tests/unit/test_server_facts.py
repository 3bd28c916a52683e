"""Disk, memory and data-size logic of strackt.move.server_facts."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.modules import server_facts
from ansible_collections.strackt.move.plugins.modules.server_facts import (
    MIB,
    capacity_problems,
    ExtraNeed,
    group_filesystems,
    nearest_existing,
    read_meminfo,
    tree_size,
)

MEMINFO = """MemTotal:        2048000 kB
MemFree:          100000 kB
MemAvailable:     512000 kB
Buffers:           10000 kB
"""


def test_nearest_existing_walks_up():
    existing = {"/", "/srv"}
    assert nearest_existing("/srv/shop/data", existing.__contains__) == "/srv"
    assert nearest_existing("/srv/", existing.__contains__) == "/srv"
    assert nearest_existing("/opt/x", existing.__contains__) == "/"
    assert nearest_existing("/srv/shop/data", lambda p: p == "/srv/shop/data") == "/srv/shop/data"


def test_nearest_existing_on_real_tree(tmp_path):
    (tmp_path / "a").mkdir()
    assert nearest_existing(str(tmp_path / "a" / "b" / "c")) == str(tmp_path / "a")


def test_read_meminfo():
    assert read_meminfo(MEMINFO) == {"available_mb": 500, "total_mb": 2000}
    assert read_meminfo("garbage") == {"available_mb": 0, "total_mb": 0}


def test_tree_size_counts_files_and_symlinks_without_following(tmp_path):
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / "1.txt").write_bytes(b"x" * 1000)
    (data / "b.bin").write_bytes(b"y" * 24)
    big = tmp_path / "outside.bin"
    big.write_bytes(b"z" * 100000)
    os.symlink(big, data / "link")
    os.symlink(tmp_path, data / "dirlink")
    size, count = tree_size(str(data))
    link_sizes = os.lstat(data / "link").st_size + os.lstat(data / "dirlink").st_size
    assert size == 1024 + link_sizes
    assert count == 4
    assert tree_size(str(tmp_path / "missing")) == (0, 0)


def fake_fs(devices: dict[str, tuple[int, int]]):
    """probe/exists over a fake tree: {existing path: (device, free bytes)}."""
    def probe(path):
        return devices[path]
    return probe, devices.__contains__


def test_paths_not_yet_created_are_measured_at_their_parent_and_grouped():
    probe, exists = fake_fs({"/": (1, 10 * MIB), "/srv": (2, 100 * MIB)})
    fss = group_filesystems("/srv/shop", ["/srv/shop/data", "/srv/shop/media"],
                            {"/srv/shop/data": 30 * MIB, "/srv/shop/media": 5 * MIB}, 64 * MIB, probe, exists)
    assert len(fss) == 1
    fs = fss[0]
    assert fs.measured_at == "/srv" and fs.paths == ["/srv/shop", "/srv/shop/data", "/srv/shop/media"]
    assert fs.need_bytes == (30 + 5 + 64) * MIB
    assert capacity_problems(fss, 64, {"available_mb": 1000}, 256) == []


def test_each_filesystem_needs_headroom_and_its_own_data():
    probe, exists = fake_fs({"/": (1, 200 * MIB), "/srv": (2, 70 * MIB), "/srv/shop": (2, 70 * MIB),
                             "/mnt/big": (3, 10 * MIB)})
    fss = group_filesystems("/srv/shop", ["/srv/shop/data", "/mnt/big/shop"],
                            {"/srv/shop/data": 10 * MIB, "/mnt/big/shop": 1}, 64 * MIB, probe, exists)
    by_at = {fs.measured_at: fs for fs in fss}
    assert by_at["/srv/shop"].need_bytes == 74 * MIB
    assert by_at["/mnt/big"].need_bytes == 64 * MIB + 1
    problems = capacity_problems(fss, 64, {"available_mb": 100}, 50)
    assert len(problems) == 2
    assert "/srv/shop, /srv/shop/data: 70.00 MiB free on the filesystem at /srv/shop, 74.00 MiB needed" in problems[0]
    assert "data and app 10.00 MiB + headroom 64 MiB" in problems[0]
    assert "/mnt/big/shop" in problems[1] and "choose another target" in problems[1]


def test_extra_path_on_the_envs_filesystem_adds_to_its_need():
    """An evacuation's database in /var/lib/postgresql on the same disk as /srv: one sum, one free space."""
    probe, exists = fake_fs({"/": (1, 200 * MIB), "/srv": (1, 200 * MIB), "/var/lib": (1, 200 * MIB)})
    db = ExtraNeed("/var/lib/postgresql/15/main", 100 * MIB, 64 * MIB, "the database shop")
    fss = group_filesystems("/srv/shop", ["/srv/shop/data"], {"/srv/shop/data": 10 * MIB}, 64 * MIB, probe, exists,
                            extra=[db])
    assert len(fss) == 1
    fs = fss[0]
    assert fs.paths == ["/srv/shop", "/srv/shop/data", "/var/lib/postgresql/15/main"]
    assert fs.need_bytes == (10 + 64 + 100 + 64) * MIB and fs.extra_bytes == 164 * MIB
    problems = capacity_problems(fss, 64, {"available_mb": 1000}, 0)
    assert len(problems) == 1
    assert "238.00 MiB needed (data and app 10.00 MiB + headroom 64 MiB + the database shop 164.00 MiB" in problems[0]
    # without the database the files alone fit
    assert capacity_problems(group_filesystems("/srv/shop", ["/srv/shop/data"], {"/srv/shop/data": 10 * MIB},
                                               64 * MIB, probe, exists), 64, {"available_mb": 1000}, 0) == []


def test_extra_path_on_its_own_filesystem_needs_only_its_own_headroom():
    probe, exists = fake_fs({"/": (1, 500 * MIB), "/srv": (2, 500 * MIB), "/var/lib/postgresql": (3, 150 * MIB)})
    db = ExtraNeed("/var/lib/postgresql/15/main", 100 * MIB, 64 * MIB, "the database shop")
    fss = group_filesystems("/srv/shop", ["/srv/shop/data"], {}, 64 * MIB, probe, exists, extra=[db])
    by_at = {fs.measured_at: fs for fs in fss}
    assert by_at["/srv"].need_bytes == 64 * MIB and by_at["/srv"].extra_bytes == 0
    assert by_at["/var/lib/postgresql"].need_bytes == 164 * MIB
    problems = capacity_problems(fss, 64, {"available_mb": 1000}, 0)
    assert len(problems) == 1
    assert "/var/lib/postgresql/15/main: 150.00 MiB free" in problems[0]
    assert "(the database shop 164.00 MiB with its headroom)" in problems[0]


def test_small_target_like_srv3_is_refused():
    probe, exists = fake_fs({"/": (1, 50000 * MIB), "/srv": (2, 64 * MIB)})
    fss = group_filesystems("/srv/shop", ["/srv/shop/data"], {"/srv/shop/data": 5 * MIB}, 64 * MIB, probe, exists)
    assert capacity_problems(fss, 64, {"available_mb": 1000}, 256)


def test_app_checkout_counts_on_roots_filesystem_only():
    probe, exists = fake_fs({"/": (1, 500 * MIB), "/srv": (2, 64 * MIB), "/data": (3, 500 * MIB)})
    fss = group_filesystems("/srv/shop", ["/data/shop"], {}, 64 * MIB, probe, exists, need_app_bytes=200 * 1024)
    by_at = {fs.measured_at: fs for fs in fss}
    assert by_at["/srv"].need_bytes == 64 * MIB + 200 * 1024
    assert by_at["/data"].need_bytes == 64 * MIB
    problems = capacity_problems(fss, 64, {"available_mb": 1000}, 0)
    assert len(problems) == 1 and "filesystem at /srv" in problems[0]


def test_memory_shortfall_and_zero_means_unchecked():
    assert capacity_problems([], 0, {"available_mb": 100}, 256) == [
        "not enough memory: 100 MiB available (MemAvailable), the env needs 256 MiB (memory_mb); "
        "free memory there or choose another target"
    ]
    assert capacity_problems([], 0, {"available_mb": 100}, 0) == []
    assert capacity_problems([], 0, {"available_mb": 256}, 256) == []


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            server_facts.main()
    return json.loads(capsys.readouterr().out)


def test_module_on_this_machine(tmp_path, capsys):
    root = tmp_path / "shop"
    (root / "app").mkdir(parents=True)
    (root / "app" / "REVISION").write_text("a" * 40 + "\n")
    (root / "data").mkdir()
    (root / "data" / "f").write_bytes(b"1234")
    result = run_module(capsys, {"env": "shop", "root": str(root), "data_paths": [str(root / "data"), str(root / "new")],
                                 "measure_data": True, "need_data_bytes": {str(root / "data"): 10 ** 15},
                                 "headroom_mb": 1})
    assert result["changed"] is False
    assert result["root_exists"] and result["present"]
    assert result["revision"] == "a" * 40
    assert result["data_bytes"] == {str(root / "data"): 4, str(root / "new"): 0}
    assert result["data_files"] == 1
    assert result["app_bytes"] == 41
    assert len(result["problems"]) == 1 and "not enough disk" in result["problems"][0]

    result = run_module(capsys, {"env": "shop", "root": str(tmp_path / "absent"), "data_paths": [str(tmp_path / "absent/data")]})
    assert not result["root_exists"] and result["revision"] is None and result["data_bytes"] == {}


def test_module_refuses_bad_input(capsys):
    result = run_module(capsys, {"env": "Shop!", "root": "/srv/x", "data_paths": ["/srv/x/d"]})
    assert result["failed"] and "must match" in result["msg"]
    result = run_module(capsys, {"env": "shop", "root": "/srv/x", "data_paths": ["/srv/x/d"], "memory_mb": -1})
    assert result["failed"] and "memory_mb must be 0 or more" in result["msg"]
    result = run_module(capsys, {"env": "shop", "root": "/srv/x", "data_paths": ["/srv/x/d"], "need_data_bytes": {"/srv/x/d": "lots"}})
    assert result["failed"] and "need_data_bytes" in result["msg"]


def test_a_scan_counts_directories_and_names_special_and_setuid_files(tmp_path):
    from ansible_collections.strackt.move.plugins.modules.server_facts import not_carried, scan_tree

    data = tmp_path / "data"
    (data / "a" / "b").mkdir(parents=True)
    (data / "plain").write_text("x")
    os.mkfifo(data / "a" / "fifo")
    (data / "suid").write_text("y")
    os.chmod(data / "suid", 0o4755)
    (data / "a" / "sgid").write_text("z")
    os.chmod(data / "a" / "sgid", 0o2755)
    scan = scan_tree(str(data))
    assert (scan.dirs, scan.files, scan.bytes) == (3, 4, 3)
    assert scan.special == [str(data / "a" / "fifo")]
    assert sorted(scan.setuid) == [str(data / "a" / "sgid"), str(data / "suid")]
    told = not_carried(scan)
    assert told["special_count"] == 1 and told["setuid_count"] == 2
    assert "1 special file(s)" in told["warning"] and str(data / "a" / "fifo") in told["warning"]
    assert "setuid/setgid bit arrive without it" in told["warning"] and str(data / "suid") in told["warning"]
    assert not_carried(scan_tree(str(data / "a" / "b")))["warning"] is None


def test_inotify_watches_are_compared_with_the_directories_naming_the_sysctl():
    from ansible_collections.strackt.move.plugins.modules.server_facts import inotify_facts

    ok = inotify_facts(1000, 8192, 128, 200)
    assert ok["problem"] is None and ok["watches_needed"] == 1200
    short = inotify_facts(8000, 8192, 128, 200)
    assert "fs.inotify.max_user_watches=8192" in short["problem"] and "7992 of" in short["problem"]
    assert short["raise_to"] == 200 + 8000 + 800 + 100 and "sysctl -w fs.inotify.max_user_watches=9100" in short["problem"]
    assert inotify_facts(None, 8192, 128, 9000)["problem"] is None  # nothing measured: nothing to say


def test_the_watches_held_by_a_users_processes_are_counted_from_proc(tmp_path):
    from ansible_collections.strackt.move.plugins.modules.server_facts import inotify_watches_in_use

    proc = tmp_path / "proc"
    for pid, watches in (("12", 3), ("40", 2)):
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "fdinfo").mkdir()
        os.symlink("anon_inode:inotify", proc / pid / "fd" / "4")
        (proc / pid / "fdinfo" / "4").write_text("pos:\t0\nflags:\t00\n" + "".join(
            f"inotify wd:{i} ino:{i:x} sdev:800001 mask:fce ignored_mask:0\n" for i in range(watches)))
        os.symlink("/dev/null", proc / pid / "fd" / "0")
    (proc / "self").mkdir()
    uid = os.getuid()
    assert inotify_watches_in_use(str(proc), uid) == 5
    assert inotify_watches_in_use(str(proc), uid + 1) == 0


# ---- a move back: the target holds the env's retained copy ----------------------------------------

def test_a_retained_copy_counts_as_a_head_start_for_the_room_and_only_up_to_what_is_needed():
    """What the retained copy already holds of a data path (or of the app) is space the first pass
    reuses: only the rest is needed. A path that holds more than the source now has earns no credit
    for the others (the copy is never trusted beyond its own size)."""
    probe, exists = fake_fs({"/": (1, 500 * MIB), "/srv/shop": (2, 40 * MIB), "/srv/shop/data": (2, 40 * MIB),
                             "/srv/shop/media": (2, 40 * MIB)})
    need = {"/srv/shop/data": 60 * MIB, "/srv/shop/media": 2 * MIB}
    plain = group_filesystems("/srv/shop", ["/srv/shop/data", "/srv/shop/media"], need, 8 * MIB, probe, exists,
                              need_app_bytes=4 * MIB)
    assert plain[0].need_bytes == (60 + 2 + 4 + 8) * MIB
    assert capacity_problems(plain, 8, {"available_mb": 1000}, 0)          # refused without the head start
    have = {"/srv/shop/data": 50 * MIB, "/srv/shop/media": 9 * MIB}        # media shrank on the source since
    ahead = group_filesystems("/srv/shop", ["/srv/shop/data", "/srv/shop/media"], need, 8 * MIB, probe, exists,
                              need_app_bytes=4 * MIB, have_data_bytes=have, have_app_bytes=3 * MIB)
    assert ahead[0].need_bytes == (10 + 0 + 1 + 8) * MIB
    assert ahead[0].head_start_bytes == (50 + 2 + 3) * MIB
    assert capacity_problems(ahead, 8, {"available_mb": 1000}, 0) == []
    # still short: the message says what the copy already holds
    probe, exists = fake_fs({"/": (1, 500 * MIB), "/srv/shop": (2, 15 * MIB), "/srv/shop/data": (2, 15 * MIB),
                             "/srv/shop/media": (2, 15 * MIB)})
    short = group_filesystems("/srv/shop", ["/srv/shop/data", "/srv/shop/media"], need, 8 * MIB, probe, exists,
                              need_app_bytes=4 * MIB, have_data_bytes=have, have_app_bytes=3 * MIB)
    (problem,) = capacity_problems(short, 8, {"available_mb": 1000}, 0)
    assert ("19.00 MiB needed (data and app 11.00 MiB beyond the 55.00 MiB the retained copy there already holds "
            "+ headroom 8 MiB)") in problem, problem


def test_module_counts_the_retained_copy_only_when_asked(tmp_path, capsys, monkeypatch):
    root = tmp_path / "shop"
    (root / "app").mkdir(parents=True)
    (root / "app" / "REVISION").write_text("a" * 40 + "\n")
    (root / "data").mkdir()
    with open(root / "data" / "big", "wb") as handle:   # 8 MiB apparent, sparse: no disk used
        handle.truncate(8 * MIB)
    (root / "data" / "real").write_bytes(b"x" * (8 * MIB))  # 8 MiB on disk: room the first pass reuses
    monkeypatch.setattr(server_facts, "_probe", lambda path: (7, 10 * MIB))
    args = {"env": "shop", "root": str(root), "data_paths": [str(root / "data")],
            "need_data_bytes": {str(root / "data"): 12 * MIB}, "need_app_bytes": 41, "headroom_mb": 1}
    result = run_module(capsys, args)
    assert len(result["problems"]) == 1 and result["head_start_bytes"] == {}
    result = run_module(capsys, {**args, "head_start": True})
    assert result["problems"] == [], result["problems"]
    # only what the copy holds on disk counts: the sparse file's 8 MiB would be written out in full
    assert result["head_start_bytes"] == {str(root / "data"): 8 * MIB, str(root / "app"): 41}
    assert result["filesystems"][0]["need_bytes"] == 4 * MIB + 1 * MIB
