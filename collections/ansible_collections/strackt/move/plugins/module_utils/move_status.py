# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a move record says to an operator: the one status summary and the one freeze prediction.

``summary(record, now, wait_warn_s)`` is what ``move_record action=get`` returns (and so
``playbooks/status.yml``), what ``strackt-move status --json`` prints for each move, and what the
confirmation gate shows: computed here only. Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing

from ansible_collections.strackt.move.plugins.module_utils import clock, forwarding
from ansible_collections.strackt.move.plugins.module_utils.move_record import MoveRecord, SyncPass

#: a move waiting for confirmation longer than this is flagged (stale): the target drifts and
#: the env's DNS records keep the lowered TTL meanwhile
DEFAULT_WAIT_WARN_S = 24 * 3600
#: draining and stopping the app on the source and starting the forwarder to the target, on top
#: of the final pass (the DNS update is outside the freeze: the old server forwards meanwhile).
#: Measured on the testbed at 0.8-1.3 s; an estimate, shown as such.
FREEZE_OVERHEAD_S = 1.0
#: how many recent catch-up passes the freeze prediction looks at
PASSES_CONSIDERED = 3

PassLike = typing.Union[SyncPass, typing.Mapping[str, typing.Any]]


def human_duration(seconds: float | int | None) -> str:
    """``0.2s``, ``42s``, ``4m58s``, ``26h00m``, ``2d02h``; ``?`` for unknown."""
    if seconds is None:
        return "?"
    s = max(0.0, float(seconds))
    if s < 10:
        return "%.1fs" % s
    if s < 60:
        return "%.0fs" % s
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, sec)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return "%dh%02dm" % (hours, minutes)
    days, hours = divmod(hours, 24)
    return "%dd%02dh" % (days, hours)


def _pass_dict(p: PassLike) -> dict[str, typing.Any]:
    return p.to_dict() if isinstance(p, SyncPass) else dict(p)


# --------------------------------------------------------------------------------------------
# the freeze prediction


@dataclasses.dataclass(frozen=True)
class FreezePrediction:
    seconds: float | None
    basis: str


def predict_freeze(passes: typing.Iterable[PassLike], overhead_s: float = FREEZE_OVERHEAD_S) -> FreezePrediction:
    """Final pass ≈ the slowest of the last few catch-up passes; plus the stop and hand-over.
    A catch-up pass is any source→target pass after the first (whatever its ``kind`` label says:
    only the first copies everything). With only the first pass measured, it is the bound."""
    measured = [d for d in map(_pass_dict, passes)
                if isinstance(d.get("duration_s"), (int, float)) and d.get("kind") != "reverse"]
    catchup = measured[1:]
    if catchup:
        recent = catchup[-PASSES_CONSIDERED:]
        slowest = max(float(d["duration_s"]) for d in recent)
        return FreezePrediction(
            slowest + overhead_s,
            "slowest of last %d catch-up pass(es) %s + ~%s stop and hand-over"
            % (len(recent), human_duration(slowest), human_duration(overhead_s)),
        )
    if measured:
        full = float(measured[-1]["duration_s"])
        return FreezePrediction(
            full + overhead_s,
            "upper bound: only the first, full pass measured (%s); a catch-up pass "
            "(`strackt-move sync`) refines it" % human_duration(full),
        )
    return FreezePrediction(None, "no sync pass measured yet")


# --------------------------------------------------------------------------------------------
# waiting at the gate


def waiting_seconds(record: MoveRecord, now: datetime.datetime) -> float | None:
    """Seconds the move has waited for confirmation, or None if it is not waiting."""
    if record.state != "waiting" or not record.waiting_since:
        return None
    return clock.seconds_since(record.waiting_since, now)


def is_stale(record: MoveRecord, now: datetime.datetime, wait_warn_s: float = DEFAULT_WAIT_WARN_S) -> bool:
    waited = waiting_seconds(record, now)
    return waited is not None and waited > wait_warn_s


def stale_message(record: MoveRecord, now: datetime.datetime,
                  wait_warn_s: float = DEFAULT_WAIT_WARN_S) -> str | None:
    """The warning for a move waiting longer than ``wait_warn_s``, else None."""
    waited = waiting_seconds(record, now)
    if waited is None or waited <= wait_warn_s:
        return None
    return ("%s: move %s has waited %s for confirmation (more than %s); confirm it or roll it back — the "
            "target drifts and the source keeps the lowered DNS TTL meanwhile"
            % (record.env, record.move_id, human_duration(waited), human_duration(wait_warn_s)))


# --------------------------------------------------------------------------------------------
# instants the roles compare data with


def last_pass_started_ns(record: MoveRecord) -> int | None:
    """When the last recorded pass started (ns since the epoch, the source's clock), or None."""
    return record.sync_passes[-1].started_ns if record.sync_passes else None


def target_writes_since_ns(record: MoveRecord) -> int | None:
    """Since when the target may hold writes of its own: the release of the freeze when recorded,
    else the start of the last pass."""
    if record.freeze is not None:
        return record.freeze.released_at_ns
    return last_pass_started_ns(record)


def last_pass_age_s(record: MoveRecord, now: datetime.datetime) -> float | None:
    """Seconds since the last pass ended (the sync lag), or None without a pass."""
    if not record.sync_passes:
        return None
    last = record.sync_passes[-1]
    ended = last.started_ns / 1e9 + last.duration_s
    return max(0.0, now.timestamp() - ended)


# --------------------------------------------------------------------------------------------
# stage timings


