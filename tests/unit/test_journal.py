"""The change journal's reading of inotifywait records, and the incremental rsync it drives."""

import os
import time
import subprocess

import pytest

from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def records(*lines):
    return b"".join(line.encode() + b"\0" for line in lines)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "1.txt").write_text("one")
    return root


def journal(tmp_path, root):
    return jr.Journal(str(tmp_path / "mv" / "journal"), [str(root)])


def test_unit_name_is_the_move():
    assert jr.unit_name("/root/.strackt-move/shop-20261125T123456Z/journal") == \
        "strackt-journal-shop-20261125T123456Z.service"


def test_existing_paths_are_copied_missing_ones_deleted(tmp_path, data):
    j = journal(tmp_path, data)
    changes, why = j.parse(records(f"CLOSE_WRITE,CLOSE {data}/uploads/1.txt",
                                   f"DELETE {data}/uploads/0.txt",
                                   f"ATTRIB,ISDIR {data}/uploads"))
    assert why is None
    assert changes[str(data)] == {"copy": ["uploads", "uploads/1.txt"], "delete": ["uploads/0.txt"]}


def test_a_temporary_file_made_after_the_last_pass_needs_no_deletion(tmp_path, data):
    j = journal(tmp_path, data)
    stream = records(f"CREATE {data}/uploads/2.tmp", f"MOVED_FROM {data}/uploads/2.tmp")
    changes, _ = j.parse(stream, settled=0)
    assert changes[str(data)]["delete"] == []
    # ...but one created while the last pass ran may have been copied: delete it
    changes, _ = j.parse(stream, settled=len(stream))
    assert changes[str(data)]["delete"] == ["uploads/2.tmp"]


def test_a_new_directory_is_walked(tmp_path, data):
    (data / "new" / "sub").mkdir(parents=True)
    (data / "new" / "sub" / "f").write_text("x")
    changes, _ = journal(tmp_path, data).parse(records(f"CREATE,ISDIR {data}/new"))
    assert changes[str(data)]["copy"] == ["new", "new/sub", "new/sub/f"]


def test_barrier_markers_are_not_data(tmp_path, data):
    changes, _ = journal(tmp_path, data).parse(records(f"DELETE {data}/{jr.BARRIER_PREFIX}1-2"))
    assert changes[str(data)] == {"copy": [], "delete": []}


@pytest.mark.parametrize("line, reason", [
    ("Q_OVERFLOW ", "overflowed"),
    ("DELETE_SELF {data}/", "removed or moved"),
    ("garbage", "unreadable"),
])
def test_when_the_journal_cannot_vouch_the_pass_is_full(tmp_path, data, line, reason):
    changes, why = journal(tmp_path, data).parse(records(line.format(data=data)))
    assert changes is None and reason in why


def test_change_rules_reach_only_the_named_paths():
    assert rs.change_rules(["a/new"], ["a/b*c", "a/d"]) == [
        "/a/", "/a/new", "/a/b\\*c", "/a/b\\*c/***", "/a/d", "/a/d/***"]
    # a backslash is literal in a pattern without wildcards, an escape in one with them
    assert rs.change_rules(["x\\y"], ["x\\y"]) == ["/x\\y", "/x\\\\y/***"]


def _changes_pass(tmp_path, data, dst, copy, delete):
    """What run_pass does for one data path: the copy run, then the deletion run."""
    lists = tmp_path / "copy"
    lists.write_bytes(b"".join(p.encode() + b"\0" for p in copy))
    subprocess.run(["rsync"] + rs.INCREMENTAL_FLAGS + [f"--files-from={lists}", f"{data}/", f"{dst}/"],
                   check=True, capture_output=True, text=True)
    rules = tmp_path / "rules"
    rules.write_bytes(b"".join(r.encode() + b"\0" for r in rs.change_rules([], delete)))
    subprocess.run(["rsync"] + rs.DELETION_FLAGS + [f"--include-from={rules}", "--exclude=*", f"{data}/", f"{dst}/"],
                   check=True, capture_output=True, text=True)


