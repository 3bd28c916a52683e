"""An evacuation's record: its plan, and where each of its moves is.

The evacuation record holds what only the evacuation knows: the plan (which env goes where), its
settings, the move id each env's move got, and whether it was aborted. Where a move *is* stays in
that move's own record (one writer per fact): ``phase()`` reads it. A finished evacuation is
archived. The operator's request to stop (``--abort``) is written by that command only; the running
evacuation reads it between steps. One lock per server: whoever drives its evacuation.

They live in the record store, like the moves' records (``move_store.RecordBackend``): in the file
store ``{state_dir}/evacuations/{server}.json`` (0600, written atomically), ``evacuations/history/``,
``evacuations/{server}.abort`` and ``locks/evacuation-{server}.lock``; in the PostgreSQL store its
tables and an advisory lock, so the jobs of an evacuation may run on different AWX nodes
(docs/record-store.md). This module is the one reader and writer of their JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError
from ansible_collections.strackt.move.plugins.module_utils.placement import left_behind_warning

from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.store import MoveRecord, RecordStore, unavailable

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
    # with the databases (``evacuate --with-database``; records written before have neither: false)
    with_database: bool = False  # its PostgreSQL database moves with it: its start gets --with-database
    database_bytes: int = 0  # that database's size when planned
    database_stays: bool = False  # its database is on the server and cannot move (not PostgreSQL)
    # what it connects to on the server that stays there (placement.services_left_on; older records: none)
    left_behind: list[str] = field(default_factory=list)

    @property
    def stays_behind(self) -> list[str]:
        """What it leaves on the server (a record from before left_behind: its database if it stays)."""
        return self.left_behind or (["its database (not PostgreSQL)"] if self.database_stays else [])


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
    with_database: bool = False  # planned with the databases (an optional field: older records lack it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Evacuation":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unknown schema_version {data.get('schema_version')!r}")
        data = dict(data)
        data["moves"] = [PlannedMove(**m) for m in data.get("moves") or []]
        return cls(**data)

    @property
    def warnings(self) -> list[str]:
        """One per env that leaves something on the server (the plan's wording): it cannot be switched off."""
        return [left_behind_warning(m.env, self.server, m.stays_behind) for m in self.moves if m.stays_behind]

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


class EvacuationStore:
    """The evacuations' records in the record store (``RecordBackend``'s evacuation methods: the
    files of the module's doc, or the PostgreSQL store's tables, shared by every node), read and
    written by this module's ``Evacuation`` only: the one schema and its checks."""

    def __init__(self, state_dir: Path, records: RecordStore | None = None) -> None:
        self.state_dir = Path(state_dir)
        #: the record store the evacuation's moves use (None: the one the environment names)
        self.records = records if records is not None else RecordStore(self.state_dir)

    def _call(self, what: Callable[[ms.RecordBackend], Any]) -> Any:
        try:
            return what(self.records.backend)
        except ms.StoreUnavailable as exc:
            raise unavailable(exc) from None
        except EnvNameError as exc:
            raise MoveError(ExitCode.USAGE, str(exc), "name a server of the inventory") from None

    @property
    def directory(self) -> Path:
        """The children's logs of an evacuation driven on this node (``{server}-logs/``): they
        stay in the state directory whatever the record store."""
        return self.state_dir / "evacuations"

    def where(self, server: str) -> str:
        return str(self._call(lambda b: b.where_evacuation(server)))

    def lock(self, server: str, command: str) -> Any:
        """Held by whoever drives the evacuation of ``server``: never two at once, on any node
        that shares the record store (``acquire``/``release``, ``locks.LockBusy`` naming the holder)."""
        return _StoreLock(self, self._call(lambda b: b.evacuation_lock(server, command)))

    @staticmethod
    def _parse(text: str, what: str, hint: str) -> Evacuation:
        try:
            return Evacuation.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise MoveError(ExitCode.FAILED, f"{what} cannot be read: {exc}", hint) from None

    def load(self, server: str) -> Evacuation | None:
        text = self._call(lambda b: b.load_evacuation(server))
        if text is None:
            return None
        return self._parse(text, f"the evacuation record {self.where(server)}",
                           f"inspect it; remove it to plan the evacuation of {server} anew")

    def save(self, evac: Evacuation) -> None:
        self._call(lambda b: b.save_evacuation(evac.server, _to_text(evac)))

    @staticmethod
    def history_id(evac: Evacuation) -> str:
        """The archived evacuation's name: the server, '-' and the UTC second it started."""
        return f"{evac.server}-{clock.compact_ts(clock.parse_ts(evac.started_at))}"

    def history_ids(self, server: str) -> list[str]:
        """The archived evacuations of ``server``, oldest first (the stamps sort by time)."""
        return list(self._call(lambda b: b.list_evacuation_history(server)))

    def load_history(self, history_id: str) -> Evacuation:
        text = self._call(lambda b: b.load_evacuation_history(history_id))
        if text is None:
            raise MoveError(ExitCode.NO_MOVE, f"no archived evacuation {history_id}",
                            "`strackt-move report --evacuation SERVER` names the latest")
        return self._parse(text, f"the archived evacuation record {history_id}",
                           "inspect it; it was written by `strackt-move evacuate` and not changed since")

    def archive(self, evac: Evacuation) -> str:
        return str(self._call(lambda b: b.archive_evacuation(evac.server, self.history_id(evac), _to_text(evac))))

    def request_abort(self, server: str, rollback: bool) -> None:
        request = json.dumps({"rollback": rollback, "at": clock.format_ts(clock.utcnow())}) + "\n"
        self._call(lambda b: b.request_evacuation_abort(server, request))

    def abort_requested(self, server: str) -> dict[str, Any] | None:
        text = self._call(lambda b: b.load_evacuation_abort(server))
        if text is None:
            return None
        try:
            return dict(json.loads(text))
        except ValueError:
            return {"rollback": False}

    def active(self) -> list[str]:
        return list(self._call(lambda b: b.list_evacuations()))


def _to_text(evac: Evacuation) -> str:
    return json.dumps(evac.to_dict(), indent=2, sort_keys=True) + "\n"


class _StoreLock:
    """The backend's evacuation lock, its store's failures turned into ``MoveError``s."""

    def __init__(self, evacs: EvacuationStore, lock: Any) -> None:
        self._evacs = evacs
        self._lock = lock

    @property
    def held(self) -> bool:
        return bool(self._lock.held)

    def acquire(self, timeout: float | None = 0.0, poll: float = 0.2) -> None:
        self._evacs._call(lambda _b: self._lock.acquire(timeout, poll))

    def release(self) -> None:
        self._evacs._call(lambda _b: self._lock.release())
