"""The confirmation gate: what the operator sees before saying yes.

The figures (last pass, its age, the predicted freeze, how long the move waits, whether that is
too long) are ``move_status.summary``'s, the same that ``status`` and ``playbooks/status.yml``
show; this module adds the target's health as verify saw it and lays the lines out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import move_status

from strackt_move.progress import format_pass
from strackt_move.status_view import describe_database_lag
from strackt_move.store import MoveRecord
from strackt_move.units import human_duration


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
    freeze: move_status.FreezePrediction
    waiting_s: float | None
    stale: bool
    warnings: list[str] = field(default_factory=list)
    database: dict[str, Any] | None = None  # move_status.database_lag: the database moves too

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
        if self.database:
            out.append(f"  database          : moves to {self.database['server']}; "
                       f"{describe_database_lag(self.database)}")
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
    record: MoveRecord,
    now: datetime,
    artifact_data: dict[str, Any] | None = None,
    stale_after_s: float = move_status.DEFAULT_WAIT_WARN_S,
) -> GateSummary:
    status = move_status.summary(record, now, stale_after_s)
    sync = status["sync"]
    return GateSummary(
        env=record.env,
        source=record.source,
        target=record.target,
        commit=record.commit,
        source_commit=record.source_commit,
        health=find_health(record.to_dict(with_checksum=False), artifact_data),
        last_pass=sync["last_pass"],
        last_pass_number=sync["passes"],
        last_pass_age_s=sync["lag_s"],
        freeze=move_status.FreezePrediction(status["predicted_freeze_s"], status["predicted_freeze_basis"]),
        waiting_s=status["waiting_s"],
        stale=status["stale"],
        warnings=list(status["warnings"]),
        database=sync.get("database"),
    )