def test_incremental_runs_copy_and_delete_only_what_is_named(tmp_path, data):
    dst = tmp_path / "dst"
    subprocess.run(["rsync"] + rs.RSYNC_FLAGS + [f"{data}/", f"{dst}/"], check=True, capture_output=True)
    (dst / "uploads" / "gone").mkdir()
    (dst / "uploads" / "gone" / "f").write_text("x")
    (dst / "uploads" / "keep-extra").write_text("not named: stays")
    (dst / "uploads" / "was here").write_text("named, gone on the source: deleted")
    (data / "uploads" / "2.txt").write_text("two")
    (data / "uploads" / "odd [name] *").write_text("wild")
    (data / "uploads" / "back\\slash").write_text("literal")
    (data / "uploads" / "new dir").mkdir()
    (data / "uploads" / "new dir" / "in it").write_text("inside")
    (data / "uploads" / "new dir" / "not named").write_text("left for a later pass")
    _changes_pass(tmp_path, data, dst,
                  ["uploads/2.txt", "uploads/odd [name] *", "uploads/back\\slash", "uploads/new dir",
                   "uploads/new dir/in it", "uploads/vanished"],
                  ["uploads/gone", "uploads/was here", "uploads/vanished"])
    assert (dst / "uploads" / "2.txt").read_text() == "two"
    assert (dst / "uploads" / "odd [name] *").read_text() == "wild"
    assert (dst / "uploads" / "back\\slash").read_text() == "literal"
    assert (dst / "uploads" / "new dir" / "in it").read_text() == "inside"
    assert not (dst / "uploads" / "new dir" / "not named").exists()
    assert not (dst / "uploads" / "gone").exists()
    assert not (dst / "uploads" / "was here").exists()
    assert not (dst / "uploads" / "vanished").exists()
    assert (dst / "uploads" / "keep-extra").exists()


def test_a_changed_file_with_hard_links_forces_a_full_pass(tmp_path) -> None:
    from ansible_collections.strackt.move.plugins.module_utils.journal import Journal

    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("one")
    os.link(data / "a", data / "b")
    (data / "plain").write_text("x")
    journal = Journal(str(tmp_path / "journal"), [str(data)])
    plain, why = journal.parse(f"MODIFY {data / 'plain'}".encode() + b"\0")
    assert why is None and plain[str(data)]["copy"] == ["plain"]
    changes, why = journal.parse(f"MODIFY {data / 'a'}".encode() + b"\0")
    assert changes is None and "hard links" in why


def test_directories_made_since_the_last_pass_are_the_ones_checked_for_a_watch(tmp_path, data):
    (data / "new" / "deeper").mkdir(parents=True)
    (data / "moved-in").mkdir()
    j = journal(tmp_path, data)
    found = j.new_directories(records(f"CREATE,ISDIR {data}/new", f"MOVED_TO,ISDIR {data}/moved-in",
                                      f"CREATE,ISDIR {data}/gone-again", f"ATTRIB,ISDIR {data}/uploads",
                                      f"CREATE {data}/uploads/2.txt"))
    assert found == [str(data / "new"), str(data / "moved-in")]


class _FakeWatcher(jr.Journal):
    def __init__(self, tmp_path, root, watched):
        super().__init__(str(tmp_path / "mv" / "journal"), [str(root)])
        self._watched = watched

    def watched_inodes(self):
        return self._watched


def test_a_directory_inotifywait_skipped_is_found(tmp_path, data):
    (data / "new" / "deeper").mkdir(parents=True)
    all_dirs = {os.lstat(p).st_ino for p in (data, data / "uploads", data / "new", data / "new" / "deeper")}
    assert _FakeWatcher(tmp_path, data, all_dirs).unwatched() == []
    skipped = all_dirs - {os.lstat(data / "uploads").st_ino}
    assert _FakeWatcher(tmp_path, data, skipped).unwatched() == [str(data / "uploads")]
    assert _FakeWatcher(tmp_path, data, skipped).unwatched([str(data / "new")]) == []
    with pytest.raises(jr.JournalError, match="cannot read which directories"):
        _FakeWatcher(tmp_path, data, None).unwatched()


