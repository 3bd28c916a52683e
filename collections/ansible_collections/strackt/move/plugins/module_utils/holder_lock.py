# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive lock that says who holds it: the controller's lock files, and the evacuation lock
of either record store.

``FileLock`` is an ``flock`` on a file with a note about its holder (pid, role, command, since) in
the file; the kernel drops it when the holder dies, even on SIGKILL. The PostgreSQL record store
gives the evacuation lock the same methods (``acquire``/``release``/``held``) and the same
``LockBusy`` naming its holder, so the controller handles both alike.

Stdlib only: the controller imports this (``strackt_move.locks``), and so does ``move_store``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import clock


@dataclass(frozen=True)
class Holder:
    """What the lock says about its holder (informational: the lock itself is the truth)."""

    pid: int | None
    role: str
    command: str
    since: str
    child_pid: int | None = None  # the ansible-playbook the holder runs right now
    child_start: str | None = None  # its start time (/proc/PID/stat), against pid reuse
    host: str | None = None  # the node it runs on, when that is not this one (a shared store)

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "an unknown process"
        if self.host:
            who += f" on {self.host}"
        command = f"`{self.command}`, " if self.command else ""
        return f"{self.role} ({who}, {command}since {self.since})"


class LockBusy(Exception):
    def __init__(self, path: Path | str, holder: Holder | None) -> None:
        self.path = path  # the lock file, or where the shared store keeps the lock
        self.holder = holder
        super().__init__(f"{path} is held by {holder.describe() if holder else 'another process'}")


def flock_exclusive(path: str, timeout: float | None = 0.0, poll: float = 0.1) -> int | None:
    """Open ``path`` (created 0600) and take an exclusive ``fcntl.flock`` on it; returns the fd.

    timeout 0 = try once, None = wait forever. Returns None (the file closed again) if another
    process still holds the lock when the time is up. The kernel drops the lock when the fd is
    closed or its process dies. The record's own lock (move_store.lock) uses this too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


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
        if self._fd is None:  # only ever called while held
            raise RuntimeError("%s is not held by this process" % self.path)
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
