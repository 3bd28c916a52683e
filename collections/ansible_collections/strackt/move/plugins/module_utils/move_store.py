# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where move records live, and the lock every writer takes.

One JSON file per env with a move in progress, ``{state_dir}/moves/{env}.json`` (dir 0700, file
0600, written atomically). Finished or rolled-back moves are archived to
``{state_dir}/moves/history/{move_id}.json``. Writers hold ``{state_dir}/moves/{env}.lock``
(``fcntl.flock``, dropped by the kernel when the holder dies) while they read, change and save.

Stdlib only: the controller imports this too.

That is the file store, the default. ``open_store(state_dir, record_store)`` returns the backend
the setting ``record_store`` (option of strackt.move.move_record, ``$STRACKT_RECORD_STORE`` for
the module and the controller) names: ``file`` (or nothing) for these files, a PostgreSQL DSN for
``move_store_pg.PostgresStore``, which several AWX execution nodes can share (docs/record-store.md).
Both implement ``RecordBackend`` and parse every record with the same ``move_record`` code.

The evacuations' records live in the same store (``RecordBackend``'s evacuation methods), as text
that ``strackt_move.evacuation`` alone writes and checks: here ``{state_dir}/evacuations/``
(``{server}.json``, ``history/{server}-{stamp}.json``, ``{server}.abort``) and the driver's lock
``{state_dir}/locks/evacuation-{server}.lock`` (``holder_lock.FileLock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import typing
from pathlib import Path

from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write, fsync_dir
from ansible_collections.strackt.move.plugins.module_utils.holder_lock import FileLock, flock_exclusive
from ansible_collections.strackt.move.plugins.module_utils.move_record import (
    MoveRecord,
    RecordError,
    RetainedCopies,
    TransitionError,
    admit,
)
from ansible_collections.strackt.move.plugins.module_utils.names import (
    ENV_NAME_RE,
    EVACUATION_ID_RE,
    MOVE_ID_RE,
    SERVER_NAME_RE,
    validate_env_name,
    validate_evacuation_id,
    validate_move_id,
    validate_server_name,
)


class RecordLocked(Exception):
    """Another run holds the lock of this env's record."""


class StoreUnavailable(Exception):
    """The record store cannot be used (its driver is missing, it cannot be reached). The
    message names what to do and never holds a password."""


#: the environment variable that selects the record store (module option ``record_store``)
RECORD_STORE_ENV = "STRACKT_RECORD_STORE"
FILE_STORE = "file"


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


def evacuations_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "evacuations")


def evacuation_path(state_dir: str, server: str) -> str:
    """The evacuation of ``server`` in progress (its JSON: ``strackt_move.evacuation``'s to read)."""
    return os.path.join(evacuations_dir(state_dir), validate_server_name(server) + ".json")


def evacuation_history_path(state_dir: str, history_id: str) -> str:
    return os.path.join(evacuations_dir(state_dir), "history", validate_evacuation_id(history_id) + ".json")


def evacuation_abort_path(state_dir: str, server: str) -> str:
    """The operator's request to stop the evacuation of ``server``."""
    return os.path.join(evacuations_dir(state_dir), validate_server_name(server) + ".abort")


def evacuation_lock_path(state_dir: str, server: str) -> str:
    return os.path.join(state_dir, "locks", "evacuation-%s.lock" % validate_server_name(server))


def ensure_dirs(state_dir: str) -> None:
    """Create state_dir, moves/ and moves/history/ with mode 0700 (tightening existing ones)."""
    for path in (state_dir, moves_dir(state_dir), history_dir(state_dir)):
        os.makedirs(path, 0o700, exist_ok=True)
        os.chmod(path, 0o700)


# --------------------------------------------------------------------------------------------
# reading and writing


def parse_record(text: str, where: str, env: str | None = None) -> MoveRecord:
    """The record in ``text`` (the JSON of ``MoveRecord.to_json``), checked by move_record's own
    code, and of ``env`` when given; RecordError naming ``where`` otherwise. Every backend reads
    records through this."""
    try:
        rec = MoveRecord.from_json(text)
    except RecordError as exc:
        raise RecordError("%s: %s" % (where, exc)) from None
    if env is not None and rec.env != env:
        raise RecordError("%s: holds env %r, not %r" % (where, rec.env, env))
    return rec