def test_fdinfo_watch_lines_give_the_inode():
    line = "inotify wd:3 ino:1a2b sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:2b1a\n"
    assert int(jr._FDINFO_RE.match(line).group(1), 16) == 0x1A2B
    assert jr._FDINFO_RE.match("pos:\t0\n") is None


def test_a_rename_over_an_existing_file_then_its_deletion_deletes_it_on_the_other_side(tmp_path, data):
    """Issue 12, item 6: `mv new uploads/1.txt` replaces a file the other side has; when the path
    is deleted before the next pass, that pass must delete it there (MOVED_TO is no creation)."""
    stream = records(f"CREATE {data}/uploads/new", f"CLOSE_WRITE,CLOSE {data}/uploads/new",
                     f"MOVED_FROM {data}/uploads/new", f"MOVED_TO {data}/uploads/1.txt",
                     f"DELETE {data}/uploads/1.txt")
    (data / "uploads" / "1.txt").unlink()
    changes, why = journal(tmp_path, data).parse(stream, settled=0)
    assert why is None
    assert changes[str(data)]["delete"] == ["uploads/1.txt"]


def test_a_same_size_rewrite_keeping_its_mtime_is_copied_by_an_incremental_pass(tmp_path, data):
    """Issue 12, item 7: the journal names the file; rsync's quick check must not skip it."""
    dst = tmp_path / "dst"
    subprocess.run(["rsync"] + rs.RSYNC_FLAGS + [f"{data}/", f"{dst}/"], check=True, capture_output=True)
    f = data / "uploads" / "1.txt"
    st = f.stat()
    f.write_text("ONE")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    _changes_pass(tmp_path, data, dst, ["uploads/1.txt"], [])
    assert (dst / "uploads" / "1.txt").read_text() == "ONE"


# ---- the journal unit: bounded, its failures noticed at once (issue 12, items 10 and 15) --------

class _Systemd:
    """What Journal asks systemd: the unit's state (fixed here) and stop/reset (recorded)."""

    def __init__(self, active=True, invocation="inv-1"):
        self.active, self.invocation, self.calls = active, invocation, []

    def show(self, unit, *props):
        return {"ActiveState": "active" if self.active else "failed", "InvocationID": self.invocation}

    def stop(self, *units, check=True):
        self.calls.append(("stop",) + units)
        return 0, ""

    def stop_within(self, unit, timeout_s):
        self.calls.append(("stop_within", unit, timeout_s))
        return (124, "") if getattr(self, "hangs", False) else (0, "")

    def systemctl(self, *args, check=False):
        self.calls.append(("systemctl",) + args)
        return 0, ""

    def reset_failed(self, *units):
        return 0, ""

    def units(self, prefix, types=("socket", "service")):
        return {u: True for u in getattr(self, "loaded", ()) if u.startswith(prefix + "-")}


def test_a_stop_also_ends_a_start_of_the_move_s_journal_this_object_did_not_see(tmp_path):
    """Two passes in turn: the first restarted the journal under a new name; the second's Journal
    was made before that (it read the name when made). Its stop still ends the running unit."""
    seen = _Systemd()
    seen.loaded = ["strackt-journal-shop-1-1700000000000.service"]
    jr.Journal(str(tmp_path / "shop-1" / "journal"), [str(tmp_path)], systemd=seen).stop()
    stopped = [c[1] for c in seen.calls if c[0] == "stop_within"]
    assert "strackt-journal-shop-1-1700000000000.service" in stopped


def test_the_pass_lock_rereads_the_journal_s_unit_name(tmp_path):
    journal = jr.Journal(str(tmp_path / "shop-1" / "journal"), [str(tmp_path)], systemd=_Systemd())
    other = jr.Journal(str(tmp_path / "shop-1" / "journal"), [str(tmp_path)], systemd=_Systemd())
    os.makedirs(other.dir)
    other.unit = "strackt-journal-shop-1-42.service"
    other._save({})  # the other pass restarted the journal under a new name
    assert journal.unit != other.unit
    with journal.pass_lock():
        assert journal.unit == "strackt-journal-shop-1-42.service"


