# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where move records live, and the lock every writer takes.

One JSON file per env with a move in progress, ``{state_dir}/moves/{env}.json`` (dir 0700, file
0600, written atomically). Finished or rolled-back moves are archived to
``{state_dir}/moves/history/{move_id}.json``. Writers hold ``{state_dir}/moves/{env}.lock``
(``fcntl.flock``, dropped by the kernel when the holder dies) while they read, change and save.

Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import typing

from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write, fsync_dir
from ansible_collections.strackt.move.plugins.module_utils.move_record import (
    MoveRecord,
    RecordError,
    RetainedCopies,
    TransitionError,
    admit,
)
from ansible_collections.strackt.move.plugins.module_utils.names import (
    ENV_NAME_RE,
    MOVE_ID_RE,
    validate_env_name,
    validate_move_id,
)


class RecordLocked(Exception):
    """Another run holds the lock of this env's record."""


# --------------------------------------------------------------------------------------------
# paths


def moves_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "moves")


def history_dir(state_dir: str) -> str:
    return os.path.join(moves_dir(state_dir), "history")


def record_path(state_dir: str, env: str) -> str:
    return os.path.join(moves_dir(state_dir), validate_env_name(env) + ".json")


def history_path(state_dir: str, move_id: str) -> str:
    return os.path.join(history_dir(state_dir), validate_move_id(move_id) + ".json")


def retained_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "retained")


def retained_path(state_dir: str, env: str) -> str:
    """The env's retained copies (``move_record.RetainedCopies``); written under the env's lock."""
    return os.path.join(retained_dir(state_dir), validate_env_name(env) + ".json")


def lock_path(state_dir: str, env: str) -> str:
    return os.path.join(moves_dir(state_dir), validate_env_name(env) + ".lock")


def ensure_dirs(state_dir: str) -> None:
    """Create state_dir, moves/ and moves/history/ with mode 0700 (tightening existing ones)."""
    for path in (state_dir, moves_dir(state_dir), history_dir(state_dir)):
        os.makedirs(path, 0o700, exist_ok=True)
        os.chmod(path, 0o700)


# --------------------------------------------------------------------------------------------
# reading and writing


def _read(path: str) -> MoveRecord | None:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    try:
        return MoveRecord.from_json(text)
    except RecordError as exc:
        raise RecordError("%s: %s" % (path, exc)) from None


def load(state_dir: str, env: str) -> MoveRecord | None:
    """The env's record in progress, or None. Raises RecordError for an untrustworthy file."""
    path = record_path(state_dir, env)
    rec = _read(path)
    if rec is not None and rec.env != env:
        raise RecordError("%s: holds env %r, not %r" % (path, rec.env, env))
    return rec


def load_history(state_dir: str, move_id: str) -> MoveRecord | None:
    return _read(history_path(state_dir, move_id))


def _names(directory: str, rule: typing.Pattern[str]) -> list[str]:
    """The ``NAME.json`` files of ``directory`` whose NAME follows ``rule`` (temp files and
    anything else a person left there are not records)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and rule.fullmatch(n[:-5]))


def list_history(state_dir: str, env: str | None = None) -> list[str]:
    """move_ids of archived moves (optionally of one env), oldest first."""
    ids = _names(history_dir(state_dir), MOVE_ID_RE)
    return [i for i in ids if env is None or MOVE_ID_RE.fullmatch(i).group("env") == env]  # type: ignore[union-attr]


def list_active(state_dir: str) -> list[str]:
    """env names that have a move in progress."""
    return _names(moves_dir(state_dir), ENV_NAME_RE)


def save(state_dir: str, record: MoveRecord) -> str:
    ensure_dirs(state_dir)
    path = record_path(state_dir, record.env)
    atomic_write(path, record.to_json())
    return path


def archive(state_dir: str, record: MoveRecord) -> str:
    """Move a finished record to history/{move_id}.json and remove the in-progress file."""
    if not record.finished:
        raise TransitionError("move %s is at stage %s; only done or rolled_back moves are archived"
                              % (record.move_id, record.stage))
    ensure_dirs(state_dir)
    dest = history_path(state_dir, record.move_id)
    atomic_write(dest, record.to_json())
    try:
        os.unlink(record_path(state_dir, record.env))
    except FileNotFoundError:
        pass
    fsync_dir(moves_dir(state_dir))
    return dest


def load_retained(state_dir: str, env: str) -> RetainedCopies:
    """The env's retained copies (none recorded: an empty list). Raises RecordError for an
    untrustworthy file."""
    path = retained_path(state_dir, env)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return RetainedCopies(env=env)
    try:
        found = RetainedCopies.from_json(text)
    except RecordError as exc:
        raise RecordError("%s: %s" % (path, exc)) from None
    if found.env != env:
        raise RecordError("%s: holds env %r, not %r" % (path, found.env, env))
    return found


def save_retained(state_dir: str, retained: RetainedCopies) -> str:
    """Write the env's retained copies (0600, atomically); none left: the file goes."""
    ensure_dirs(state_dir)
    os.makedirs(retained_dir(state_dir), 0o700, exist_ok=True)
    os.chmod(retained_dir(state_dir), 0o700)
    path = retained_path(state_dir, retained.env)
    if not retained.copies:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fsync_dir(retained_dir(state_dir))
        return path
    atomic_write(path, retained.to_json())
    return path


def list_retained(state_dir: str) -> list[str]:
    """env names that have retained copies."""
    return _names(retained_dir(state_dir), ENV_NAME_RE)


def create(state_dir: str, record: MoveRecord) -> str:
    """Save a new record; refuses (MoveInProgress) if the env already has a move in progress."""
    admit(load(state_dir, record.env), record.source, record.target)
    return save(state_dir, record)


# --------------------------------------------------------------------------------------------
# locks


def flock_exclusive(path: str, timeout: float | None = 0.0, poll: float = 0.1) -> int | None:
    """Open ``path`` (created 0600) and take an exclusive ``fcntl.flock`` on it; returns the fd.

    timeout 0 = try once, None = wait forever. Returns None (the file closed again) if another
    process still holds the lock when the time is up. The kernel drops the lock when the fd is
    closed or its process dies. The controller's lock files (strackt_move.locks) use this too.
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


@contextlib.contextmanager
def lock(state_dir: str, env: str, timeout: float | None = 0.0, poll: float = 0.1) -> typing.Iterator[str]:
    """Exclusive lock on {state_dir}/moves/{env}.lock (fcntl.flock).

    timeout 0 = try once. Raises RecordLocked naming the lock file if another process holds it.
    """
    ensure_dirs(state_dir)
    path = lock_path(state_dir, env)
    fd = flock_exclusive(path, timeout, poll)
    if fd is None:
        raise RecordLocked(
            "another strackt.move run holds the lock of env %s (%s); wait for it "
            "to end" % (env, path))
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, ("%d\n" % os.getpid()).encode())
        except OSError:
            pass  # the pid is a note for people; the flock is what counts
        yield path
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
