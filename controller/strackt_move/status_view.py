"""status / list: what every move is doing, for people and (``--json``) for scripts.

The JSON shape is versioned by ``"schema"``; fields are only ever added within a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from strackt_move import gate, locks
from strackt_move.store import MoveRecord, RecordStore, record_dict
from strackt_move.units import human_bytes, human_duration

JSON_SCHEMA = "strackt-move/status/1"


def stage_timings(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair each ``started`` with the next ``completed``/``failed`` of the same stage."""
    out: list[dict[str, Any]] = []
    open_runs: dict[str, dict[str, Any]] = {}
    for ev in history:
        stage, event, at = ev.get("stage"), ev.get("event"), ev.get("at")
        entry: dict[str, Any] | None
        if event == "started":
            entry = {"stage": stage, "started_at": at, "ended_at": None, "duration_s": None, "result": "running"}
            open_runs[str(stage)] = entry
            out.append(entry)
        elif event in ("completed", "failed"):
            entry = open_runs.pop(str(stage), None)
            if entry is None:
                entry = {"stage": stage, "started_at": None, "ended_at": None, "duration_s": None, "result": event}
                out.append(entry)
            entry["ended_at"] = at
            entry["result"] = event
            start, end = gate.parse_time(entry["started_at"]), gate.parse_time(at)
            if start and end:
                entry["duration_s"] = max(0.0, (end - start).total_seconds())
    # a stage left "running" by a later one (e.g. re-entered) is no longer running
    for entry, after in zip(out, out[1:]):
        if entry["result"] != "running":
            continue
        if entry["stage"] == "awaiting_confirmation":
            # the wait ends when the operator confirms (or rolls back): the next stage starts
            entry["result"] = "completed"
            entry["ended_at"] = after["started_at"]
            start, end = gate.parse_time(entry["started_at"]), gate.parse_time(after["started_at"])
            if start and end:
                entry["duration_s"] = max(0.0, (end - start).total_seconds())
        else:
            entry["result"] = "interrupted"
    return out


def _holder(path: Path) -> dict[str, Any] | None:
    if not locks.is_locked(path):
        return None
    h = locks.read_holder(path)
    if h is None:
        return {"pid": None, "role": "?", "command": "", "since": None}
    return {"pid": h.pid, "role": h.role, "command": h.command, "since": h.since}


def next_hint(rec: dict[str, Any], driver: dict[str, Any] | None) -> str | None:
    env, stage, state = rec["env"], rec["stage"], rec["state"]
    if stage in ("done", "rolled_back"):
        return None
    if state == "waiting":
        return f"strackt-move confirm {env}   (or: strackt-move rollback {env})"
    if state == "running" and driver is not None:
        return None  # someone drives it right now
    if state == "running":
        return f"strackt-move resume {env}   (no controller is running: it died or was killed)"
    return f"strackt-move resume {env}   (retries {stage}; or: strackt-move rollback {env})"


