# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change journal on the source: what changed in the data paths since the last pass.

An ``inotifywait -m -r`` runs as a transient unit (``strackt-journal-<move_id>-<ms>``) for the whole
move and appends NUL-terminated ``EVENTS PATH`` records to ``<journal_dir>/events``.
``<journal_dir>/state.json`` remembers which journal (the unit's InvocationID) the last
successful pass was taken against and the offset in ``events`` it covered.

A pass is incremental (``rsync --files-from``) only when the journal provably saw everything
since the last successful pass: the same unit invocation still runs, nothing overflowed, no
watched root went away. In every other case (first pass, a restart, a reboot, an overflow, a
failed pass, an unreadable record) the pass is a full one, and the journal is (re)started
*before* it, so the next pass can be incremental.

"Everything written so far is in the file" is made exact with a barrier: a marker file is
created and removed in the first data path, and the pass waits until its DELETE record is in
``events`` (one inotify queue, so every earlier event is written before it).

Stdlib only; runs on the source.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import re
import stat
import time

from ansible_collections.strackt.move.plugins.module_utils.holder_lock import flock_exclusive
from ansible_collections.strackt.move.plugins.module_utils.systemd import TIMED_OUT, Systemd, SystemdError

INOTIFYWAIT = "inotifywait"
EVENTS = "modify,attrib,close_write,move,create,delete,delete_self,move_self"
BARRIER_PREFIX = ".strackt-journal-barrier-"
# records that mean the journal cannot be trusted from there on
UNTRUSTED = ("Q_OVERFLOW", "UNMOUNT")
MAX_LISTED = 200000  # more changed paths than this: a full pass is cheaper
# The events file's bound: past it the journal stops by itself (a wait of days without passes
# stays within it) and the next pass restarts the journal with an empty file and is full.
# 64 MiB is ~600,000 records (one full pass of a large tree costs less than reading them).
MAX_EVENTS_BYTES = 64 * 1024 * 1024
# a journal only observes: a stop it does not answer in this long (seen: systemd's 90 s stop
# timeout at a finish) ends with SIGKILL, nothing waits on it
STOP_WAIT_S = 5.0
# a watch in /proc/<pid>/fdinfo/<inotify fd>: "inotify wd:3 ino:1a2b sdev:800001 mask:..."
_FDINFO_RE = re.compile(r"^inotify\s+wd:\S+\s+ino:([0-9a-fA-F]+)\s")


class JournalError(Exception):
    pass


def unit_name(journal_dir):
    """strackt-journal-<move_id> for /root/.strackt-move/<move_id>/journal (each start adds -<ms>)."""
    move = os.path.basename(os.path.dirname(os.path.normpath(journal_dir))) or "move"
    return "strackt-journal-" + re.sub(r"[^A-Za-z0-9_.-]", "_", move) + ".service"


def pipeline(max_events_bytes=MAX_EVENTS_BYTES, inotifywait=INOTIFYWAIT):
    """The journal unit's shell command (``sh -c PIPELINE EVENTS_FILE DATA_PATH...``).

    Not ``inotifywait -o events``: it ignores a failed write (a full disk) and runs on, and a
    journal with a hole in it would be trusted. tee stops at the first failed write; the unit
    ends with it, and a journal that is not running is never trusted (plan()). ``head -c`` ends
    the pipeline once the file holds ``max_events_bytes``. inotifywait's complaints (a watch
    limit reached) go to ``EVENTS_FILE.stderr`` for the error message."""
    return ('%s -m -r -q --no-newline --format "%%e %%w%%f%%0" -e %s -- "$@" 2>"$0.stderr" '
            '| tee --output-error=exit -a "$0" | head -c %d >/dev/null'
            % (inotifywait, EVENTS, int(max_events_bytes)))


class Journal:
    def __init__(self, journal_dir, data_paths, systemd=None, max_events_bytes=MAX_EVENTS_BYTES):
        self.systemd = systemd or Systemd()
        self.dir = os.path.normpath(journal_dir)
        self.paths = [os.path.normpath(p) for p in data_paths]
        self.events = os.path.join(self.dir, "events")
        self.stderr = self.events + ".stderr"
        self.state_file = os.path.join(self.dir, "state.json")
        self.lock_file = os.path.join(self.dir, "pass.lock")
        self.base_unit = unit_name(self.dir)
        # the unit the last start ran (a fresh name each time, see start); the base name is a
        # journal started before names were fresh
        self.unit = self._load().get("unit") or self.base_unit
        self.max_events_bytes = max_events_bytes

    # ---- the unit ------------------------------------------------------------
    def invocation(self):
        """InvocationID of the running journal unit, or None."""
        props = self.systemd.show(self.unit, "ActiveState", "InvocationID")
        if props.get("ActiveState") != "active":
            return None
        return props.get("InvocationID") or None

    def stop(self):
        """Stop the journal: the unit named in the state file, the old base name, and any other
        start of this move's journal still loaded (a start this object did not see)."""
        others = self.systemd.units(self.base_unit[:-len(".service")], types=("service",))
        for unit in sorted({self.unit, self.base_unit} | set(others)):
            rc, _out = self.systemd.stop_within(unit, STOP_WAIT_S)
            if rc == TIMED_OUT:
                self.systemd.systemctl("kill", "--signal=SIGKILL", unit)
                self.systemd.stop(unit, check=False)
            self.systemd.reset_failed(unit)

    def why_stopped(self):
        """What inotifywait said before it ended (e.g. the watch limit), or a pointer to the log."""
        try:
            with open(self.stderr, "rb") as f:
                text = f.read(4000).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text:
            return "inotifywait: " + " ".join(text.split())[:500]
        return "see journalctl -u %s" % self.unit

    def events_size(self):
        try:
            return os.path.getsize(self.events)
        except OSError:
            return 0

    # ---- what it watches ---------------------------------------------------------
    def _watcher_pids(self):
        """PIDs of the inotifywait processes in the journal unit's cgroup."""
        _rc, out = self.systemd.systemctl("show", "-p", "ControlGroup", "--value", self.unit)
        group = out.strip()
        if not group:
            return []
        pids = []
        # cgroup v2, or v1/hybrid (systemd's own hierarchy)
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
            try:
                with open(root + group + "/cgroup.procs") as f:
                    pids = [int(line) for line in f if line.strip()]
                break
            except (OSError, ValueError):
                continue
        found = []
        for pid in pids:
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() == os.path.basename(INOTIFYWAIT):
                        found.append(pid)
            except OSError:
                continue
        return found

    def watched_inodes(self):
        """Inode numbers of the directories the running inotifywait watches (from the kernel's
        /proc/<pid>/fdinfo of its inotify descriptor), or None if that cannot be read."""
        pids = self._watcher_pids()
        if len(pids) != 1:
            return None
        pid = pids[0]
        inodes = set()
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != "anon_inode:inotify":
                    continue
                with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                    for line in f:
                        m = _FDINFO_RE.match(line)
                        if m:
                            inodes.add(int(m.group(1), 16))
        except OSError:
            return None
        return inodes

    def unwatched(self, roots=None, limit=5):
        """Directories under `roots` (default: the data paths) the journal does not watch (up to
        `limit`).

        inotifywait -r adds a directory's watch only after listing its entries, and a file that
        vanishes while it lists them (an app renaming its temporary files) makes it skip that
        watch without a word: changes there would never reach the journal."""
        watched = self.watched_inodes()
        if watched is None:
            raise JournalError("cannot read which directories %s watches" % self.unit)
        missing = []
        stack = list(self.paths if roots is None else roots)
        while stack:
            path = stack.pop()
            try:
                st = os.lstat(path)
                entries = list(os.scandir(path))
            except OSError:
                continue  # it went away meanwhile: its parent's records name it
            if st.st_ino not in watched:
                missing.append(path)
                if len(missing) >= limit:
                    break
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    continue
        return missing

    def start(self):
        """(Re)start the journal with an empty events file; returns the new InvocationID."""
        self.stop()
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        for name in (self.events, self.stderr):
            with open(name, "wb"):
                pass
        # a fresh name per start, kept in the state file for every later look and stop: the unit a
        # stop just ended may stay loaded for seconds (seen in CI: "already loaded" at the
        # switch-over's re-arm), and a new name never meets it
        self.unit = "%s-%d.service" % (self.base_unit[:-len(".service")], time.time_ns() // 1000000)
        self._save({})
        command = ["/bin/sh", "-c", pipeline(self.max_events_bytes), self.events] + self.paths
        description = "strackt-move: change journal of " + " ".join(self.paths)
        try:
            self.systemd.run_transient(self.unit, command, description, properties=("Nice=5",))
        except SystemdError as exc:
            raise JournalError(str(exc))
        # the watches are in place once the barrier comes through; a journal that ends meanwhile
        # (no inotifywait, the watch limit) is noticed within 0.1 s, not at the timeout
        self.barrier(timeout=30.0)
        invocation = self.invocation()
        if not invocation:
            raise JournalError("the change journal %s stopped right after starting: %s" % (self.unit, self.why_stopped()))
        # a pass that fails before its first commit leaves this: the next one is full again but
        # keeps the running journal (no restart, its records stay usable after that pass)
        self._save({"invocation": invocation})
        return invocation

    def start_watching_all(self, attempts=3):
        """start(), again while some directory went unwatched or vanished while inotifywait set
        up its watches (it then ends: a sync pass's partial dir, an app's temporary directory);
        JournalError if it stays so."""
        for attempt in range(1, attempts + 1):
            try:
                invocation = self.start()
            except JournalError as exc:
                if attempt < attempts and "No such file or directory" in str(exc):
                    continue
                raise
            missing = self.unwatched()
            if not missing:
                return invocation
        self.stop()
        raise JournalError("inotifywait left %s unwatched %d times in a row" % (", ".join(missing), attempts))

    # ---- the barrier -----------------------------------------------------------
    def barrier(self, timeout=5.0, since=0):
        """Offset in events up to which every change made before this call is recorded.

        A marker is made and removed in the first data path until its DELETE record shows up
        (again every 0.1 s: right after the start the watches may not be in place yet)."""
        deadline = time.monotonic() + timeout
        wanted = []
        next_marker = 0.0
        delay = 0.001
        while True:
            now = time.monotonic()
            if now >= next_marker:
                # slower than usual: is the journal still there at all? (the fast path asks nothing)
                if wanted and self.invocation() is None:
                    raise JournalError("the change journal %s is not running: %s" % (self.unit, self.why_stopped()))
                name = BARRIER_PREFIX + "%d-%d" % (os.getpid(), time.time_ns())
                marker = os.path.join(self.paths[0], name)
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.unlink(marker)
                wanted.append(("DELETE " + marker + "\0").encode("utf-8", "surrogateescape"))
                next_marker = now + 0.1
            with open(self.events, "rb") as f:
                f.seek(since)
                data = f.read()
            for want in wanted:
                at = data.rfind(want)
                if at >= 0:
                    return since + at + len(want)
            if time.monotonic() >= deadline:
                raise JournalError("the journal did not record its barrier within %.1f s" % timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # ---- one pass at a time ------------------------------------------------------
    @contextlib.contextmanager
    def pass_lock(self, timeout=None):
        """Held from a pass's plan to its commit: the follower (module_utils/follower.py), a
        sync pass and the freeze each plan against the committed offset, and two of them at once
        would each commit an offset the other's copy may not cover. ``timeout`` (seconds; None:
        wait): JournalError when another pass still holds it then."""
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        fd = flock_exclusive(self.lock_file, timeout=timeout, poll=0.01)
        if fd is None:
            raise JournalError("another pass of this move still holds %s after %g s" % (self.lock_file, timeout))
        try:
            # the pass that held it may have restarted the journal under a new unit name
            self.unit = self._load().get("unit") or self.base_unit
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def pending(self):
        """True when the journal recorded something besides barriers since the last committed
        pass, or when no pass committed against it yet. Reads only the events after that offset
        and asks systemd nothing (it is polled): a journal that stopped records nothing more,
        which only the next pass's plan notices."""
        state = self._load()
        offset = state.get("offset")
        if not isinstance(offset, int) or self.events_size() >= self.max_events_bytes:
            return True
        try:
            with open(self.events, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return True
        for raw in data.split(b"\0"):
            _kinds, sep, path = raw.partition(b" ")
            if sep and not os.path.basename(path).startswith(BARRIER_PREFIX.encode("ascii")):
                return True
        return False

    # ---- the record of passes --------------------------------------------------
    def _load(self):
        try:
            with open(self.state_file) as f:
                state = json.load(f)
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, state):
        if self.unit != self.base_unit:
            state = dict(state, unit=self.unit)
        tmp = self.state_file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # ---- planning a pass ---------------------------------------------------------
    def plan(self):
        """Decide the next pass. Returns a dict: mode 'full' or 'incremental', reason, and for
        incremental `changes` = {data_path: sorted relative paths}; always `token` to hand to
        `committed()` once the pass succeeded."""
        state = self._load()
        if "end_offset" in state or "listed_from" in state:
            # until this pass commits, nothing vouches for what it copies: a pass that fails (or
            # is cut short) after copying a path must not let the next plan skip deleting it
            self._save({k: v for k, v in state.items() if k not in ("end_offset", "listed_from")})
        invocation = self.invocation()
        size = self.events_size()
        if size >= self.max_events_bytes:
            self.stop()
            invocation = self.start_watching_all()
            return {"mode": "full", "token": [invocation, self.barrier()],
                    "reason": "the journal's events file reached its bound (%d bytes): restarted with an "
                              "empty one" % self.max_events_bytes}
        if not invocation or invocation != state.get("invocation"):
            reason = ("no journal yet" if not state else
                      "the journal was restarted or stopped (%s)" % self.why_stopped())
            invocation = self.start_watching_all()
            offset = self.barrier()
            return {"mode": "full", "reason": reason, "token": [invocation, offset]}
        if not isinstance(state.get("offset"), int):
            # the journal runs and saw everything since it started, but no pass against it got
            # through yet (the last one failed): a full pass, keeping the journal if it still
            # watches every directory (ones made since its start have inotifywait's blind spot)
            if self.unwatched():
                invocation = self.start_watching_all()
            return {"mode": "full", "reason": "no complete pass against this journal yet",
                    "token": [invocation, self.barrier()]}
        offset = self.barrier(since=state["offset"])
        with open(self.events, "rb") as f:
            f.seek(state["offset"])
            data = f.read(offset - state["offset"])
        # a directory made since the start is watched by inotifywait as it appears, with the
        # same blind spot: check those (the rest was checked when the journal started)
        missing = self.unwatched(self.new_directories(data)) if b"ISDIR" in data else []
        if missing:
            self.stop()
            invocation = self.start_watching_all()
            offset = self.barrier()
            return {"mode": "full", "reason": "the journal did not watch %s" % ", ".join(missing),
                    "token": [invocation, offset]}
        end = state.get("end_offset")
        # no end known (a pass planned since and never committed): nothing is settled
        settled = end - state["offset"] if isinstance(end, int) and end >= state["offset"] else len(data)
        # the last pass's own window (an incremental pass's commit says where it began): what it
        # named, it may have copied while it ran; nothing else
        listed_from = state.get("listed_from")
        named_before = None
        if isinstance(listed_from, int) and 0 <= listed_from <= state["offset"]:
            with open(self.events, "rb") as f:
                f.seek(listed_from)
                named_before = self.named(f.read(state["offset"] - listed_from))
        changes, why_full = self.parse(data, settled, named_before)
        if why_full:
            return {"mode": "full", "reason": why_full, "token": [invocation, offset]}
        copies = sum(len(v["copy"]) for v in changes.values())
        deletions = sum(len(v["delete"]) for v in changes.values())
        return {"mode": "incremental",
                "reason": "%d to copy, %d to delete since the last pass" % (copies, deletions),
                "changes": changes, "token": [invocation, offset, state["offset"]]}

    def committed(self, token):
        """The pass planned with `token` succeeded: the next one reads from its start barrier on
        (what changed while it ran may or may not have been copied). A barrier after it marks
        from where a path that appears and vanishes again never reached the other side; an
        incremental pass's token also says where its own window began (``listed_from``), so the
        next plan knows which paths it named."""
        end = self.barrier(since=token[1])
        state = {"invocation": token[0], "offset": token[1], "end_offset": end}
        if len(token) > 2:
            state["listed_from"] = token[2]
        self._save(state)

    def forget(self):
        """A pass failed: the next one is full."""
        self._save({})

    # ---- reading the events -------------------------------------------------------
    def new_directories(self, data):
        """Directories the records in `data` show being made or moved in, that still exist."""
        found = []
        for raw in data.split(b"\0"):
            kinds, sep, path = raw.decode("utf-8", "surrogateescape").partition(" ")
            kinds = kinds.split(",")
            if sep and "ISDIR" in kinds and ("CREATE" in kinds or "MOVED_TO" in kinds) and os.path.isdir(path):
                found.append(os.path.normpath(path))
        return found

    def named(self, data):
        """(data path, relative path) of every path the records in `data` name."""
        found = set()
        for raw in data.split(b"\0"):
            _kinds, sep, path = raw.decode("utf-8", "surrogateescape").partition(" ")
            path = os.path.normpath(path) if sep else ""
            root = self._root_of(path) if sep else None
            if root is not None and path != root:
                found.add((root, os.path.relpath(path, root)))
        return found

    def parse(self, data, settled=0, named_before=None):
        """({data_path: {"copy": [...], "delete": [...]}} of relative paths, reason for a full
        pass or None). `settled`: offset in `data` from which the previous pass had finished; a
        path first seen being created there and gone again (a temporary file) never reached the
        other side and needs no deletion there. `named_before` (``named`` of the previous
        incremental pass's window): a path created while that pass ran never reached the other
        side either unless that pass named it, a path above it or one below it."""
        touched = {}  # (root, rel) -> (offset of its first record, created by its first record)
        at = 0
        for raw in data.split(b"\0"):
            pos, at = at, at + len(raw) + 1
            if not raw:
                continue
            text = raw.decode("utf-8", "surrogateescape")
            kinds, sep, path = text.partition(" ")
            if not sep:
                return None, "unreadable journal record %r" % text[:200]
            kinds = kinds.split(",")
            if any(k in UNTRUSTED for k in kinds):
                return None, "the journal overflowed (%s)" % ",".join(kinds)
            path = os.path.normpath(path)
            if ("DELETE_SELF" in kinds or "MOVE_SELF" in kinds) and path in self.paths:
                return None, "data path %s itself was removed or moved" % path
            if "IGNORED" in kinds or "DELETE_SELF" in kinds or "MOVE_SELF" in kinds:
                continue  # the parent's DELETE/MOVED_FROM record names it
            root = self._root_of(path)
            if root is None or os.path.basename(path).startswith(BARRIER_PREFIX):
                continue
            key = (root, os.path.relpath(path, root))
            if key not in touched:
                # only CREATE means "was not there before": a rename may land on a path that
                # existed (and exists on the other side), so MOVED_TO never counts as created
                touched[key] = (pos, "CREATE" in kinds)
            if "ISDIR" in kinds and ("CREATE" in kinds or "MOVED_TO" in kinds) and os.path.isdir(path):
                # files made in a new directory before its watch was added are in no record
                for dirpath, dirnames, filenames in os.walk(path):
                    for name in dirnames + filenames:
                        full = os.path.join(dirpath, name)
                        touched.setdefault((root, os.path.relpath(full, root)), (pos, True))
            if len(touched) > MAX_LISTED:
                return None, "more than %d paths changed" % MAX_LISTED
        changes = dict((p, {"copy": [], "delete": []}) for p in self.paths)
        above_named = set()  # every directory above a path named before
        for root, rel in named_before or ():
            parts = rel.split(os.sep)
            above_named.update((root, os.sep.join(parts[:i])) for i in range(1, len(parts)))

        def never_named(root, rel):
            """Neither the path, a directory above it nor a path below it was named before."""
            parts = rel.split(os.sep)
            return ((root, rel) not in above_named
                    and not any((root, os.sep.join(parts[:i])) in named_before for i in range(1, len(parts) + 1)))

        for (root, rel), (first, created) in sorted(touched.items()):
            full = os.path.join(root, rel)
            if os.path.lexists(full):
                # rsync -H links only the files of one transfer: a changed file with other
                # names elsewhere in the tree needs the whole tree in the pass.
                st = os.lstat(full)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    return None, "%s has hard links; a full pass keeps them linked" % full
                changes[root]["copy"].append(rel)
            elif not (created and (first >= settled or (named_before is not None and never_named(root, rel)))):
                changes[root]["delete"].append(rel)
        return changes, None

    def _root_of(self, path):
        for root in self.paths:
            if path == root or path.startswith(root + os.sep):
                return root
        return None