def test_a_pass_lock_held_elsewhere_is_waited_for_only_as_long_as_asked(tmp_path):
    journal = jr.Journal(str(tmp_path / "j"), [str(tmp_path)], systemd=_Systemd())
    with journal.pass_lock():
        with pytest.raises(jr.JournalError, match="still holds"):
            with jr.Journal(str(tmp_path / "j"), [str(tmp_path)], systemd=_Systemd()).pass_lock(timeout=0.05):
                pass


def test_a_journal_that_does_not_end_at_its_stop_is_killed_after_a_few_seconds(tmp_path):
    """Seen on the testbed: stopping the new server's journal at a finish took 90 s (systemd's stop
    timeout). The journal only observes; a finish, a rollback or a re-arm must not wait on it."""
    quick = _Systemd()
    jr.Journal(str(tmp_path), [str(tmp_path)], systemd=quick).stop()
    assert [c[0] for c in quick.calls] == ["stop_within"] and quick.calls[0][2] <= jr.STOP_WAIT_S
    stuck = _Systemd()
    stuck.hangs = True
    jr.Journal(str(tmp_path), [str(tmp_path)], systemd=stuck).stop()
    unit = jr.unit_name(str(tmp_path))
    assert stuck.calls[1] == ("systemctl", "kill", "--signal=SIGKILL", unit)
    assert stuck.calls[2] == ("stop", unit)


FAKE_INOTIFYWAIT = r"""#!/bin/sh
# stands in for inotifywait: {behaviour}
{body}
"""


def _run_pipeline(tmp_path, body, bound):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "inotifywait"
    fake.write_text(FAKE_INOTIFYWAIT.format(behaviour="", body=body))
    fake.chmod(0o755)
    events = tmp_path / "events"
    proc = subprocess.run(["/bin/sh", "-c", jr.pipeline(bound), str(events), str(tmp_path)],
                          env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"), timeout=30,
                          capture_output=True)
    return proc, events


def test_the_events_file_stops_growing_at_its_bound_and_the_journal_ends(tmp_path):
    # an endless writer: the pipeline ends by itself (else _run_pipeline's timeout fails the test)
    _proc, events = _run_pipeline(tmp_path, 'while :; do printf "MODIFY /d/file-with-a-name\\0"; done', 4096)
    assert 4096 <= events.stat().st_size <= 4096 + 65536  # what tee wrote before it saw head go


def test_what_inotifywait_said_when_it_could_not_start_is_kept(tmp_path):
    msg = "Failed to watch /srv/x/data; upper limit on inotify watches reached!"
    _proc, events = _run_pipeline(tmp_path, f'echo "{msg}" >&2; exit 1', 1 << 20)
    journal = jr.Journal(str(tmp_path), [str(tmp_path)], systemd=_Systemd(active=False))
    assert journal.events == str(events)
    assert "upper limit on inotify watches reached" in journal.why_stopped()


def test_a_journal_that_stopped_is_noticed_within_a_fraction_of_a_second_with_its_reason(tmp_path, data):
    j = jr.Journal(str(tmp_path / "mv" / "journal"), [str(data)], systemd=_Systemd(active=False))
    os.makedirs(j.dir)
    open(j.events, "wb").close()
    with open(j.stderr, "w") as f:
        f.write("Failed to watch /srv/x/data; upper limit on inotify watches reached!\n")
    t0 = time.monotonic()
    with pytest.raises(jr.JournalError, match="not running: inotifywait: Failed to watch .* upper limit"):
        j.barrier(timeout=30.0)
    assert time.monotonic() - t0 < 1.0


class _Planned(jr.Journal):
    """A journal whose unit and barrier are stand-ins: the decision of plan() on its own."""

    def __init__(self, tmp_path, root, systemd, bound=jr.MAX_EVENTS_BYTES):
        super().__init__(str(tmp_path / "mv" / "journal"), [str(root)], systemd=systemd, max_events_bytes=bound)
        os.makedirs(self.dir, exist_ok=True)
        self.restarts = 0

    def start_watching_all(self, attempts=3):
        self.restarts += 1
        with open(self.events, "wb"):
            pass
        return "inv-2"

    def barrier(self, timeout=5.0, since=0):
        return self.events_size()

    def unwatched(self, roots=None, limit=5):
        return []


