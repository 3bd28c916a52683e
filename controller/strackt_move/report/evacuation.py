"""The report of an evacuation: the evacuation record's facts and one row per env, from its move.

The evacuation record knows the plan (env → target, the move id each env got); where each move
got to and how long it took is in that move's own record (one writer per fact), read here
through :func:`strackt_move.evacuation.phase` and :func:`strackt_move.report.model.build`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Sequence

from strackt_move.errors import MoveError
from strackt_move.evacuation import Evacuation, EvacuationStore, Phase, phase
from strackt_move.exit_codes import ExitCode
from strackt_move.report.model import MoveReport, build
from strackt_move.store import RecordStore, record_dict

#: the stages before the gate: what ``--parallel`` runs side by side
PREPARE_STAGES = ("preflight", "provision", "deploy", "sync", "verify")
#: an archived evacuation: the server's name, '-' and the UTC second it started (``EvacuationStore.archive``)
_ARCHIVED = re.compile(r"^(?P<server>.+)-\d{8}T\d{6}Z$")


@dataclass(frozen=True)
class EvacuationRow:
    """One env of the evacuation. Durations are the sums of that stage's runs (a resumed stage ran twice)."""

    env: str
    source: str
    target: str
    move_id: str | None  # None: no move started for it
    outcome: str  # done | rolled_back | failed | preparing | ready | switching | switched | ... | not started
    started_at: str | None
    ended_at: str | None
    prepare_s: float | None  # preflight .. verify
    waited_s: float | None  # at the gate
    cutover_s: float | None
    finish_s: float | None
    total_s: float | None
    freeze_s: float | None  # None: not recorded (or not switched)
    #: requests that failed and writes lost while the env moved, as a load check measured them
    #: (``report --load FILE``); None: not measured (no stage of a move measures them)
    failed_requests: int | None
    lost_writes: int | None
    with_database: bool = False  # its PostgreSQL database moved (moves) with it
    database_stays: bool = False  # its database stays on the evacuated server (not PostgreSQL)


@dataclass(frozen=True)
class EvacuationReport:
    server: str
    state: str  # running | done | aborted
    active: bool  # the evacuation record is not archived yet
    started_at: str
    finished_at: str | None
    targets: tuple[str, ...]
    parallel: int
    confirm: str
    rows: tuple[EvacuationRow, ...]
    #: the freezes of two envs overlapped (switch-overs are one at a time: this should never be true)
    freezes_overlap: bool
    with_database: bool = False  # planned with the databases (evacuate --with-database)
    warnings: tuple[str, ...] = ()  # one per env whose database stays on the server

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        data["rows"] = [asdict(r) for r in self.rows]
        data["warnings"] = list(self.warnings)
        return data


def _stage_sum(r: MoveReport, stages: Sequence[str]) -> float | None:
    durations = [s.duration_s for s in r.stages if s.stage in stages and s.duration_s is not None]
    return sum(durations) if durations else None


#: what a load file may say of each env (``report --load``)
LOAD_FIGURES = ("failed_requests", "lost_writes")