@dataclass
class StatusView:
    store: RecordStore
    locks_dir: Path
    now: datetime
    stale_after_s: float = gate.DEFAULT_STALE_AFTER_S

    def entry(self, rec: MoveRecord, active: bool = True) -> dict[str, Any]:
        data = record_dict(rec)
        summary = gate.summarize(data, self.now, None, self.stale_after_s)
        history = data["history"]
        started = history[0]["at"] if history else None
        updated = history[-1]["at"] if history else None
        controller = _holder(self.locks_dir / f"{rec.env}.controller.lock") if active else None
        loop = _holder(self.locks_dir / f"{rec.env}.sync-loop.lock") if active else None
        return {
            "env": rec.env,
            "move_id": rec.move_id,
            "active": active,
            "source": rec.source,
            "target": rec.target,
            "commit": rec.commit,
            "source_commit": rec.source_commit,
            "stage": rec.stage,
            "state": rec.state,
            "started_at": started,
            "updated_at": updated,
            "elapsed_s": gate.age_s(started, self.now),
            "stage_timings": stage_timings(history),
            "waiting_since": rec.waiting_since,
            "waiting_s": summary.waiting_s,
            "stale": summary.stale,
            "switched_at": rec.switched_at,
            "sync": {
                "passes": len(data["sync_passes"]),
                "last_pass": summary.last_pass,
                "lag_s": summary.last_pass_age_s,
            },
            "predicted_freeze_s": summary.freeze.seconds,
            "predicted_freeze_basis": summary.freeze.basis,
            "driver": {"controller": controller, "sync_loop": loop},
            "warnings": list(rec.warnings),
            "next": next_hint(data, controller),
        }

    def collect(self, env: str | None, include_history: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        moves: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        if env is not None:
            rec = self.store.load(env)
            if rec is not None:
                moves.append(self.entry(rec))
            else:
                latest = self.store.latest_history(env)
                if latest is not None:
                    moves.append(self.entry(latest, active=False))
            return moves, errors
        for name, rec, err in self.store.iter_active():
            if rec is not None:
                moves.append(self.entry(rec))
            elif err is not None:
                errors.append({"env": name, "error": err.problem})
        if include_history:
            for move_id in self.store.history_ids():
                old = self.store.load_history(move_id)
                if old is not None:
                    moves.append(self.entry(old, active=False))
        return moves, errors

    def document(self, moves: list[dict[str, Any]], errors: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "schema": JSON_SCHEMA,
            "generated_at": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stale_after_s": self.stale_after_s,
            "moves": moves,
            "errors": errors,
        }


def stale_banner(m: dict[str, Any], stale_after_s: float) -> str:
    return (f"!!! {m['env']}: move {m['move_id']} has waited {human_duration(m['waiting_s'])} for confirmation "
            f"(more than {human_duration(stale_after_s)}); confirm it or roll it back — the target drifts "
            f"and the source keeps the lowered DNS TTL meanwhile")


def render_detail(m: dict[str, Any], stale_after_s: float) -> list[str]:
    lines = []
    if m["stale"]:
        lines.append(stale_banner(m, stale_after_s))
    tag = "" if m["active"] else "  [archived]"
    lines.append(f"{m['env']}: {m['source']} → {m['target']}  ({m['move_id']}){tag}")
    lines.append(f"  stage     : {m['stage']} ({m['state']})")
    lines.append(f"  started   : {m['started_at']} ({human_duration(m['elapsed_s'])} ago)")
    timings = ", ".join(_timing(t, m["state"]) for t in m["stage_timings"])
    if timings:
        lines.append(f"  stages    : {timings}")
    lines.append(f"  commit    : {(m['commit'] or '?')[:12]}")
    sync = m["sync"]
    if sync["last_pass"]:
        lp = sync["last_pass"]
        lines.append(
            f"  sync      : {sync['passes']} pass(es); last {human_duration(sync['lag_s'])} ago: "
            f"{lp.get('files_changed')} files / {human_bytes(lp.get('bytes_changed'))} changed "
            f"in {human_duration(lp.get('duration_s'))}"
        )
    else:
        lines.append("  sync      : no pass yet")
    if m["predicted_freeze_s"] is not None:
        lines.append(f"  freeze    : ~{human_duration(m['predicted_freeze_s'])} predicted ({m['predicted_freeze_basis']})")
    if m["waiting_s"] is not None:
        lines.append(f"  waiting   : {human_duration(m['waiting_s'])} (since {m['waiting_since']})"
                     + ("  STALE" if m["stale"] else ""))
    if m["switched_at"]:
        lines.append(f"  switched  : {m['switched_at']}")
    drivers = [d for d in (m["driver"]["controller"], m["driver"]["sync_loop"]) if d]
    for d in drivers:
        lines.append(f"  driven by : {d['role']} pid {d['pid']} (`{d['command']}` since {d['since']})")
    for w in m["warnings"]:
        lines.append(f"  warning   : {w}")
    if m["next"]:
        lines.append(f"  next      : {m['next']}")
    return lines


def _timing(t: dict[str, Any], state: str) -> str:
    if t["result"] == "running":
        return f"{t['stage']} ({state})"
    took = human_duration(t["duration_s"]) if t["duration_s"] is not None else "?"
    return f"{t['stage']} {took}" + ("" if t["result"] == "completed" else f" {t['result']}")


def render_table(moves: list[dict[str, Any]], stale_after_s: float) -> list[str]:
    if not moves:
        return ["no move in progress"]
    lines = [f"{'ENV':<12} {'MOVE':<26} {'ROUTE':<14} {'STAGE':<22} {'STATE':<11} {'SYNC LAG':<9} WARN"]
    for m in moves:
        route = f"{m['source']}→{m['target']}"
        lag = human_duration(m["sync"]["lag_s"]) if m["sync"]["lag_s"] is not None else "-"
        state = m["state"] + ("!" if m["stale"] else "")
        lines.append(
            f"{m['env']:<12} {m['move_id']:<26} {route:<14} {m['stage']:<22} {state:<11} {lag:<9} {len(m['warnings'])}"
        )
    for m in moves:
        if m["stale"]:
            lines.append(stale_banner(m, stale_after_s))
    return lines