def parse_retained(text: str, where: str, env: str) -> RetainedCopies:
    """The env's retained copies in ``text``, checked like ``parse_record``."""
    try:
        found = RetainedCopies.from_json(text)
    except RecordError as exc:
        raise RecordError("%s: %s" % (where, exc)) from None
    if found.env != env:
        raise RecordError("%s: holds env %r, not %r" % (where, found.env, env))
    return found


def _read(path: str, env: str | None = None) -> MoveRecord | None:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return parse_record(text, path, env)


def load(state_dir: str, env: str) -> MoveRecord | None:
    """The env's record in progress, or None. Raises RecordError for an untrustworthy file."""
    return _read(record_path(state_dir, env), env)


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
    """Move a finished record to history/{move_id}.json and remove the in-progress file
    (``RecordBackend.archive``: TransitionError for a move not finished)."""
    return FileStore(state_dir).archive(record)


def _archive_files(state_dir: str, record: MoveRecord) -> str:
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
    return parse_retained(text, path, env)


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
    """Save a new record; refuses (MoveInProgress) if the env already has a move in progress, or a
    retire claimed its copy on the target (RetireInProgress). Call it holding ``lock(env)``: that makes it
    exclusive with a retire's claim (``move_record`` ``retire_begin``)."""
    admit(load(state_dir, record.env), record.source, record.target,
          retained=load_retained(state_dir, record.env))
    return save(state_dir, record)


# --------------------------------------------------------------------------------------------
# evacuations: their records are text here (one JSON document each); strackt_move.evacuation
# writes and checks them


def _read_text(path: str) -> str | None:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _ensure_evacuations_dir(state_dir: str, sub: str = "") -> str:
    path = os.path.join(evacuations_dir(state_dir), sub) if sub else evacuations_dir(state_dir)
    os.makedirs(path, 0o700, exist_ok=True)
    return path


def save_evacuation(state_dir: str, server: str, text: str) -> str:
    path = evacuation_path(state_dir, server)
    _ensure_evacuations_dir(state_dir)
    atomic_write(path, text)
    return path


def archive_evacuation(state_dir: str, server: str, history_id: str, text: str) -> str:
    """Keep the finished evacuation as history/{history_id}.json; its record in progress and any
    abort request go."""
    dest = evacuation_history_path(state_dir, history_id)
    _ensure_evacuations_dir(state_dir, "history")
    atomic_write(dest, text)
    os.unlink(evacuation_path(state_dir, server))
    try:
        os.unlink(evacuation_abort_path(state_dir, server))
    except FileNotFoundError:
        pass
    return dest


def list_evacuation_history(state_dir: str, server: str) -> list[str]:
    """The archived evacuations of ``server``, oldest first (the stamps sort by time)."""
    ids = _names(os.path.join(evacuations_dir(state_dir), "history"), EVACUATION_ID_RE)
    server = validate_server_name(server)
    return [i for i in ids if EVACUATION_ID_RE.fullmatch(i).group("server") == server]  # type: ignore[union-attr]


def request_evacuation_abort(state_dir: str, server: str, text: str) -> str:
    path = evacuation_abort_path(state_dir, server)
    _ensure_evacuations_dir(state_dir)
    atomic_write(path, text)
    return path


# --------------------------------------------------------------------------------------------
# locks


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


# --------------------------------------------------------------------------------------------
# the backends: one interface for the module and the controller


