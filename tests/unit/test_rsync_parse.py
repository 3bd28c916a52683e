"""Parsing rsync --itemize-changes --stats output, captured from real local rsync runs."""

import os
import subprocess
import threading

import pytest

from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def local_rsync(src, dst, *extra):
    argv = ["rsync"] + rs.RSYNC_FLAGS + list(extra) + [str(src) + "/", str(dst) + "/"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
                          universal_newlines=True, env=dict(os.environ, LC_ALL="C"))
    return proc.stdout


@pytest.fixture
def trees(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "uploads").mkdir(parents=True)
    dst.mkdir()
    (src / "uploads" / "1.txt").write_text("one\n")
    (src / "uploads" / "2.txt").write_text("two two\n")
    os.link(src / "uploads" / "1.txt", src / "hard")
    os.symlink("uploads/1.txt", src / "link")
    with open(src / "sparse", "wb") as fh:
        fh.truncate(1 << 20)
    (dst / "stale").write_text("deleted on source\n")
    return src, dst


def test_first_pass_counts_everything(trees):
    src, dst = trees
    out = local_rsync(src, dst)
    items = rs.parse_itemized(out)
    assert ("*deleting", "stale") in items
    s = rs.summarize(out)
    # root dir, uploads/, 2 uploads, hard, link, sparse
    assert s["files_total"] == 7
    assert s["bytes_total"] == 4 + 8 + 4 + (1 << 20) + len("uploads/1.txt")
    assert s["files_deleted"] == 1
    assert s["files_changed"] == len(items) >= 6
    assert s["bytes_changed"] >= (1 << 20)
    assert os.stat(dst / "hard").st_ino == os.stat(dst / "uploads" / "1.txt").st_ino


def test_second_pass_is_quiet_then_counts_only_the_change(trees):
    src, dst = trees
    local_rsync(src, dst)
    quiet = rs.summarize(local_rsync(src, dst))
    assert quiet["files_changed"] == 0 and quiet["bytes_changed"] == 0
    assert quiet["files_total"] == 7
    (src / "uploads" / "3.txt").write_text("three\n")
    os.unlink(src / "uploads" / "2.txt")
    out = local_rsync(src, dst)
    s = rs.summarize(out)
    items = rs.parse_itemized(out)
    assert ("*deleting", "uploads/2.txt") in items
    assert any(name == "uploads/3.txt" and code.startswith(">f+") for code, name in items)
    assert rs.parse_itemized(local_rsync(src, dst, "--dry-run")) == []  # now in sync
    assert s["files_deleted"] == 1
    assert s["bytes_changed"] == len("three\n")
    # the two files, plus uploads/ when its mtime moved to another second
    assert s["files_changed"] == len(items) in (2, 3)


def test_dry_run_reports_without_copying(trees):
    src, dst = trees
    s = rs.summarize(local_rsync(src, dst, "--dry-run"))
    assert s["files_changed"] >= 6
    assert not (dst / "uploads").exists()
    assert (dst / "stale").exists()


def test_stats_with_thousands_separators():
    out = ("Number of files: 20,001 (reg: 20,000, dir: 1)\n"
           "Total file size: 524,288,000 bytes\n"
           "Total transferred file size: 1,234 bytes\n")
    s = rs.summarize(out)
    assert (s["files_total"], s["bytes_total"], s["bytes_changed"], s["files_changed"]) == \
        (20001, 524288000, 1234, 0)


def test_no_stats_is_an_error():
    with pytest.raises(rs.RsyncError, match="no --stats"):
        rs.summarize("rsync: connection unexpectedly closed\n")


def test_run_reports_failure_with_stderr(tmp_path):
    argv = ["rsync"] + rs.RSYNC_FLAGS + [str(tmp_path / "missing") + "/", str(tmp_path / "d") + "/"]
    with pytest.raises(rs.RsyncError, match=r"rsync exited 23: .*missing"):
        rs.run(argv)


def test_run_ok_and_vanished_is_not_an_error(tmp_path, trees):
    src, dst = trees
    res, dur = rs.run(["rsync"] + rs.RSYNC_FLAGS + [str(src) + "/", str(dst) + "/"])
    assert res["rc"] == 0 and not res["vanished"] and dur >= 0
    fake = tmp_path / "fake-rsync"
    fake.write_text("#!/bin/sh\necho 'Number of files: 1'\necho 'Total file size: 0 bytes'\n"
                    "echo 'Total transferred file size: 0 bytes'\necho 'file has vanished' >&2\nexit 24\n")
    fake.chmod(0o755)
    res, _ = rs.run([str(fake)])
    assert res["vanished"] and res["rc"] == 24


def test_build_argv_pins_key_and_host_key():
    argv = rs.build_argv("/srv/shop/data", "10.77.0.12", rs.remote_rel("/srv/shop", "/srv/shop/data"),
                         "/root/.strackt-move/m/id_ed25519", "/root/.strackt-move/m/known_hosts",
                         dry_run=True)
    assert argv[-2:] == ["/srv/shop/data/", "root@10.77.0.12:data/"]
    assert "--dry-run" in argv and "--numeric-ids" in argv and "-rlptgoHAXS" in argv
    ssh = argv[argv.index("-e") + 1]
    assert "StrictHostKeyChecking=yes" in ssh and "UserKnownHostsFile=/root/.strackt-move/m/known_hosts" in ssh
    pull = rs.build_argv("/srv/shop/data", "10.77.0.12", "data", "k", "kh", direction="pull")
    assert pull[-2:] == ["root@10.77.0.12:data/", "/srv/shop/data/"]
    with pytest.raises(ValueError, match="not under the env root"):
        rs.remote_rel("/srv/shop", "/srv/other")


def test_a_file_vanishing_while_real_rsync_runs_is_exit_24_and_not_an_error(tmp_path):
    """A real rsync slowed to 2 MB/s is copying a 4 MB file when the file after it goes: exit 24,
    which run() accepts (a live source), and the pass's figures are still read."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a-big").write_bytes(os.urandom(4 * 1024 * 1024))
    (src / "z-small").write_text("gone before its turn")
    # the file list is made in a few ms; a-big then takes ~2 s at 2 MB/s
    deleter = threading.Timer(0.5, (src / "z-small").unlink)
    deleter.start()
    res, _ = rs.run(["rsync"] + rs.RSYNC_FLAGS + ["--bwlimit=2000", str(src) + "/", str(dst) + "/"])
    deleter.join()
    assert res["rc"] == 24 and res["vanished"]
    assert res["files_total"] >= 3  # ., a-big, z-small were listed
    assert (dst / "a-big").stat().st_size == 4 * 1024 * 1024 and not (dst / "z-small").exists()
