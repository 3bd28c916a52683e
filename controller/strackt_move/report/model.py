"""What a move report shows, computed once from a move record (a JSON-shaped dict).

Every renderer (terminal, JSON, HTML) reads a :class:`MoveReport`; none of them looks at the
record itself. Optional record fields (``sync_passes[].started_at_ns``, ``freeze``,
``stale_traffic``, ``checks``) may be absent: the report then says "not recorded" instead of
guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils.move_record import STAGES, TRANSITIONS

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.move_status import stage_timings

#: the parts of the freeze, in the order they happen on the source (record field, label)
FREEZE_PARTS: tuple[tuple[str, str], ...] = (
    ("drain_s", "hold and drain"),
    ("stop_s", "app stop"),
    ("final_sync_s", "final pass"),
    ("forwarder_s", "forwarder"),
)

_CHECK_RESULTS = {"completed": "ok", "failed": "failed", "started": "note"}
# a freeze part smaller than this is rounding noise, not a hidden step
_FREEZE_SLACK_S = 0.0005



def parse_time(value: Any) -> datetime | None:
    """A record timestamp, or None for a missing or unreadable one (a report shows what it can)."""
    try:
        return clock.parse_ts(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class StageSpan:
    """One run of a stage: started .. completed/failed (or still running, or left by a later one)."""

    stage: str
    result: str  # completed | failed | running | interrupted
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    start_offset_s: float | None  # seconds since the move started
    end_offset_s: float | None


@dataclass(frozen=True)
class SyncPassPoint:
    number: int
    kind: str
    mode: str | None
    started_at: str | None
    start_offset_s: float | None
    duration_s: float | None
    files_changed: int | None
    bytes_changed: int | None
    files_total: int | None
    bytes_total: int | None
    vanished: bool
    #: how long the target had not been updated when this pass began (since the previous
    #: source-to-target pass ended; the same "lag" as `status`); None for the first pass
    lag_s: float | None


@dataclass(frozen=True)
class FreezePart:
    name: str
    label: str
    seconds: float


@dataclass(frozen=True)
class FreezeBreakdown:
    recorded: bool  # the record has a ``freeze`` object
    freeze_s: float | None
    parts: tuple[FreezePart, ...]
    held_at: str | None
    released_at: str | None
    #: the final pass as ``sync_passes`` recorded it (there even without ``freeze``)
    final_pass_s: float | None


@dataclass(frozen=True)
class Check:
    stage: str
    at: str | None
    name: str
    result: str  # ok | failed | note (or what a structured check says)
    detail: str
    origin: str  # "checks" (a structured record field) or "history" (a stage event's message)


@dataclass(frozen=True)
class MoveReport:
    move_id: str
    env: str
    source: str
    target: str
    source_address: str
    target_address: str
    commit: str
    source_commit: str
    stage: str
    state: str
    active: bool
    started_at: str | None
    ended_at: str | None  # None while the move is in progress
    duration_s: float | None  # started .. ended, or .. the report's time while in progress
    switched_at: str | None
    switched_offset_s: float | None
    waiting_since: str | None
    waited_s: float | None  # time spent at the confirmation gate
    dns: dict[str, Any] | None
    stages: tuple[StageSpan, ...]
    sync_passes: tuple[SyncPassPoint, ...]
    freeze: FreezeBreakdown
    stale_traffic: dict[str, Any] | None  # None: not recorded
    warnings: tuple[str, ...]
    checks: tuple[Check, ...]
    checks_origin: str  # "checks" or "history"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples)."""
        return _plain(asdict(self))  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---- helpers


def _epoch(value: Any) -> float | None:
    at = parse_time(value)
    return None if at is None else at.timestamp()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def iso_from_ns(ns: Any) -> str | None:
    """Epoch nanoseconds → ISO-8601 UTC with milliseconds (the freeze is a sub-second affair)."""
    if isinstance(ns, bool) or not isinstance(ns, int):
        return None
    at = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _offset(epoch: float | None, origin: float | None) -> float | None:
    return None if epoch is None or origin is None else epoch - origin


