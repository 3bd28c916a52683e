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
flock the same way. ``FileLock`` (the flock with a note about its holder: pid, role, command, the
playbook it runs) lives in the collection's ``holder_lock``, which the record stores' evacuation
lock uses too; what is kept here is what is done with the note.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils.holder_lock import (  # noqa: F401 (the controller's names)
    FileLock,
    Holder,
    LockBusy,
    read_holder,
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


def alive(pid: int, group: bool = False) -> bool:
    """Whether the process (or, with ``group``, any process of the group ``pid`` leads) exists;
    someone else's process counts as alive."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
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
    while alive(pid, group=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid, group=True):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while alive(pid, group=True) and time.monotonic() < deadline:
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