def test_past_its_bound_the_next_plan_restarts_the_journal_and_makes_one_full_pass(tmp_path, data):
    j = _Planned(tmp_path, data, _Systemd(), bound=1000)
    with open(j.events, "wb") as f:
        f.write(records(*[f"MODIFY {data}/uploads/1.txt"] * 40))
    j._save({"invocation": "inv-1", "offset": 0, "end_offset": 0})
    plan = j.plan()
    assert plan["mode"] == "full" and "reached its bound (1000 bytes)" in plan["reason"]
    assert j.restarts == 1 and j.events_size() == 0
    j._save({"invocation": "inv-2", "offset": 0, "end_offset": 0})
    j.systemd.invocation = "inv-2"
    assert j.plan()["mode"] == "incremental"


def test_after_a_failed_first_pass_the_running_journal_is_kept(tmp_path, data):
    j = _Planned(tmp_path, data, _Systemd())
    j._save({"invocation": "inv-1"})  # started, no pass committed against it
    plan = j.plan()
    assert plan["mode"] == "full" and plan["token"][0] == "inv-1" and j.restarts == 0


class _VanishingOnce(jr.Journal):
    """inotifywait ends the first time (a directory vanished while it set up its watches)."""

    def __init__(self, *args, failures=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures, self.starts = failures, 0

    def start(self):
        self.starts += 1
        if self.starts <= self.failures:
            raise jr.JournalError("the change journal strackt-journal-x.service is not running: inotifywait: "
                                  "Couldn't watch /srv/shop/data: No such file or directory")
        return "invocation-%d" % self.starts

    def unwatched(self):
        return []

    def stop(self):
        pass


def test_a_directory_vanishing_while_the_watches_are_set_up_is_retried(tmp_path):
    journal = _VanishingOnce(str(tmp_path / "j"), [str(tmp_path)])
    assert journal.start_watching_all() == "invocation-2" and journal.starts == 2


def test_a_journal_that_keeps_failing_to_start_says_why(tmp_path):
    journal = _VanishingOnce(str(tmp_path / "j"), [str(tmp_path)], failures=3)
    with pytest.raises(jr.JournalError, match="No such file or directory"):
        journal.start_watching_all()
    assert journal.starts == 3


class _Lingering(_Systemd):
    """systemd keeps every stopped journal unit loaded past every wait: its name is refused."""

    def __init__(self):
        super().__init__()
        self.stopped = set()

    def run_transient(self, unit, command, description, check=True, **kwargs):
        self.calls.append(("run", unit))
        if unit in self.stopped:
            raise jr.SystemdError("cannot start %s: Failed to start transient service unit: Unit %s was already "
                                  "loaded or has a fragment file." % (unit, unit))
        return 0

    def stop_within(self, unit, timeout_s):
        self.stopped.add(unit)
        return super().stop_within(unit, timeout_s)


class _NoBarrier(jr.Journal):
    def barrier(self, timeout=5.0, since=0):
        return None


def test_every_start_takes_a_fresh_name_that_later_looks_and_stops_use(tmp_path):
    """Seen in CI twice: the re-arm at the switch-over met the unit the stop before it ended
    still loaded, and the cutover failed. Each start takes a name no stop has ended, and keeps it."""
    systemd = _Lingering()
    journal_dir = tmp_path / "mv" / "journal"
    journal = _NoBarrier(str(journal_dir), [str(tmp_path)], systemd=systemd)
    assert journal.start() == "inv-1"
    first = journal.unit
    assert first != journal.base_unit and first.startswith(journal.base_unit[:-len(".service")] + "-")
    time.sleep(0.002)
    assert journal.start() == "inv-1"  # the re-arm: the first name is stopped and stays loaded
    second = journal.unit
    assert second not in (first, journal.base_unit) and first in systemd.stopped
    assert [c for c in systemd.calls if c[0] == "run"] == [("run", first), ("run", second)]
    again = jr.Journal(str(journal_dir), [str(tmp_path)], systemd=systemd)  # the next module call
    assert again.unit == second
    systemd.calls.clear()
    again.stop()
    # the base name too: a journal started before names were fresh
    assert sorted(c[1] for c in systemd.calls if c[0] == "stop_within") == sorted([second, journal.base_unit])


def test_a_temporary_file_made_while_the_last_pass_ran_needs_no_deletion_unless_that_pass_named_it(tmp_path, data):
    """The catch-up pass runs right before the freeze, the app writes meanwhile: a temp file made
    and renamed away while it ran used to cost the freeze's final pass a deletion run. The last
    pass copied only what its own plan named (and, for a path it deleted, everything under it):
    a path made while it ran that neither it nor a path above or below it was named by that plan
    never reached the other side."""
    j = _Planned(tmp_path, data, _Systemd())
    before = records(f"CLOSE_WRITE,CLOSE {data}/uploads/1.txt",  # the last pass's own window
                     f"DELETE {data}/uploads/3.txt",
                     f"DELETE,ISDIR {data}/uploads/d")
    during = records(f"CREATE {data}/uploads/2.tmp", f"MOVED_FROM {data}/uploads/2.tmp",  # never named
                     f"CREATE {data}/uploads/3.txt", f"DELETE {data}/uploads/3.txt",  # named: may be there
                     f"CREATE,ISDIR {data}/uploads/d", f"CREATE {data}/uploads/d/t",  # under a deleted path
                     f"DELETE {data}/uploads/d/t", f"DELETE,ISDIR {data}/uploads/d")
    with open(j.events, "wb") as f:
        f.write(before + during)
    j._save({"invocation": "inv-1", "offset": len(before), "end_offset": len(before + during), "listed_from": 0})
    plan = j.plan()
    assert plan["mode"] == "incremental"
    assert plan["changes"][str(data)]["delete"] == ["uploads/3.txt", "uploads/d", "uploads/d/t"]
    # the pass names where its own window began: the next plan reads that far back
    assert plan["token"] == ["inv-1", len(before + during), len(before)]
    j.committed(plan["token"])
    assert j._load()["listed_from"] == len(before) and j._load()["offset"] == len(before + during)
    # after a full pass (no listed_from) anything made while it ran may be there: deleted
    j._save({"invocation": "inv-1", "offset": len(before), "end_offset": len(before + during)})
    assert j.plan()["changes"][str(data)]["delete"] == ["uploads/2.tmp", "uploads/3.txt", "uploads/d", "uploads/d/t"]


def test_a_pass_that_failed_after_its_plan_leaves_no_shortcut_for_the_next(tmp_path, data):
    """A pass plans, copies a temp file made while the last one ran, then fails (no commit). The
    next plan reads from the same offset: neither `settled` nor `listed_from` may vouch for what
    that failed pass did, so the temp file, gone now, is deleted on the other side."""
    j = _Planned(tmp_path, data, _Systemd())
    before = records(f"CLOSE_WRITE,CLOSE {data}/uploads/1.txt")
    during = records(f"CREATE {data}/uploads/t", f"CLOSE_WRITE,CLOSE {data}/uploads/t")
    gone = records(f"DELETE {data}/uploads/t")
    with open(j.events, "wb") as f:
        f.write(before + during)
    j._save({"invocation": "inv-1", "offset": len(before), "end_offset": len(before + during), "listed_from": 0})
    (data / "uploads" / "t").write_text("copied by the pass that then failed")
    failed = j.plan()
    assert failed["changes"][str(data)]["copy"] == ["uploads/t"]
    # ...the pass fails: no committed(); the app deletes t
    (data / "uploads" / "t").unlink()
    with open(j.events, "ab") as f:
        f.write(gone)
    assert j.plan()["changes"][str(data)]["delete"] == ["uploads/t"]