# ---- the parts


def stage_spans(history: list[dict[str, Any]], origin: float | None, now: float) -> tuple[StageSpan, ...]:
    timings = stage_timings(history)
    spans = []
    for t, after in zip(timings, [*timings[1:], None]):
        start, end = _epoch(t["started_at"]), _epoch(t["ended_at"])
        result, ended_at, duration = str(t["result"]), t["ended_at"], t["duration_s"]
        if result == "interrupted" and after is not None and _goes_on_to(str(t["stage"]), str(after["stage"])):
            # a stage that ends by starting the next (rollback → rolled_back) was not interrupted
            result, ended_at, end = "completed", after["started_at"], _epoch(after["started_at"])
            duration = None if start is None or end is None else max(0.0, end - start)
        if result == "running" and start is not None:
            end_offset = _offset(now, origin)  # drawn up to the report's time
        elif result == "interrupted" and after is not None:
            end_offset = _offset(_epoch(after["started_at"]), origin)  # drawn until something else began
        else:
            end_offset = _offset(end, origin)
        spans.append(StageSpan(
            stage=str(t["stage"]), result=result, started_at=t["started_at"], ended_at=ended_at,
            duration_s=duration, start_offset_s=_offset(start, origin), end_offset_s=end_offset,
        ))
    return tuple(spans)


def _goes_on_to(stage: str, following: str) -> bool:
    """``following`` is a step forward from ``stage`` in the state machine (not a retry or a way back)."""
    return (stage in STAGES and following in STAGES and following != "rollback"
            and STAGES.index(following) > STAGES.index(stage) and following in TRANSITIONS.get(stage, ()))


def pass_start(p: dict[str, Any]) -> float | None:
    """When a pass started, as epoch seconds: ``started_at_ns`` if recorded, else the ISO second."""
    ns = p.get("started_at_ns")
    if isinstance(ns, int) and not isinstance(ns, bool):
        return ns / 1e9
    return _epoch(p.get("started_at"))


def sync_pass_points(passes: list[dict[str, Any]], origin: float | None) -> tuple[SyncPassPoint, ...]:
    points = []
    previous_end: float | None = None
    for number, p in enumerate(passes, start=1):
        start, duration = pass_start(p), _number(p.get("duration_s"))
        kind = str(p.get("kind") or "full")
        lag = None
        if kind != "reverse" and start is not None and previous_end is not None:
            lag = max(0.0, start - previous_end)
        points.append(SyncPassPoint(
            number=number, kind=kind, mode=p.get("mode") if isinstance(p.get("mode"), str) else None,
            started_at=p.get("started_at"), start_offset_s=_offset(start, origin), duration_s=duration,
            files_changed=_count(p.get("files_changed")), bytes_changed=_count(p.get("bytes_changed")),
            files_total=_count(p.get("files_total")), bytes_total=_count(p.get("bytes_total")),
            vanished=p.get("vanished") is True, lag_s=lag,
        ))
        if kind != "reverse" and start is not None:  # a reverse pass copies back: not the target's lag
            previous_end = start + (duration or 0.0)
    return tuple(points)


def freeze_breakdown(freeze: Any, passes: tuple[SyncPassPoint, ...]) -> FreezeBreakdown:
    finals = [p.duration_s for p in passes if p.kind == "final"]
    final_pass_s = finals[-1] if finals else None
    if not isinstance(freeze, dict):
        return FreezeBreakdown(False, None, (), None, None, final_pass_s)
    total = _number(freeze.get("freeze_s"))
    held, released = freeze.get("held_at_ns"), freeze.get("released_at_ns")
    if total is None and isinstance(held, int) and isinstance(released, int):
        total = max(0, released - held) / 1e9
    parts = [FreezePart(name, label, float(freeze[name])) for name, label in FREEZE_PARTS
             if _number(freeze.get(name)) is not None]
    if total is not None and parts:
        rest = total - sum(p.seconds for p in parts)
        if rest > _FREEZE_SLACK_S:  # what the parts do not account for (hand-over bookkeeping)
            parts.append(FreezePart("other_s", "other", rest))
    return FreezeBreakdown(True, total, tuple(parts), iso_from_ns(held), iso_from_ns(released), final_pass_s)