def stage_timings(history: typing.Iterable[typing.Any]) -> list[dict[str, typing.Any]]:
    """Pair each ``started`` with the next ``completed``/``failed`` of the same stage."""
    out: list[dict[str, typing.Any]] = []
    open_runs: dict[str, dict[str, typing.Any]] = {}
    for item in history:
        ev = item.to_dict() if hasattr(item, "to_dict") else item
        stage, event, at = ev.get("stage"), ev.get("event"), ev.get("at")
        if event == "started":
            entry = {"stage": stage, "started_at": at, "ended_at": None, "duration_s": None, "result": "running"}
            open_runs[str(stage)] = entry
            out.append(entry)
        elif event in ("completed", "failed"):
            found = open_runs.pop(str(stage), None)
            if found is None:
                found = {"stage": stage, "started_at": None, "ended_at": None, "duration_s": None, "result": event}
                out.append(found)
            found["ended_at"] = at
            found["result"] = event
            if found["started_at"]:
                found["duration_s"] = clock.seconds_since(found["started_at"], clock.parse_ts(at))
    # a stage left "running" by a later one (e.g. re-entered) is no longer running
    for entry, after in zip(out, out[1:]):
        if entry["result"] != "running":
            continue
        if entry["stage"] == "awaiting_confirmation" and after["started_at"]:
            # the wait ends when the operator confirms (or rolls back): the next stage starts
            entry["result"] = "completed"
            entry["ended_at"] = after["started_at"]
            entry["duration_s"] = clock.seconds_since(entry["started_at"], clock.parse_ts(after["started_at"]))
        else:
            entry["result"] = "interrupted"
    return out


# --------------------------------------------------------------------------------------------
# after the switch: may the move finish?


def dns_caches_expire_at(record: MoveRecord) -> datetime.datetime | None:
    """When resolvers' caches of the old address expired (TTL-keeping resolvers), None before the switch."""
    if record.dns is None or not record.switched_at or not record.history:
        return None
    return forwarding.dns_caches_expire_at(record.switched_at, record.history[0].at,
                                           record.dns.previous_ttl, record.dns.move_ttl)


def finish_decision(record: MoveRecord, now: datetime.datetime, settings: forwarding.Settings | None = None,
                    operator_now: bool = False) -> forwarding.Decision | None:
    """The one answer to "may this switched move finish at ``now``" (None: it is not switched).
    ``settings`` default to those the latest measurement was judged by (the env's, recorded), before
    the first measurement to the env's as recorded when the move started, and for a record without
    them to the defaults."""
    if record.stage != "switched" or not record.switched_at:
        return None
    if record.finishing_since is not None:
        return forwarding.Decision(True, "its finish began at %s: it completes what is left" % record.finishing_since,
                                   None)
    stale = record.stale.to_dict() if record.stale is not None else None
    if settings is None:
        recorded = stale["forwarding"] if stale else record.forwarding
        settings = forwarding.Settings.from_dict(recorded) if recorded else forwarding.Settings()
    return forwarding.decide(now, record.switched_at, settings, stale, dns_caches_expire_at(record), operator_now)


# --------------------------------------------------------------------------------------------
# the summary


def database_lag(record: MoveRecord) -> dict[str, typing.Any] | None:
    """A move carrying the database: its new home and the replication lag the last pass saw
    (None when the database stays where it is)."""
    if record.database is None:
        return None
    last = next((p for p in reversed(record.sync_passes) if p.database_lag_bytes is not None), None)
    return {"server": record.database["server"],
            "lag_bytes": last.database_lag_bytes if last is not None else None,
            "lag_s": last.database_lag_s if last is not None else None,
            "seen_at": last.started_at if last is not None else None}


def summary(record: MoveRecord, now: datetime.datetime,
            wait_warn_s: float = DEFAULT_WAIT_WARN_S) -> dict[str, typing.Any]:
    """The status of one move at ``now`` (timezone-aware), as plain JSON-ready data."""
    passes = [p.to_dict() for p in record.sync_passes]
    prediction = predict_freeze(passes)
    decision = finish_decision(record, now)
    started = record.history[0].at if record.history else None
    return {
        "as_of": clock.format_ts(now),
        "env": record.env,
        "move_id": record.move_id,
        "source": record.source,
        "target": record.target,
        "commit": record.commit,
        "source_commit": record.source_commit,
        "stage": record.stage,
        "state": record.state,
        "started_at": started,
        "updated_at": record.history[-1].at if record.history else None,
        "elapsed_s": clock.seconds_since(started, now) if started else None,
        "stage_timings": stage_timings(record.history),
        "waiting_since": record.waiting_since,
        "waiting_s": waiting_seconds(record, now),
        "stale": is_stale(record, now, wait_warn_s),
        "stale_message": stale_message(record, now, wait_warn_s),
        "switched_at": record.switched_at,
        "sync": {
            "passes": len(passes),
            "last_pass": passes[-1] if passes else None,
            "lag_s": last_pass_age_s(record, now),
            "database": database_lag(record),
        },
        "predicted_freeze_s": prediction.seconds,
        "predicted_freeze_basis": prediction.basis,
        "freeze": record.freeze.to_dict() if record.freeze is not None else None,
        "last_pass_started_ns": last_pass_started_ns(record),
        "target_writes_since_ns": target_writes_since_ns(record),
        "warnings": list(record.warnings),
        "released": record.released,
        "checks": [c.to_dict() for c in record.checks],
        "backups": [b.to_dict() for b in record.backups],
        # after the switch: what the old server still takes, and whether the move may finish
        "stale_traffic": record.stale.to_dict() if record.stale is not None else None,
        "finish": None if decision is None else {
            "due": decision.finish, "why": decision.why,
            "not_before": clock.format_ts(decision.not_before) if decision.not_before else None},
    }
