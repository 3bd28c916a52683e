"""status / list: what every move is doing, for people and (``--json``) for scripts.

Each move's entry is ``move_status.summary`` (the same summary ``move_record action=get`` returns
to ``playbooks/status.yml``) plus what only the controller knows: who drives the move right now,
whether it is archived, and the command to run next. The JSON shape is versioned by
``"schema"``; fields are only ever added within a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ansible_collections.strackt.move.plugins.module_utils import clock, move_status

from strackt_move import locks
from strackt_move.errors import MoveError
from strackt_move.store import MoveRecord, RecordStore
from strackt_move.units import human_bytes, human_duration

JSON_SCHEMA = "strackt-move/status/1"


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
    if stage == "switched" and state == "running":
        return f"strackt-move finish {env} --wait   (ends the forwarding once stale traffic is gone; or: rollback)"
    if state == "running":
        return f"strackt-move resume {env}   (no controller is running: it died or was killed)"
    return f"strackt-move resume {env}   (retries {stage}; or: strackt-move rollback {env})"


@dataclass
class StatusView:
    store: RecordStore
    locks_dir: Path
    now: datetime
    stale_after_s: float = move_status.DEFAULT_WAIT_WARN_S

    def entry(self, rec: MoveRecord, active: bool = True) -> dict[str, Any]:
        entry = move_status.summary(rec, self.now, self.stale_after_s)
        controller = _holder(self.locks_dir / f"{rec.env}.controller.lock") if active else None
        loop = _holder(self.locks_dir / f"{rec.env}.sync-loop.lock") if active else None
        entry["active"] = active
        entry["driver"] = {"controller": controller, "sync_loop": loop}
        entry["next"] = next_hint(entry, controller)
        return entry

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

    def retained(self, env: str | None, errors: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
        """The copies finished moves left on old servers (of ``env``, or of every env), soonest gone first;
        a file that cannot be trusted goes to ``errors``."""
        from strackt_move.retirer import copy_entry

        out: list[dict[str, Any]] = []
        for name in [env] if env is not None else self.store.retained_envs():
            try:
                copies = self.store.retained(name).copies
            except MoveError as exc:
                if errors is not None:
                    errors.append({"env": name, "error": exc.problem})
                continue
            out.extend(copy_entry(name, c, self.now) for c in copies)
        return sorted(out, key=lambda c: (c["until"], c["env"], c["server"]))

    def document(self, moves: list[dict[str, Any]], errors: list[dict[str, str]],
                 retained: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "schema": JSON_SCHEMA,
            "generated_at": clock.format_ts(self.now),
            "stale_after_s": self.stale_after_s,
            "moves": moves,
            "errors": errors,
            "retained": retained or [],
        }


def stale_banner(m: dict[str, Any]) -> str:
    return f"!!! {m['stale_message']}"


def render_detail(m: dict[str, Any]) -> list[str]:
    lines = []
    if m["stale"]:
        lines.append(stale_banner(m))
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
    database = sync.get("database")
    if database:
        lines.append(f"  database  : moves to {database['server']}; {describe_database_lag(database)}")
    if m["freeze"] and m["freeze"].get("freeze_s") is not None:
        database_s = m["freeze"].get("database_s")
        lines.append(f"  freeze    : {m['freeze']['freeze_s']:.3f} s (measured on {m['source']})"
                     + (f", database part {database_s:.3f} s" if database_s is not None else ""))
    elif m["predicted_freeze_s"] is not None:
        lines.append(f"  freeze    : ~{human_duration(m['predicted_freeze_s'])} predicted ({m['predicted_freeze_basis']})")
    if m["waiting_s"] is not None:
        lines.append(f"  waiting   : {human_duration(m['waiting_s'])} (since {m['waiting_since']})"
                     + ("  STALE" if m["stale"] else ""))
    if m["switched_at"]:
        lines.append(f"  switched  : {m['switched_at']}")
    stale = m.get("stale_traffic")
    if stale:
        per_minute = stale["per_minute"]
        lines.append(f"  stale     : {stale['total']} request(s) to {m['source']} since the release, "
                     f"{per_minute[-1] if per_minute else 0}/min now (last {len(per_minute)} min: "
                     f"{' '.join(str(n) for n in per_minute)}), last seen {stale['last_seen'] or 'never'} "
                     f"(measured {stale['measured_at']})")
    elif m["stage"] == "switched":
        lines.append("  stale     : not measured yet (the first `strackt-move finish` measures it)")
    if m.get("finish") and m["active"]:
        verdict = "due" if m["finish"]["due"] else "not yet"
        lines.append(f"  finish    : {verdict}: {m['finish']['why']}")
    drivers = [d for d in (m["driver"]["controller"], m["driver"]["sync_loop"]) if d]
    for d in drivers:
        lines.append(f"  driven by : {d['role']} pid {d['pid']} (`{d['command']}` since {d['since']})")
    for w in m["warnings"]:
        lines.append(f"  warning   : {w}")
    for b in m.get("backups") or []:
        lines.append(f"  kept      : {b['server']}:{b['path']} (what the move's passes replaced or deleted there)")
    if m["next"]:
        lines.append(f"  next      : {m['next']}")
    return lines


def _timing(t: dict[str, Any], state: str) -> str:
    if t["result"] == "running":
        return f"{t['stage']} ({state})"
    took = human_duration(t["duration_s"]) if t["duration_s"] is not None else "?"
    return f"{t['stage']} {took}" + ("" if t["result"] == "completed" else f" {t['result']}")


def render_retained(retained: list[dict[str, Any]]) -> list[str]:
    """The retained copies, after the moves (nothing when there are none)."""
    if not retained:
        return []
    lines = ["", "retained copies (stopped, kept after a move; removed when due by `strackt-move retire --due`):"]
    for c in retained:
        when = f"due since {c['until']}" if c["due"] else f"until {c['until']} ({human_duration(c['remaining_s'])} left)"
        if c["retiring"]:
            when = (f"retiring since {c['retiring']} (a retire began removing it; no move onto {c['server']} "
                    "until it is done)")
        lines.append(f"  {c['env']} on {c['server']}: {c['root']} ({', '.join(c['paths'])}), from {c['move_id']}, "
                     f"{when}; now: `{c['next']}`")
    return lines


def render_table(moves: list[dict[str, Any]]) -> list[str]:
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
            lines.append(stale_banner(m))
    return lines


def describe_database_lag(database: dict[str, Any]) -> str:
    """A database move's replication lag as the last sync pass saw it."""
    if database.get("lag_bytes") is None:
        return "replication lag not seen yet"
    seconds = database.get("lag_s")
    return (f"replication lag {human_bytes(database['lag_bytes'])}"
            + (f" / {seconds:.2f} s" if seconds is not None else "") + f" (at {database['seen_at']})")
