"""The move records, as the controller sees them.

A thin layer over the collection's ``move_store`` (the backend the record store setting names:
files under the state directory, or PostgreSQL; the per-write lock) and ``move_record``
(the ONE schema and state machine). Nothing here defines record fields: it loads and lists
records, and turns their exceptions into ``MoveError``s that name the next step. Stage events are
the roles' to write; the controller writes only what a playbook cannot know: that a run died, and
the sync loop's warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError

from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode

MoveRecord = mr.MoveRecord
STAGES: tuple[str, ...] = tuple(mr.STAGES)
PRE_SWITCH_STAGES: tuple[str, ...] = tuple(mr.PRE_SWITCH_STAGES)
TERMINAL_STAGES: tuple[str, ...] = tuple(mr.TERMINAL_STAGES)
TransitionError = mr.TransitionError
RecordError = mr.RecordError

#: how long a controller write waits for the record's own (short, per-write) lock
WRITE_LOCK_TIMEOUT_S = 30.0


def unavailable(exc: ms.StoreUnavailable | ValueError) -> MoveError:
    """The record store cannot be used: its message names it (never its password) and what to do."""
    return MoveError(ExitCode.FAILED, str(exc), f"fix {ms.RECORD_STORE_ENV} or the database it names, then run the "
                     "command again (docs/record-store.md)")


@dataclass
class RecordStore:
    state_dir: Path
    #: the record store setting (``Settings.record_store``; None: ``$STRACKT_RECORD_STORE``, else files)
    record_store: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self._backend: ms.RecordBackend | None = None

    @property
    def sd(self) -> str:
        return str(self.state_dir)

    @property
    def backend(self) -> ms.RecordBackend:
        """Opened on first use (a command that only parses its arguments needs no database)."""
        if self._backend is None:
            try:
                self._backend = ms.open_store(self.sd, self.record_store)
            except (ms.StoreUnavailable, ValueError) as exc:
                raise unavailable(exc) from None
        return self._backend

    def _call(self, what: Callable[[], Any]) -> Any:
        try:
            return what()
        except ms.StoreUnavailable as exc:
            raise unavailable(exc) from None

    def ensure(self) -> None:
        # runs/, locks/ and the evacuations' logs live in the state directory whatever the record store
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir.chmod(0o700)
        self._call(self.backend.ensure)

    # ---- reading

    def load(self, env: str) -> MoveRecord | None:
        try:
            return self._call(lambda: self.backend.load(env))
        except EnvNameError as exc:
            raise MoveError(ExitCode.USAGE, str(exc), "use the env name from strackt_environments") from None
        except mr.RecordError as exc:
            raise MoveError(
                ExitCode.FAILED,
                f"the move record cannot be trusted: {exc}",
                f"inspect {self.backend.where(env)}; restore it from history or remove it and"
                " roll back by hand",
            ) from None

    def require(self, env: str, command: str) -> MoveRecord:
        rec = self.load(env)
        if rec is None:
            latest = self.latest_history(env)
            hint = (
                f" (last move {latest.move_id} ended {latest.stage})" if latest is not None else ""
            )
            raise MoveError(
                ExitCode.NO_MOVE,
                f"no move of {env} is in progress{hint}; nothing to {command}",
                f"start one with `strackt-move start {env} --target SERVER`",
            )
        return rec

    def load_history(self, move_id: str) -> MoveRecord | None:
        try:
            return self._call(lambda: self.backend.load_history(move_id))
        except mr.RecordError as exc:
            raise MoveError(ExitCode.FAILED, f"archived record cannot be trusted: {exc}",
                            f"inspect {self.backend.where_history(move_id)}") from None

    def latest_history(self, env: str) -> MoveRecord | None:
        ids = self.history_ids(env)
        return self.load_history(ids[-1]) if ids else None

    def active_envs(self) -> list[str]:
        return self._call(lambda: self.backend.list_active())

    def history_ids(self, env: str | None = None) -> list[str]:
        return self._call(lambda: self.backend.list_history(env))

    def find(self, env: str, move_id: str | None) -> MoveRecord | None:
        """The env's active record, or (after it was archived) the one with ``move_id``."""
        rec = self.load(env)
        if rec is not None and (move_id is None or rec.move_id == move_id):
            return rec
        if move_id is not None:
            return self.load_history(move_id)
        return rec

    def retained(self, env: str) -> mr.RetainedCopies:
        """The copies finished moves of ``env`` left on their old servers (none: an empty list)."""
        try:
            return self._call(lambda: self.backend.load_retained(env))
        except mr.RecordError as exc:
            raise MoveError(ExitCode.FAILED, f"the retained copies of {env} cannot be trusted: {exc}",
                            f"inspect {self.backend.where_retained(env)}; do not edit it by hand") from None

    def retained_envs(self) -> list[str]:
        return self._call(lambda: self.backend.list_retained())

    def iter_active(self) -> Iterator[tuple[str, MoveRecord | None, MoveError | None]]:
        for env in self.active_envs():
            try:
                yield env, self.load(env), None
            except MoveError as exc:
                yield env, None, exc

    # ---- writing (always under the record's own lock, re-read inside it)

    def update(self, env: str, change: Callable[[MoveRecord], Any]) -> MoveRecord:
        """Re-read the record under its lock, apply ``change``, save atomically, archive if finished."""
        backend = self.backend
        try:
            with backend.lock(env, timeout=WRITE_LOCK_TIMEOUT_S):
                rec = backend.load(env)
                if rec is None:
                    raise MoveError(ExitCode.NO_MOVE, f"no move of {env} is in progress",
                                    "`strackt-move list` shows the moves in progress")
                change(rec)
                if rec.finished:
                    backend.archive(rec)
                else:
                    backend.save(rec)
                return rec
        except ms.StoreUnavailable as exc:
            raise unavailable(exc) from None
        except ms.RecordLocked as exc:
            raise MoveError(ExitCode.BUSY, str(exc), "retry in a moment") from None
        except mr.TransitionError as exc:
            raise MoveError(ExitCode.WRONG_STATE, str(exc), f"`strackt-move status {env}` shows where the move is") from None

    def mark_run_died(self, env: str, stage: str, message: str) -> MoveRecord | None:
        """Record that the run of ``stage`` ended without the role recording an end: only while
        ``stage`` is the record's open stage (started, neither completed nor failed since). A
        stage the run never started, or one its role already ended, is left as the role wrote it."""

        def change(rec: MoveRecord) -> None:
            if rec.is_open(stage):
                rec.fail(stage, message)

        try:
            return self.update(env, change)
        except MoveError as exc:
            if exc.code == ExitCode.NO_MOVE:
                return None
            raise

    def warn(self, env: str, text: str) -> None:
        try:
            self.update(env, lambda rec: rec.warn(text))
        except MoveError as exc:
            if exc.code != ExitCode.NO_MOVE:
                raise

    def record_file(self, env: str) -> Path:
        """The record's file in the file store (tests and the file store's messages)."""
        return Path(ms.record_path(self.sd, env))

    def where(self, env: str) -> str:
        """Where the env's record lives, whatever the store (messages; never a password)."""
        return self.backend.where(env)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def record_dict(rec: MoveRecord) -> dict[str, Any]:
    """The record as plain data (what reports and JSON output show), without its checksum."""
    return dict(rec.to_dict(with_checksum=False))
