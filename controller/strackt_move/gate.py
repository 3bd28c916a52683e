"""The confirmation gate: what the operator sees before saying yes, and the predicted freeze.

Works on the record as a JSON-shaped dict (``store.Move.data``), so ``status`` shows the same
summary long after ``start`` ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from strackt_move.progress import format_pass
from strackt_move.units import human_duration

#: draining and stopping the app on the source and starting the forwarder to the target, on top
#: of the final pass (the DNS update is outside the freeze: the old server forwards meanwhile).
#: Measured on the testbed at 0.8-1.3 s; an estimate here, shown as such in the summary.
FREEZE_OVERHEAD_S = 1.0
#: how many recent incremental passes the freeze prediction looks at
PASSES_CONSIDERED = 3
DEFAULT_STALE_AFTER_S = 24 * 3600.0


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def age_s(value: Any, now: datetime) -> float | None:
    at = parse_time(value)
    return None if at is None else max(0.0, (now - at).total_seconds())


@dataclass(frozen=True)
class FreezePrediction:
    seconds: float | None
    basis: str


def predict_freeze(passes: list[dict[str, Any]], overhead_s: float = FREEZE_OVERHEAD_S) -> FreezePrediction:
    """Final pass ≈ the slowest of the last few catch-up passes; plus the stop and hand-over.
    A catch-up pass is any source→target pass after the first (whatever its ``kind`` label says:
    only the first copies everything). With only the first pass measured, it is the bound."""
    measured = [p for p in passes if isinstance(p.get("duration_s"), (int, float)) and p.get("kind") != "reverse"]
    incremental = measured[1:]
    if incremental:
        recent = incremental[-PASSES_CONSIDERED:]
        slowest = max(float(p["duration_s"]) for p in recent)
        return FreezePrediction(
            slowest + overhead_s,
            f"slowest of last {len(recent)} catch-up pass(es) {human_duration(slowest)}"
            f" + ~{human_duration(overhead_s)} stop and hand-over",
        )
    if measured:
        full = float(measured[-1]["duration_s"])
        return FreezePrediction(
            full + overhead_s,
            f"upper bound: only the first, full pass measured ({human_duration(full)}); "
            "a catch-up pass (`strackt-move sync`) refines it",
        )
    return FreezePrediction(None, "no sync pass measured yet")


def find_health(record: dict[str, Any], artifact_data: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The target's health as verify saw it: from the verify run's set_stats, else from the record."""
    for source in (artifact_data or {}, record):
        for key in ("target_health", "health"):
            value = source.get(key)
            if isinstance(value, dict):
                return value
        verify = source.get("verify") or source.get("strackt_verify")
        if isinstance(verify, dict):
            health = verify.get("health", verify)
            if isinstance(health, dict):
                return health
    return None


@dataclass
class GateSummary:
    env: str
    source: str
    target: str
    commit: str | None
    source_commit: str | None
    health: dict[str, Any] | None
    last_pass: dict[str, Any] | None
    last_pass_number: int
    last_pass_age_s: float | None
    freeze: FreezePrediction
    waiting_s: float | None
    stale: bool
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"== {self.env}: verified on {self.target}, waiting for confirmation"]
        commit = (self.commit or "?")[:12]
        if self.source_commit and self.source_commit != self.commit:
            out.append(f"  commit going live : {commit} (source runs {self.source_commit[:12]})")
        else:
            out.append(f"  commit going live : {commit}")
        out.append(f"  target health     : {describe_health(self.health, self.commit)}")
        if self.last_pass:
            out.append(
                f"  last sync pass    : {human_duration(self.last_pass_age_s)} ago — "
                f"{format_pass(self.last_pass, self.last_pass_number)}"
            )
        else:
            out.append("  last sync pass    : none recorded")
        freeze = human_duration(self.freeze.seconds) if self.freeze.seconds is not None else "unknown"
        out.append(f"  predicted freeze  : {freeze} ({self.freeze.basis})")
        if self.waiting_s is not None:
            flag = "  !!! STALE: waiting longer than allowed — confirm or roll back" if self.stale else ""
            out.append(f"  waiting for       : {human_duration(self.waiting_s)}{flag}")
        for warning in self.warnings:
            out.append(f"  warning           : {warning}")
        return out


def describe_health(health: dict[str, Any] | None, expected_commit: str | None) -> str:
    if not health:
        return "unknown (verify reported nothing)"
    status = health.get("status", "?")
    parts = [str(status)]
    details = []
    if health.get("commit"):
        mark = "" if not expected_commit or health["commit"] == expected_commit else " MISMATCH"
        details.append(f"commit {str(health['commit'])[:12]}{mark}")
    if "database" in health:
        details.append("database ok" if health["database"] else "database DOWN")
    if health.get("server"):
        details.append(f"server {health['server']}")
    if details:
        parts.append(f"({', '.join(details)})")
    return " ".join(parts)


def summarize(
    record: dict[str, Any],
    now: datetime,
    artifact_data: dict[str, Any] | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> GateSummary:
    passes = [p for p in record.get("sync_passes") or [] if isinstance(p, dict)]
    last = passes[-1] if passes else None
    last_end = None
    if last is not None:
        started = parse_time(last.get("started_at"))
        if started is not None:
            last_end = started.timestamp() + float(last.get("duration_s") or 0.0)
    waiting_s = age_s(record.get("waiting_since"), now)
    return GateSummary(
        env=str(record.get("env", "?")),
        source=str(record.get("source", "?")),
        target=str(record.get("target", "?")),
        commit=record.get("commit"),
        source_commit=record.get("source_commit"),
        health=find_health(record, artifact_data),
        last_pass=last,
        last_pass_number=len(passes),
        last_pass_age_s=None if last_end is None else max(0.0, now.timestamp() - last_end),
        freeze=predict_freeze(passes),
        waiting_s=waiting_s,
        stale=waiting_s is not None and waiting_s > stale_after_s,
        warnings=[str(w) for w in record.get("warnings") or []],
    )