class RecordBackend:
    """Where move records, their history and retained copies live, and the per-env write lock.

    Writers hold ``lock(env)`` while they read, change and save; the lock is dropped when its
    holder dies. Every record is parsed by ``parse_record``/``parse_retained``.
    """

    #: "file" or "postgresql"
    kind = ""

    def where(self, env: str) -> str:
        """Where the env's record in progress lives, for messages (never a password)."""
        raise NotImplementedError

    def where_history(self, move_id: str) -> str:
        raise NotImplementedError

    def where_retained(self, env: str) -> str:
        raise NotImplementedError

    def ensure(self) -> None:
        """Make the store ready for writes (directories, tables)."""
        raise NotImplementedError

    def load(self, env: str) -> MoveRecord | None:
        raise NotImplementedError

    def load_history(self, move_id: str) -> MoveRecord | None:
        raise NotImplementedError

    def list_history(self, env: str | None = None) -> list[str]:
        """move_ids of archived moves (optionally of one env), oldest first."""
        raise NotImplementedError

    def list_active(self) -> list[str]:
        raise NotImplementedError

    def save(self, record: MoveRecord) -> str:
        raise NotImplementedError

    def archive(self, record: MoveRecord) -> str:
        """Keep a finished record in the history and end the env's record in progress;
        TransitionError, changing nothing, for a move that is not done or rolled back."""
        if not record.finished:
            raise TransitionError("move %s is at stage %s; only done or rolled_back moves are archived"
                                  % (record.move_id, record.stage))
        return self._archive(record)

    def _archive(self, record: MoveRecord) -> str:
        """``archive`` of a record known to be finished: the backend's part."""
        raise NotImplementedError

    def load_retained(self, env: str) -> RetainedCopies:
        raise NotImplementedError

    def save_retained(self, retained: RetainedCopies) -> str:
        raise NotImplementedError

    def list_retained(self) -> list[str]:
        raise NotImplementedError

    def lock(self, env: str, timeout: float | None = 0.0,
             poll: float = 0.1) -> typing.ContextManager[str]:
        """Exclusive per-env write lock; timeout 0 = try once, None = wait forever; RecordLocked
        naming the env when another holder keeps it."""
        raise NotImplementedError

    # ---- evacuations: the record of each server's evacuation (JSON text, written and checked by
    # strackt_move.evacuation), its archive, the operator's abort request and the lock of whoever
    # drives it. Every job of an evacuation (AWX: plan, evacuate, abort, report) meets them here.

    def where_evacuation(self, server: str) -> str:
        raise NotImplementedError

    def load_evacuation(self, server: str) -> str | None:
        raise NotImplementedError

    def save_evacuation(self, server: str, text: str) -> str:
        raise NotImplementedError

    def list_evacuations(self) -> list[str]:
        """Servers with an evacuation in progress."""
        raise NotImplementedError

    def archive_evacuation(self, server: str, history_id: str, text: str) -> str:
        """Keep the finished evacuation under ``history_id``; its record in progress and any abort
        request end with it."""
        raise NotImplementedError

    def list_evacuation_history(self, server: str) -> list[str]:
        """history ids of ``server``'s archived evacuations, oldest first."""
        raise NotImplementedError

    def load_evacuation_history(self, history_id: str) -> str | None:
        raise NotImplementedError

    def request_evacuation_abort(self, server: str, text: str) -> None:
        raise NotImplementedError

    def load_evacuation_abort(self, server: str) -> str | None:
        raise NotImplementedError

    def evacuation_lock(self, server: str, command: str) -> typing.Any:
        """The lock of whoever drives the evacuation of ``server`` (never two at once), not yet
        taken: ``acquire(timeout, poll)`` (timeout 0 = try once, None = wait forever; LockBusy
        naming the holder), ``release()``; dropped when its holder dies. Its own key space: never
        the lock of an env."""
        raise NotImplementedError

    def close(self) -> None:
        """Give back what the backend holds open (connections)."""

    def create(self, record: MoveRecord) -> str:
        """Save a new record; refuses (MoveInProgress) if the env already has a move in progress, or a
        retire claimed its copy on the target (RetireInProgress). Call it holding ``lock(env)``: that makes it
        exclusive with a retire's claim (``move_record`` ``retire_begin``)."""
        admit(self.load(record.env), record.source, record.target, retained=self.load_retained(record.env))
        return self.save(record)