def check_load(data: Any, source: str) -> dict[str, dict[str, int]]:
    """A load file: ``{ENV: {"failed_requests": N, "lost_writes": N}, ...}`` (either figure may be
    left out; other keys are ignored). Raises ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} is not a JSON object of env → figures")
    out: dict[str, dict[str, int]] = {}
    for env, figures in data.items():
        if not isinstance(figures, dict):
            raise ValueError(f"{source}: {env!r} is not an object like {{\"failed_requests\": 0, \"lost_writes\": 0}}")
        for name in LOAD_FIGURES:
            value = figures.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{source}: {env}.{name} is {value!r}, not a count")
        out[str(env)] = {n: figures[n] for n in LOAD_FIGURES if figures.get(n) is not None}
    return out


def _outcome(ph: Phase, record: dict[str, Any] | None) -> str:
    if ph is Phase.PENDING:
        return "not started"
    if ph is Phase.FAILED and record is not None:
        return f"failed at {record.get('stage')}"
    return ph.value


def row(evac: Evacuation, env: str, target: str, ph: Phase, record: dict[str, Any] | None,
        r: MoveReport | None, load: dict[str, int]) -> EvacuationRow:
    failed, lost = load.get("failed_requests"), load.get("lost_writes")
    planned = evac.move_of(env)
    database = {"with_database": planned.with_database, "database_stays": planned.database_stays}
    if r is None or record is None:
        return EvacuationRow(env, evac.server, target, None, _outcome(ph, None), None, None,
                             None, None, None, None, None, None, failed, lost, **database)
    return EvacuationRow(
        env=env, source=r.source, target=r.target, move_id=r.move_id, outcome=_outcome(ph, record),
        started_at=r.started_at, ended_at=r.ended_at,
        prepare_s=_stage_sum(r, PREPARE_STAGES), waited_s=r.waited_s,
        cutover_s=_stage_sum(r, ("cutover",)), finish_s=_stage_sum(r, ("switched",)),
        total_s=r.duration_s, freeze_s=r.freeze.freeze_s if r.freeze.recorded else None,
        failed_requests=failed, lost_writes=lost, **database,
    )


def _overlap(reports: Sequence[MoveReport], records: Sequence[dict[str, Any]]) -> bool:
    spans = sorted((f["held_at_ns"], f["released_at_ns"]) for f in (rec.get("freeze") for rec in records)
                   if isinstance(f, dict) and isinstance(f.get("held_at_ns"), int)
                   and isinstance(f.get("released_at_ns"), int))
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def build_evacuation(evac: Evacuation, active: bool, store: RecordStore, now: datetime,
                     load: dict[str, dict[str, int]] | None = None) -> tuple[EvacuationReport, list[MoveReport]]:
    """The evacuation's report, and the reports of the moves it started (in the plan's order).
    ``load``: what a load check measured per env (:func:`check_load`)."""
    load = load or {}
    rows, reports, records = [], [], []
    for planned in evac.moves:
        ph, rec = phase(store, planned)
        if rec is not None and ph is Phase.PENDING:
            rec = None  # another move of the env, not this evacuation's
        data = record_dict(rec) if rec is not None else None
        r = build(data, now) if data is not None else None
        rows.append(row(evac, planned.env, planned.target, ph, data, r, load.get(planned.env, {})))
        if r is not None and data is not None:
            reports.append(r)
            records.append(data)
    report = EvacuationReport(
        server=evac.server, state=evac.state, active=active, started_at=evac.started_at,
        finished_at=evac.finished_at, targets=tuple(evac.targets), parallel=evac.parallel, confirm=evac.confirm,
        rows=tuple(rows), freezes_overlap=_overlap(reports, records),
        with_database=evac.with_database, warnings=tuple(evac.warnings),
    )
    return report, reports


def find(evacs: EvacuationStore, name: str) -> tuple[Evacuation, bool]:
    """SERVER: its evacuation in progress, else its latest archived one. SERVER-YYYYMMDDTHHMMSSZ: that
    archived one. Returns (evacuation, in progress)."""
    archived = _ARCHIVED.match(name)
    if archived is None:
        running = evacs.load(name)
        if running is not None:
            return running, True
        ids = evacs.history_ids(name)
        if ids:
            return evacs.load_history(ids[-1]), False
    else:
        running = evacs.load(archived.group("server"))
        if running is not None and evacs.history_id(running) == name:
            return running, True
        if name in evacs.history_ids(archived.group("server")):
            return evacs.load_history(name), False
    raise MoveError(ExitCode.NO_MOVE, f"no evacuation {name!r} is in progress or archived",
                    "name a server (its evacuation in progress, else its latest) or an archived evacuation "
                    "(SERVER-YYYYMMDDTHHMMSSZ: the server and the UTC second it started)")
