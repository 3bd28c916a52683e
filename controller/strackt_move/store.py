"""The move records on disk, as the controller sees them.

A thin layer over the collection's ``move_store`` (files, the per-write lock) and ``move_record``
(the ONE schema and state machine). Nothing here defines record fields: it loads and lists
records, and turns their exceptions into ``MoveError``s that name the next step. Stage events are
the roles' to write; the controller writes only what a playbook cannot know: that a run died, and
the sync loop's warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class RecordStore:
    state_dir: Path

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    @property
    def sd(self) -> str:
        return str(self.state_dir)

    def ensure(self) -> None:
        ms.ensure_dirs(self.sd)

    # ---- reading

    def load(self, env: str) -> MoveRecord | None:
        try:
            return ms.load(self.sd, env)
        except EnvNameError as exc:
            raise MoveError(ExitCode.USAGE, str(exc), "use the env name from strackt_environments") from None
        except mr.RecordError as exc:
            raise MoveError(
                ExitCode.FAILED,
                f"the move record cannot be trusted: {exc}",
                f"inspect {ms.record_path(self.sd, env)}; restore it from history or remove it and"
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
            return ms.load_history(self.sd, move_id)
        except mr.RecordError as exc:
            raise MoveError(ExitCode.FAILED, f"archived record cannot be trusted: {exc}",
                            f"inspect {ms.history_path(self.sd, move_id)}") from None

    def latest_history(self, env: str) -> MoveRecord | None:
        ids = ms.list_history(self.sd, env)
        return self.load_history(ids[-1]) if ids else None

    def active_envs(self) -> list[str]:
        return ms.list_active(self.sd)

    def history_ids(self, env: str | None = None) -> list[str]:
        return ms.list_history(self.sd, env)

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
            return ms.load_retained(self.sd, env)
        except mr.RecordError as exc:
            raise MoveError(ExitCode.FAILED, f"the retained copies of {env} cannot be trusted: {exc}",
                            f"inspect {ms.retained_path(self.sd, env)}; do not edit it by hand") from None

    def retained_envs(self) -> list[str]:
        return ms.list_retained(self.sd)

    def iter_active(self) -> Iterator[tuple[str, MoveRecord | None, MoveError | None]]:
        for env in self.active_envs():
            try:
                yield env, self.load(env), None
            except MoveError as exc:
                yield env, None, exc

    # ---- writing (always under the record's own lock, re-read inside it)

    def update(self, env: str, change: Callable[[MoveRecord], Any]) -> MoveRecord:
        """Re-read the record under its lock, apply ``change``, save atomically, archive if finished."""
        try:
            with ms.lock(self.sd, env, timeout=WRITE_LOCK_TIMEOUT_S):
                rec = ms.load(self.sd, env)
                if rec is None:
                    raise MoveError(ExitCode.NO_MOVE, f"no move of {env} is in progress",
                                    "`strackt-move list` shows the moves in progress")
                change(rec)
                if rec.finished:
                    ms.archive(self.sd, rec)
                else:
                    ms.save(self.sd, rec)
                return rec
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
        return Path(ms.record_path(self.sd, env))


def record_dict(rec: MoveRecord) -> dict[str, Any]:
    """The record as plain data (what reports and JSON output show), without its checksum."""
    return dict(rec.to_dict(with_checksum=False))
