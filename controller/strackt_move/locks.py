"""Who drives a move right now.

Two advisory locks per environment, both ``flock`` on a file under ``{state_dir}/locks/`` (the
kernel drops them when the holder dies, even on SIGKILL, so ``resume`` never meets a stale lock):

- ``{env}.controller.lock`` — held by ``start``/``resume``/``confirm``/``rollback`` for the whole
  command and by the sync loop for the length of one pass: never two writers of progress.
- ``{env}.sync-loop.lock`` — held by a sync loop for its whole life: never two loops per move.

A controller killed with SIGKILL leaves its ansible-playbook running (runner spawns it with
SIGHUP ignored, in its own session). So the holder notes the playbook's pid (``annotate``) and the
next holder ends that orphaned process group before it drives the move (``reap_orphan``).

These are not the record's own write lock (that one lives in ``move_store`` and is taken for each
write, also by the playbooks' module, while the controller holds its lock), but they take the
flock the same way, with ``move_store.flock_exclusive``; what is kept here is the note about the
holder (pid, role, command, the playbook it runs) and what is done with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.move_store import flock_exclusive


@dataclass(frozen=True)
class Holder:
    """What the lock file says about its holder (informational: the flock is the truth)."""

    pid: int | None
    role: str
    command: str
    since: str
    child_pid: int | None = None  # the ansible-playbook the holder runs right now
    child_start: str | None = None  # its start time (/proc/PID/stat), against pid reuse

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "an unknown process"
        return f"{self.role} ({who}, `{self.command}`, since {self.since})"


class LockBusy(Exception):
    def __init__(self, path: Path, holder: Holder | None) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is held by {holder.describe() if holder else 'another process'}")


class FileLock:
    """An exclusive, non-reentrant ``flock`` with a note about the holder in the file."""

    def __init__(self, path: Path, role: str, command: str = "") -> None:
        self.path = path
        self.role = role
        self.command = command
        self._fd: int | None = None
        self._note: dict[str, Any] = {}
        #: what the lock file said when we took it: a holder that died without releasing
        self.previous: Holder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = 0.0, poll: float = 0.2) -> None:
        """Take the lock; ``timeout=0`` means try once, ``None`` means wait forever.
        Raises ``LockBusy`` naming the holder when it cannot."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = flock_exclusive(str(self.path), timeout, poll)
        if fd is None:
            raise LockBusy(self.path, read_holder(self.path))
        self.previous = read_holder(self.path)
        self._fd = fd
        self._note = {
            "pid": os.getpid(),
            "role": self.role,
            "command": self.command,
            "since": clock.format_ts(clock.utcnow()),
        }
        self._write_note()

    def _write_note(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(self._note).encode(), 0)

    def annotate(self, **fields: Any) -> None:
        """Add to the holder's note (e.g. ``child_pid``); None removes a field."""
        if self._fd is None:
            return
        for key, value in fields.items():
            if value is None:
                self._note.pop(key, None)
            else:
                self._note[key] = value
        self._write_note()

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self._note = {}
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "FileLock":
        if not self.held:  # ``with already_acquired_lock:`` just releases it at the end
            self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    if not data:
        return None
    return Holder(
        pid=data.get("pid"),
        role=str(data.get("role", "?")),
        command=str(data.get("command", "")),
        since=str(data.get("since", "?")),
        child_pid=data.get("child_pid"),
        child_start=data.get("child_start"),
    )


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


class ChildTracker:
    """An event-handler wrapper: notes the pid of the ansible-playbook (the ``pid`` of its first
    event) in the lock, so a successor can end it if this controller dies."""

    def __init__(self, lock: FileLock, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.lock = lock
        self.on_event = on_event
        self.pid: int | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.pid is None and isinstance(event.get("pid"), int):
            self.pid = int(event["pid"])
            self.lock.annotate(child_pid=self.pid, child_start=process_start_time(self.pid))
        self.on_event(event)

    def done(self) -> None:
        if self.pid is not None:
            self.lock.annotate(child_pid=None, child_start=None)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphan(previous: Holder | None, say: Callable[[str], None], grace_s: float = 10.0) -> bool:
    """End the playbook a dead holder left running (its whole process group): SIGTERM, then
    SIGKILL after ``grace_s``. Only if the pid still is that process (same start time) and leads
    its group. Returns True if something was ended."""
    if previous is None or not previous.child_pid:
        return False
    pid = previous.child_pid
    if previous.child_start is None or process_start_time(pid) != previous.child_start:
        return False
    try:
        if os.getpgid(pid) != pid:
            return False
    except ProcessLookupError:
        return False
    say(f"the previous {previous.role} (pid {previous.pid}, `{previous.command}`) died and left its "
        f"playbook running (pid {pid}); stopping it before going on")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True


def is_locked(path: Path) -> bool:
    """True if some process holds the flock on ``path`` right now."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def controller_lock(locks_dir: Path, env: str, command: str, role: str = "controller") -> FileLock:
    """``role`` is "controller" for commands, "sync-loop" while a loop's pass runs."""
    return FileLock(locks_dir / f"{env}.controller.lock", role=role, command=command)


def sync_loop_lock(locks_dir: Path, env: str, command: str) -> FileLock:
    return FileLock(locks_dir / f"{env}.sync-loop.lock", role="sync-loop", command=command)