def checks_from_history(history: list[dict[str, Any]]) -> tuple[Check, ...]:
    """Today's checks: what each stage said when it completed or failed (its event message)."""
    out = []
    for i, ev in enumerate(history):
        message = str(ev.get("message") or "").strip()
        if not message:
            continue
        event = str(ev.get("event") or "")
        following = next((e for e in history[i + 1:] if e.get("stage") == ev.get("stage")), None)
        if event == "started" and following is not None and str(following.get("message") or "").strip() == message:
            continue  # said again when the stage ended: one row
        out.append(Check(
            stage=str(ev.get("stage") or "?"), at=ev.get("at"), name=f"{ev.get('stage')} {event}",
            result=_CHECK_RESULTS.get(event, event), detail=message, origin="history",
        ))
    return tuple(out)


def structured_checks(checks: list[Any]) -> tuple[Check, ...]:
    """A future record field: ``checks: [{name, stage?, at?, ok: bool | result: str, detail?}]``."""
    out = []
    for c in checks:
        if not isinstance(c, dict):
            continue
        result, ok = c.get("result"), c.get("ok")
        if not isinstance(result, str):
            result = ("ok" if ok else "failed") if isinstance(ok, bool) else "?"
        out.append(Check(stage=str(c.get("stage") or ""), at=c.get("at"), name=str(c.get("name") or "?"),
                         result=result, detail=str(c.get("detail") or c.get("message") or ""), origin="checks"))
    return tuple(out)


def build(record: dict[str, Any], now: datetime, active: bool | None = None) -> MoveReport:
    """The report of one move. ``now``: the report's time (for a move still in progress)."""
    history = [e for e in record.get("history") or [] if isinstance(e, dict)]
    passes = [p for p in record.get("sync_passes") or [] if isinstance(p, dict)]
    finished = record.get("stage") in ("done", "rolled_back")
    times = [t for t in (_epoch(e.get("at")) for e in history) if t is not None]
    origin = min(times) if times else None
    started_at = history[0].get("at") if history else None
    ended_at = history[-1].get("at") if history and finished else None
    end = _epoch(ended_at) if finished else now.timestamp()
    spans = stage_spans(history, origin, now.timestamp())
    waits = [s.duration_s for s in spans if s.stage == "awaiting_confirmation" and s.duration_s is not None]
    points = sync_pass_points(passes, origin)
    raw_checks = record.get("checks")
    checks = structured_checks(raw_checks) if isinstance(raw_checks, list) else checks_from_history(history)
    stale = record.get("stale_traffic")
    return MoveReport(
        move_id=str(record.get("move_id", "?")), env=str(record.get("env", "?")),
        source=str(record.get("source", "?")), target=str(record.get("target", "?")),
        source_address=str(record.get("source_address", "")), target_address=str(record.get("target_address", "")),
        commit=str(record.get("commit", "")), source_commit=str(record.get("source_commit", "")),
        stage=str(record.get("stage", "?")), state=str(record.get("state", "?")),
        active=(not finished) if active is None else active,
        started_at=started_at, ended_at=ended_at,
        duration_s=None if origin is None or end is None else max(0.0, end - origin),
        switched_at=record.get("switched_at"),
        switched_offset_s=_offset(_epoch(record.get("switched_at")), origin),
        waiting_since=record.get("waiting_since"),
        waited_s=sum(waits) if waits else None,
        dns=record.get("dns") if isinstance(record.get("dns"), dict) else None,
        stages=spans, sync_passes=points,
        freeze=freeze_breakdown(record.get("freeze"), points),
        stale_traffic=stale if isinstance(stale, dict) else None,
        warnings=tuple(str(w) for w in record.get("warnings") or []),
        checks=checks, checks_origin="checks" if isinstance(raw_checks, list) else "history",
    )
