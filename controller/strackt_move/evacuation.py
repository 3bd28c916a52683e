"""An evacuation on disk: its plan, and where each of its moves is.

``{state_dir}/evacuations/{server}.json`` (0600, written atomically) holds what only the
evacuation knows: the plan (which env goes where), its settings, the move id each env's move got,
and whether it was aborted. Where a move *is* stays in that move's own record (one writer per
fact): ``phase()`` reads it. A finished evacuation is archived under ``evacuations/history/``.

``{state_dir}/evacuations/{server}.abort`` is the operator's request to stop (``--abort``),
written by that command only; the running evacuation reads it between steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write

from strackt_move import locks
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.store import MoveRecord, RecordStore

SCHEMA_VERSION = 1
CONFIRM_MODES = ("plan", "each")


class Phase(str, Enum):
    """Where one env of an evacuation is, read from its move record."""

    PENDING = "pending"  # no move started by this evacuation yet
    PREPARING = "preparing"  # preflight .. verify running (or interrupted: resume continues it)
    FAILED = "failed"  # a stage failed before the switch: the operator decides (resume or rollback)
    READY = "ready"  # verified, waiting at the gate
    SWITCHING = "switching"  # cutover running
    ROLLING_BACK = "rolling_back"  # rollback running (or interrupted: resume continues it)
    SWITCHED = "switched"  # traffic on the target; finish pending
    DONE = "done"
    ROLLED_BACK = "rolled_back"


FINAL_PHASES = (Phase.DONE, Phase.ROLLED_BACK)


@dataclass
class PlannedMove:
    env: str
    target: str
    data_bytes: int = 0
    memory_mb: int = 0
    move_id: str | None = None  # set once its move exists


@dataclass
class Evacuation:
    server: str
    started_at: str
    targets: list[str]
    parallel: int
    confirm: str  # plan | each
    moves: list[PlannedMove] = field(default_factory=list)
    unplaced: list[dict[str, Any]] = field(default_factory=list)
    state: str = "running"  # running | done | aborted
    finished_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Evacuation":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unknown schema_version {data.get('schema_version')!r}")
        data = dict(data)
        data["moves"] = [PlannedMove(**m) for m in data.get("moves") or []]
        return cls(**data)

    def move_of(self, env: str) -> PlannedMove:
        for m in self.moves:
            if m.env == env:
                return m
        raise KeyError(env)


def phase(store: RecordStore, planned: PlannedMove) -> tuple[Phase, MoveRecord | None]:
    """Where ``planned`` is: its active record (of this evacuation's move), else its archived one."""
    rec = store.load(planned.env)
    if rec is not None and planned.move_id in (None, rec.move_id):
        if planned.move_id is None and rec.target != planned.target:
            return Phase.PENDING, rec  # another move of the env, not ours: the evacuation refuses it
        failed = rec.state == "failed"
        if rec.stage == "done":
            return Phase.DONE, rec
        if rec.stage == "rolled_back":
            return Phase.ROLLED_BACK, rec
        if rec.stage == "switched":
            return Phase.SWITCHED, rec
        if rec.stage == "cutover":
            return (Phase.FAILED if failed else Phase.SWITCHING), rec
        if rec.stage == "rollback":
            return (Phase.FAILED if failed else Phase.ROLLING_BACK), rec
        if rec.stage == "awaiting_confirmation" and rec.state == "waiting":
            return Phase.READY, rec
        return (Phase.FAILED if failed else Phase.PREPARING), rec
    if planned.move_id is not None:
        archived = store.load_history(planned.move_id)
        if archived is not None:
            return (Phase.DONE if archived.stage == "done" else Phase.ROLLED_BACK), archived
    return Phase.PENDING, None


@dataclass
class EvacuationStore:
    state_dir: Path

    @property
    def directory(self) -> Path:
        return Path(self.state_dir) / "evacuations"

    def path(self, server: str) -> Path:
        return self.directory / f"{server}.json"

    def abort_path(self, server: str) -> Path:
        return self.directory / f"{server}.abort"

    def lock(self, server: str, command: str) -> locks.FileLock:
        """Held by whoever drives the evacuation of ``server``: never two at once."""
        return locks.FileLock(Path(self.state_dir) / "locks" / f"evacuation-{server}.lock", "evacuation", command)

    def load(self, server: str) -> Evacuation | None:
        path = self.path(server)
        try:
            return Evacuation.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            raise MoveError(ExitCode.FAILED, f"the evacuation record {path} cannot be read: {exc}",
                            f"inspect it; remove it to plan the evacuation of {server} anew") from None

    def save(self, evac: Evacuation) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(str(self.path(evac.server)), json.dumps(evac.to_dict(), indent=2, sort_keys=True) + "\n")

    @property
    def history_directory(self) -> Path:
        return self.directory / "history"

    @staticmethod
    def history_id(evac: Evacuation) -> str:
        """The archived evacuation's name: the server, '-' and the UTC second it started."""
        return f"{evac.server}-{clock.compact_ts(clock.parse_ts(evac.started_at))}"

    def history_ids(self, server: str) -> list[str]:
        """The archived evacuations of ``server``, oldest first (the stamps sort by time)."""
        if not self.history_directory.is_dir():
            return []
        stamped = re.compile(rf"^{re.escape(server)}-\d{{8}}T\d{{6}}Z$")
        return sorted(p.stem for p in self.history_directory.glob("*.json") if stamped.match(p.stem))

    def load_history(self, history_id: str) -> Evacuation:
        path = self.history_directory / f"{history_id}.json"
        try:
            return Evacuation.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise MoveError(ExitCode.FAILED, f"the archived evacuation record {path} cannot be read: {exc}",
                            "inspect it; it was written by `strackt-move evacuate` and not changed since") from None

    def archive(self, evac: Evacuation) -> Path:
        history = self.history_directory
        history.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest = history / f"{self.history_id(evac)}.json"
        atomic_write(str(dest), json.dumps(evac.to_dict(), indent=2, sort_keys=True) + "\n")
        self.path(evac.server).unlink()
        self.abort_path(evac.server).unlink(missing_ok=True)
        return dest

    def request_abort(self, server: str, rollback: bool) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(str(self.abort_path(server)), json.dumps({"rollback": rollback, "at": clock.format_ts(clock.utcnow())}) + "\n")

    def abort_requested(self, server: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.abort_path(server).read_text()))
        except FileNotFoundError:
            return None
        except ValueError:
            return {"rollback": False}

    def active(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