class FileStore(RecordBackend):
    """The files under ``state_dir`` (the functions above): one control node, or a volume every
    job mounts."""

    kind = FILE_STORE

    def __init__(self, state_dir: str) -> None:
        self.state_dir = str(state_dir)

    def where(self, env: str) -> str:
        return record_path(self.state_dir, env)

    def where_history(self, move_id: str) -> str:
        return history_path(self.state_dir, move_id)

    def where_retained(self, env: str) -> str:
        return retained_path(self.state_dir, env)

    def ensure(self) -> None:
        ensure_dirs(self.state_dir)

    def load(self, env: str) -> MoveRecord | None:
        return load(self.state_dir, env)

    def load_history(self, move_id: str) -> MoveRecord | None:
        return load_history(self.state_dir, move_id)

    def list_history(self, env: str | None = None) -> list[str]:
        return list_history(self.state_dir, env)

    def list_active(self) -> list[str]:
        return list_active(self.state_dir)

    def save(self, record: MoveRecord) -> str:
        return save(self.state_dir, record)

    def _archive(self, record: MoveRecord) -> str:
        return _archive_files(self.state_dir, record)

    def load_retained(self, env: str) -> RetainedCopies:
        return load_retained(self.state_dir, env)

    def save_retained(self, retained: RetainedCopies) -> str:
        return save_retained(self.state_dir, retained)

    def list_retained(self) -> list[str]:
        return list_retained(self.state_dir)

    def lock(self, env: str, timeout: float | None = 0.0,
             poll: float = 0.1) -> typing.ContextManager[str]:
        return lock(self.state_dir, env, timeout, poll)

    def where_evacuation(self, server: str) -> str:
        return evacuation_path(self.state_dir, server)

    def load_evacuation(self, server: str) -> str | None:
        return _read_text(evacuation_path(self.state_dir, server))

    def save_evacuation(self, server: str, text: str) -> str:
        return save_evacuation(self.state_dir, server, text)

    def list_evacuations(self) -> list[str]:
        return _names(evacuations_dir(self.state_dir), SERVER_NAME_RE)

    def archive_evacuation(self, server: str, history_id: str, text: str) -> str:
        return archive_evacuation(self.state_dir, server, history_id, text)

    def list_evacuation_history(self, server: str) -> list[str]:
        return list_evacuation_history(self.state_dir, server)

    def load_evacuation_history(self, history_id: str) -> str | None:
        return _read_text(evacuation_history_path(self.state_dir, history_id))

    def request_evacuation_abort(self, server: str, text: str) -> None:
        request_evacuation_abort(self.state_dir, server, text)

    def load_evacuation_abort(self, server: str) -> str | None:
        return _read_text(evacuation_abort_path(self.state_dir, server))

    def evacuation_lock(self, server: str, command: str) -> FileLock:
        return FileLock(Path(evacuation_lock_path(self.state_dir, server)), "evacuation", command)


def record_store_setting(value: str | None = None,
                         environ: typing.Mapping[str, str] | None = None) -> str:
    """The record store asked for: ``value`` when given, else ``$STRACKT_RECORD_STORE``, else
    the file store. May hold a password: never print it, use ``describe_store``."""
    if value is None or not value.strip():
        value = (os.environ if environ is None else environ).get(RECORD_STORE_ENV, "")
    return value.strip() or FILE_STORE


def is_postgresql(setting: str) -> bool:
    """A PostgreSQL DSN: a URI ``postgresql://``/``postgres://`` or libpq ``key=value`` pairs."""
    return setting.startswith(("postgresql://", "postgres://")) or "=" in setting


def open_store(state_dir: str, record_store: str | None = None) -> RecordBackend:
    """The backend ``record_store`` (or ``$STRACKT_RECORD_STORE``) names. ValueError for a
    setting that is neither (naming what it accepts, not the value: it may hold a password)."""
    setting = record_store_setting(record_store)
    if setting == FILE_STORE:
        return FileStore(state_dir)
    if is_postgresql(setting):
        # imported here: move_store_pg builds on this module (a module that writes records
        # imports move_store_pg too, so Ansible ships it with the module)
        from ansible_collections.strackt.move.plugins.module_utils import move_store_pg

        return move_store_pg.PostgresStore(setting)
    raise ValueError(
        "record_store (%s) is neither 'file' nor a PostgreSQL DSN: give 'file' (the default, files "
        "under the state directory) or postgresql://USER@HOST/DB (docs/record-store.md)" % RECORD_STORE_ENV)
