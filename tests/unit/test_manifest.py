"""Manifests of real trees copied with rsync: equal after a pass, differences named otherwise."""

import os
import subprocess
import time

import pytest

from ansible_collections.strackt.move.plugins.module_utils import manifest as mf
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def make_env(root):
    data = root / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / "1.txt").write_text("one\n")
    (data / "uploads" / "2.txt").write_text("two\n")
    os.link(data / "uploads" / "1.txt", data / "hard")
    os.symlink("uploads/2.txt", data / "link")
    os.chmod(data / "uploads" / "2.txt", 0o640)
    try:
        os.setxattr(data / "uploads" / "1.txt", "user.tag", b"blue")
    except OSError:
        pass
    return data


def sync(src_root, dst_root):
    (dst_root / "data").mkdir(parents=True, exist_ok=True)
    subprocess.run(["rsync"] + rs.RSYNC_FLAGS + [str(src_root / "data") + "/", str(dst_root / "data") + "/"],
                   check=True, stdout=subprocess.PIPE)


@pytest.fixture
def pair(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_env(src)
    dst.mkdir()
    sync(src, dst)
    return src, dst


def man(root):
    return mf.build([str(root / "data")], str(root))


def test_entries_describe_the_tree(pair):
    src, _ = pair
    entries = {e["path"]: e for e in man(src)}
    assert set(entries) == {"data", "data/uploads", "data/uploads/1.txt", "data/uploads/2.txt",
                            "data/hard", "data/link"}
    f = entries["data/uploads/2.txt"]
    assert f["type"] == "file" and f["mode"] == "0640" and f["size"] == 4
    assert len(f["sha256"]) == 64
    assert entries["data/link"] == {"path": "data/link", "type": "symlink", "target": "uploads/2.txt",
                                    "mode": entries["data/link"]["mode"], "uid": os.getuid(), "gid": os.getgid()}
    assert entries["data/hard"]["link"] == entries["data/uploads/1.txt"]["link"] == "data/hard"
    assert "link" not in entries["data/uploads/2.txt"]


def test_rsynced_copy_is_equal(pair):
    src, dst = pair
    a, b = man(src), man(dst)
    assert mf.digest(a) == mf.digest(b)
    assert mf.compare(a, b)["equal"]
    assert mf.summary(a)["files"] == 3


@pytest.mark.parametrize("change,expect", [
    (lambda d: (d / "uploads" / "1.txt").write_text("ONE\n"), "data/uploads/1.txt: differs in"),
    (lambda d: os.chmod(d / "uploads" / "2.txt", 0o600), "mode (source '0640', target '0600')"),
    (lambda d: os.unlink(d / "uploads" / "2.txt"), "data/uploads/2.txt: missing on target"),
    (lambda d: (d / "extra").write_text("x"), "data/extra: only on target"),
    (lambda d: (os.unlink(d / "hard"), subprocess.run(["cp", "-p", str(d / "uploads" / "1.txt"), str(d / "hard")])),
     "link"),
    (lambda d: (os.unlink(d / "link"), os.symlink("elsewhere", d / "link")), "target (source 'uploads/2.txt'"),
])
def test_differences_are_named(pair, change, expect):
    src, dst = pair
    change(dst / "data")
    res = mf.compare(man(src), man(dst))
    assert not res["equal"] and not res["consistent"]
    assert any(expect in d for d in res["differences"]), res["differences"]
    assert mf.digest(man(src)) != mf.digest(man(dst))


def test_source_ahead_since_pass_start_is_settling_not_a_difference(pair):
    src, dst = pair
    since = time.time_ns()
    time.sleep(0.01)
    (src / "data" / "uploads" / "3.txt").write_text("three\n")       # new on source
    (src / "data" / "uploads" / "1.txt").write_text("one more\n")    # changed on source
    os.unlink(src / "data" / "uploads" / "2.txt")                    # deleted on source
    res = mf.compare(man(src), man(dst), changed_since_ns=since)
    assert res["consistent"] and not res["equal"] and res["settling"] >= 3
    # without the allowance the same state is a mismatch
    assert not mf.compare(man(src), man(dst))["consistent"]
    # but a target-side change is never excused
    (dst / "data" / "extra").write_text("only here\n")
    res = mf.compare(man(src), man(dst), changed_since_ns=since)
    assert not res["consistent"]


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="not under the env root"):
        mf.build(["/etc"], str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        mf.build([str(tmp_path / "nope")], str(tmp_path))


def test_after_the_switch_a_file_missing_on_the_new_server_is_never_excused(pair):
    """The check after the switch-over: `dst` is the stopped old server, `src` the new one now
    writing into the same directory. A file the passes missed must show, however busy that
    directory is; what the new server wrote since the release is its own."""
    new, old = pair
    (old / "data" / "uploads" / "missed.txt").write_text("acknowledged before the freeze\n")
    released = time.time_ns()
    time.sleep(0.01)
    (new / "data" / "uploads" / "after-switch.txt").write_text("written on the new server\n")  # dir is recent
    (new / "data" / "uploads" / "1.txt").write_text("changed on the new server\n")
    lenient = mf.compare(man(new), man(old), changed_since_ns=released, sides=("target", "source"))
    assert lenient["consistent"]  # the parent-directory allowance hides the missed file
    res = mf.compare(man(new), man(old), changed_since_ns=released, sides=("target", "source"), complete=True)
    assert not res["consistent"]
    assert res["differences"] == ["data/uploads/missed.txt: only on source"], res
    os.unlink(old / "data" / "uploads" / "missed.txt")
    res = mf.compare(man(new), man(old), changed_since_ns=released, sides=("target", "source"), complete=True)
    assert res["consistent"], res  # the new server's own writes are not differences
