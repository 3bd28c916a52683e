"""rsync_pass's transfers through the target's guard, on this machine: explicit change lists
with a backup of what they replace or delete (issue 12: the repair and the reverse pull), the
idle timeout and the partial directory (item 11), and the journal kept after a failed pass.

A fake ssh stands in for sshd running the key's forced command: it hands the client's command
to the installed guard as SSH_ORIGINAL_COMMAND. The env root is the same path on both servers;
here the "target" lives elsewhere, so the fake ssh maps the source's root onto it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import script_text

MOVE = "shop-20261130T021846Z"

FAKE_SSH = r'''#!{python}
import os, sys
args = sys.argv[1:]
while args[0].startswith("-"):
    args = args[2:] if args[0] in ("-l", "-p", "-i", "-o") else args[1:]
command = " ".join(args[1:]).replace({src_root!r}, {dst_root!r})
os.environ["SSH_ORIGINAL_COMMAND"] = command
os.execv({guard!r}, [{guard!r}, {dst_root!r}, {move!r}, "data"])
'''


@pytest.fixture
def sides(tmp_path, monkeypatch):
    """(source root, target root): each with data/; rsync reaches the target through the guard."""
    src, dst = tmp_path / "source", tmp_path / "target"
    (src / "data").mkdir(parents=True)
    (dst / "data").mkdir(parents=True)
    guard = tmp_path / "rsync-guard.py"
    guard.write_text(script_text(python=sys.executable))
    guard.chmod(0o755)
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable, guard=str(guard), src_root=str(src), dst_root=str(dst),
                                   move=MOVE))
    ssh.chmod(0o755)
    monkeypatch.setattr(rs, "ssh_command", lambda *a, **k: str(ssh))
    return src, dst


def transfer(src, **kwargs):
    return rs.run_pass([str(src / "data")], str(src), "target", "key", "known_hosts", **kwargs)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_push_of_a_change_list_with_backup_keeps_what_it_replaces_and_deletes(sides):
    src, dst = sides
    write(src / "data" / "a", "new a")
    write(src / "data" / "c", "source c, not listed")
    write(src / "data" / "sub" / "d", "new d")
    write(dst / "data" / "a", "old a")
    write(dst / "data" / "b", "old b, deleted on the source")
    write(dst / "data" / "c", "target c")
    res = transfer(src, changes={str(src / "data"): {"copy": ["a", "sub", "sub/d"], "delete": ["b"]}},
                   backup_to=rs.backup_root(str(src), MOVE))
    assert (dst / "data" / "a").read_text() == "new a"
    assert (dst / "data" / "sub" / "d").read_text() == "new d"
    assert not (dst / "data" / "b").exists()
    assert (dst / "data" / "c").read_text() == "target c"
    (pass_dir,) = os.listdir(dst / ".strackt-backup" / MOVE)  # the pass's own directory
    backup = dst / ".strackt-backup" / MOVE / pass_dir / "data"
    assert (backup / "a").read_text() == "old a" and (backup / "b").read_text() == "old b, deleted on the source"
    assert sorted(os.listdir(backup)) == ["a", "b"]
    assert res["backed_up"] == 2 and res["backup_dir"] == str(src / ".strackt-backup" / MOVE / pass_dir)


def test_a_full_pull_with_backup_keeps_every_source_file_it_replaces_or_deletes(sides):
    src, dst = sides
    write(src / "data" / "x", "source x")
    write(src / "data" / "only-here", "the source's own")
    write(src / "data" / "same", "same")
    write(dst / "data" / "x", "target x, newer")
    write(dst / "data" / "same", "same")
    os.utime(src / "data" / "same", ns=(0, 10**18))
    os.utime(dst / "data" / "same", ns=(0, 10**18))
    res = transfer(src, direction="pull", backup_to=rs.backup_root(str(src), MOVE))
    assert (src / "data" / "x").read_text() == "target x, newer"
    assert not (src / "data" / "only-here").exists()
    backup = os.path.join(res["backup_dir"], "data")
    assert os.path.dirname(res["backup_dir"]) == str(src / ".strackt-backup" / MOVE)
    assert open(os.path.join(backup, "x")).read() == "source x"
    assert open(os.path.join(backup, "only-here")).read() == "the source's own"
    assert not os.path.exists(os.path.join(backup, "same"))
    assert res["backed_up"] == 2


def test_a_pull_run_again_keeps_the_first_pulls_backup_of_each_original(sides):
    """A rollback that failed after its pull is run again and pulls again (the listed paths are
    copied whatever their times): its backup of a file is the first pull's copy of the target's
    version. Written over the first pull's backup, the source's original would be gone."""
    src, dst = sides
    write(src / "data" / "x", "the source's original x")
    write(dst / "data" / "x", "the target's x")
    changes = {str(src / "data"): {"copy": ["x"], "delete": []}}
    first = transfer(src, direction="pull", changes=changes, backup_to=rs.backup_root(str(src), MOVE))
    time.sleep(0.001)
    again = transfer(src, direction="pull", changes=changes, backup_to=rs.backup_root(str(src), MOVE))
    assert (src / "data" / "x").read_text() == "the target's x"
    kept = sorted(open(os.path.join(root, name)).read()
                  for root, _dirs, names in os.walk(src / ".strackt-backup" / MOVE) for name in names)
    assert "the source's original x" in kept, kept
    assert first["backup_dir"] != again["backup_dir"]


def test_without_backup_nothing_is_kept_and_no_figures_claim_so(sides):
    src, dst = sides
    write(src / "data" / "a", "a")
    res = transfer(src)
    assert (dst / "data" / "a").read_text() == "a"
    assert "backup_dir" not in res and "backed_up" not in res
    assert not (dst / ".strackt-backup").exists()


@pytest.mark.parametrize("changes, why", [
    ({"/srv/other": {"copy": ["a"]}}, "not one of the data paths"),
    ({"/srv/shop/data": {"copy": ["../app/x"]}}, "not a path relative"),
    ({"/srv/shop/data": {"copy": ["/etc/passwd"]}}, "not a path relative"),
    ({"/srv/shop/data": {"keep": ["a"]}}, "must be {copy"),
    ({"/srv/shop/data": {"delete": "a"}}, "must be a list"),
])
def test_a_bad_change_list_is_refused_naming_the_entry(changes, why):
    with pytest.raises(ValueError, match=None) as exc:
        rs.validate_changes(changes, ["/srv/shop/data"])
    assert why in str(exc.value)


def test_passes_keep_partial_transfers_and_time_out_when_idle_not_by_the_clock():
    argv = rs.build_argv("/srv/shop/data", "h", "data", "k", "kh", idle_timeout=60)
    assert "--partial-dir=.strackt-partial" in argv and "--timeout=60" in argv
    argv = rs.build_argv("/srv/shop/data", "h", "data", "k", "kh", backup_dir="/srv/shop/.strackt-backup/m/data")
    assert argv[argv.index("--backup") + 1] == "--backup-dir=/srv/shop/.strackt-backup/m/data"


def test_an_interrupted_transfer_goes_on_from_where_it_stopped(sides, tmp_path):
    """Item 11: the client is killed mid-file; the receiver keeps what arrived in
    .strackt-partial/, and the next pass sends only the rest (literal data well below the size)."""
    src, dst = sides
    size = 24 * 1024 * 1024
    (src / "data" / "big").write_bytes(os.urandom(size))
    argv = rs.build_argv(str(src / "data"), "target", "data", "k", "kh", idle_timeout=30)
    slow = subprocess.Popen(argv[:1] + ["--bwlimit=6000"] + argv[1:], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = dst / "data" / ".strackt-partial" / "big"
    time.sleep(2.0)  # ~12 MB of 24 have gone
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the receiver saves the partial file once it sees the connection end
    assert partial.exists() and 0 < partial.stat().st_size < size
    kept = partial.stat().st_size
    res = transfer(src, idle_timeout=30)
    assert (dst / "data" / "big").read_bytes() == (src / "data" / "big").read_bytes()
    assert res["literal_bytes"] <= size - kept + 1024 * 1024, (res, kept)
    assert not (dst / "data" / ".strackt-partial").exists()


class _Journal:
    def __init__(self):
        self.calls = []

    @contextlib.contextmanager
    def pass_lock(self):
        self.calls.append(("lock",))
        try:
            yield
        finally:
            self.calls.append(("unlock",))

    def plan(self):
        return {"mode": "incremental", "reason": "1 to copy", "changes": {}, "token": ["inv", 10]}

    def committed(self, token):
        self.calls.append(("committed", token))

    def forget(self):
        self.calls.append(("forget",))


def test_a_failed_pass_keeps_the_journal_so_the_next_reads_from_the_last_committed_offset(monkeypatch):
    def failing(*a, **k):
        raise rs.RsyncError("rsync exited 30: timeout in data send/receive", rc=30)
    monkeypatch.setattr(rs, "run_pass", failing)
    journal = _Journal()
    with pytest.raises(rs.RsyncError):
        rs.journaled_pass(journal, ["/srv/shop/data"], "/srv/shop", "h", "k", "kh")
    assert journal.calls == [("lock",), ("unlock",)]


def test_a_pass_asked_for_the_barrier_leaves_it_after_its_last_run_only(sides, monkeypatch):
    """The freeze's final pass carries the barrier: its last rsync run (here the deletions, after
    the copies) asks the target's guard to write it once that run succeeded, so nothing of the
    pass arrives after it and no run of its own is needed."""
    src, dst = sides
    write(src / "data" / "a", "new a")
    write(dst / "data" / "b", "deleted on the source")
    barrier = dst / "data" / (".strackt-barrier-" + MOVE)
    real_run, remote_commands = rs.run, []

    def run(argv, timeout=None):
        assert not barrier.exists(), "the barrier arrived before the pass's last run"
        remote_commands.append([a for a in argv if a.startswith("--rsync-path=")])
        return real_run(argv, timeout=timeout)

    monkeypatch.setattr(rs, "run", run)
    res = transfer(src, changes={str(src / "data"): {"copy": ["a"], "delete": ["b"]}}, barrier=True)
    assert remote_commands == [[], ["--rsync-path=" + rs.BARRIER_REMOTE_COMMAND]]
    assert res["barrier"] is True and barrier.read_text().startswith(MOVE)
    assert (dst / "data" / "a").read_text() == "new a" and not (dst / "data" / "b").exists()


def test_a_pass_with_nothing_to_copy_runs_nothing_and_says_it_left_no_barrier(sides, monkeypatch):
    src, dst = sides
    monkeypatch.setattr(rs, "run", lambda argv, timeout=None: pytest.fail("nothing to copy: no rsync run"))
    res = transfer(src, changes={str(src / "data"): {"copy": [], "delete": []}}, barrier=True)
    assert res["barrier"] is False and not (dst / "data" / (".strackt-barrier-" + MOVE)).exists()

