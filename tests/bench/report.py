"""The results: JSON keys of issue 5, the targets they are held to, and the printed table."""

from __future__ import annotations

import json
import math
from typing import Any

# key -> (label, target text, check). A check returns None when it does not apply.
TARGETS: dict[str, tuple[str, str, Any]] = {
    "freeze_s": ("freeze (median of runs)", "<= 1.0 s", lambda r: r["freeze_s"] <= 1.0),
    "naive_freeze_s": ("naive freeze (stop, rsync, start, DNS)", "", None),
    "freeze_ratio": ("freeze / naive freeze", "<= 0.1", lambda r: r["freeze_ratio"] <= 0.1),
    "failed_requests": ("failed requests (DNS-following client)", "0", lambda r: r["failed_requests"] == 0),
    "stale_client_failed_requests": ("failed requests (stale-cache client)", "0",
                                     lambda r: r["stale_client_failed_requests"] == 0),
    "stale_requests_forwarded": ("stale requests the old server forwarded (all runs)", "", None),
    "finish_after_switch_s": ("switch -> finished (stale tail + quiet window)", "", None),
    "max_request_latency_s": ("max request latency", "", None),
    "lost_writes": ("acknowledged writes lost", "0", lambda r: r["lost_writes"] == 0),
    "initial_copy_s": ("initial copy (first pass)", "<= 1.1 x bare rsync",
                       lambda r: r["initial_copy_s"] <= 1.1 * r["bare_rsync_s"]),
    "bare_rsync_s": ("bare rsync -a, same data", "", None),
    "final_sync_s": ("final sync (inside the freeze)", "", None),
}
SCALING_TARGET_S = 0.5

# Issue 17's targets (faster than a VM live migration), each printed with its measured value and
# "yes" or the honest gap. key -> (label, target text, check); a check gets the results and
# returns None when the figure was not measured.
FREEZE_P95_TARGET_S = 0.3
CLIENT_PAUSE_TARGET_S = 0.5
SYNC_LAG_TARGET_S = 1.0
START_TO_GATE_TARGET_S = 30.0
SCALING_FILES_TARGET = 1_000_000


def _largest_scaling(r: dict[str, Any]) -> dict[str, Any] | None:
    return max(r.get("scaling") or [], key=lambda s: s["files"], default=None)


def _scaling_at_1m(r: dict[str, Any]) -> bool | None:
    largest = _largest_scaling(r)
    if largest is None or largest.get("final_sync_s") is None:
        return None
    return largest["files"] >= SCALING_FILES_TARGET and largest["final_sync_s"] <= SCALING_TARGET_S


ISSUE17_TARGETS: dict[str, tuple[str, str, Any]] = {
    "freeze_p95_s": ("freeze, p95 of the runs (timed on the source)", f"<= {FREEZE_P95_TARGET_S} s",
                     lambda r: None if r.get("freeze_p95_s") is None else r["freeze_p95_s"] <= FREEZE_P95_TARGET_S),
    "client_pause_s": ("client pause: slowest request minus the client's median", f"<= {CLIENT_PAUSE_TARGET_S} s",
                       lambda r: None if r.get("client_pause_s") is None else r["client_pause_s"] <= CLIENT_PAUSE_TARGET_S),
    # the same target, for the requests the freeze held or slowed only (the line above takes the
    # whole move: on two shared cores the orchestration slows the app too; slowest_requests says when)
    "freeze_client_pause_s": ("client pause over the freeze: slowest request overlapping it minus the median",
                              f"<= {CLIENT_PAUSE_TARGET_S} s",
                              lambda r: None if r.get("freeze_client_pause_s") is None
                              else r["freeze_client_pause_s"] <= CLIENT_PAUSE_TARGET_S),
    "sync_lag_waiting_s": ("sync lag while the move waits (a write on the source -> on the target)",
                           f"<= {SYNC_LAG_TARGET_S} s",
                           # not seen within the window: the lag is longer than the window, a gap
                           lambda r: None if "sync_lag_waiting_s" not in r else
                           r["sync_lag_waiting_s"] is not None and r["sync_lag_waiting_s"] <= SYNC_LAG_TARGET_S),
    "initial_copy_vs_haxs": ("initial copy / bare rsync -aHAXS --numeric-ids", "<= 1.1",
                             lambda r: None if r.get("initial_copy_vs_haxs") is None else r["initial_copy_vs_haxs"] <= 1.1),
    "bare_rsync_haxs_s": ("bare rsync -aHAXS --numeric-ids, same data", "", None),
    "start_to_gate_s": ("start -> waiting at the gate, minus the passes' copying", f"<= {START_TO_GATE_TARGET_S:g} s",
                        lambda r: None if r.get("start_to_gate_s") is None else r["start_to_gate_s"] <= START_TO_GATE_TARGET_S),
    "scaling_1m": ("final sync at 1,000,000 files / 100 changed", f"<= {SCALING_TARGET_S} s", _scaling_at_1m),
}


# The targets whose miss fails a bench run (`make test` runs the quick one): correctness, never
# speed. Their checks and labels are TARGETS' and DATABASE_TARGETS'.
CORRECTNESS = ("failed_requests", "stale_client_failed_requests", "lost_writes")
DATABASE_CORRECTNESS = ("lost_rows", "lost_files")


def correctness_failures(results: dict[str, Any]) -> list[str]:
    """What went wrong, e.g. "2 failed requests (DNS-following client)"; empty when nothing did."""
    checks = met(results)
    db = results.get("database") or {}
    wrong = [f"{results[key]} {TARGETS[key][0]}" for key in CORRECTNESS if checks.get(key) is False]
    wrong += [f"{db[key]} {DATABASE_TARGETS[key][0]}" for key in DATABASE_CORRECTNESS
              if checks.get(f"database.{key}") is False]
    if checks.get("database.tables_equal") is False:
        wrong.append("the tables differ between the two databases")
    return wrong


def p95(values: list[float | None]) -> float | None:
    """The 95th percentile by nearest rank (of 3 runs: the slowest)."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


def met(results: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for key, (_label, _target, check) in TARGETS.items():
        needed = [key] + (["bare_rsync_s"] if key == "initial_copy_s" else [])
        if check is not None and all(results.get(k) is not None for k in needed):
            out[key] = bool(check(results))
    largest = max(results.get("scaling") or [], key=lambda s: s["files"], default=None)
    if largest and largest.get("final_sync_s") is not None:
        out["scaling"] = largest["final_sync_s"] <= SCALING_TARGET_S
    db = results.get("database") or {}
    for key, (_label, _target, check) in DATABASE_TARGETS.items():
        if check is not None and db.get(key) is not None:
            out[f"database.{key}"] = bool(check(db))
    for key, (_label, _target, check) in ISSUE17_TARGETS.items():
        verdict = check(results) if check is not None else None
        if verdict is not None:
            out[f"issue17.{key}"] = bool(verdict)
    return out


def _issue17_value(results: dict[str, Any], key: str) -> str:
    if key == "sync_lag_waiting_s" and key in results and results[key] is None:
        return f"> {results.get('sync_lag_window_s', 0):g} s (not seen)"
    if key == "scaling_1m":
        largest = _largest_scaling(results)
        if largest is None or largest.get("final_sync_s") is None:
            return "n/a"
        value = _fmt(largest["final_sync_s"], "final_sync_s")
        return value if largest["files"] >= SCALING_FILES_TARGET else f"not measured (largest: {largest['files']} files)"
    if key == "initial_copy_vs_haxs" and results.get(key) is not None:
        return f"{results[key]:.2f}"
    return _fmt(results.get(key), key)


DATABASE_TARGETS: dict[str, tuple[str, str, Any]] = {
    "freeze_database_s": ("the freeze's database part (median)", "", None),
    "lag_before_freeze_bytes": ("replication lag before the freeze, bytes (last pass, max)", "", None),
    "lag_before_freeze_s": ("replication lag before the freeze, seconds (last pass, max)", "", None),
    "lost_rows": ("acknowledged rows lost", "0", lambda d: d["lost_rows"] == 0),
    "lost_files": ("acknowledged files lost", "0", lambda d: d["lost_files"] == 0),
    "tables_equal": ("every table: row count + checksum equal on both sides", "yes", lambda d: d["tables_equal"]),
}


def database_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The database figures over the runs of --with-database (each run's are in runs[i].database)."""
    dbs = [r["database"] for r in runs]
    parts = sorted(d["freeze_database_s"] for d in dbs if d["freeze_database_s"] is not None)
    lags = [d["lag_before_freeze"] for d in dbs]
    return {
        "freeze_database_s": parts[len(parts) // 2] if parts else None,
        # per run: "last (max)", e.g. "120 (max 408)"
        "lag_before_freeze_bytes": ", ".join(f"{lag['bytes']} (max {lag['max_bytes']})" for lag in lags),
        "lag_before_freeze_s": ", ".join(f"{lag['seconds']} (max {lag['max_seconds']})" for lag in lags),
        "lost_rows": sum(d["lost_rows"] for d in dbs),
        "lost_files": sum(d["lost_files"] for d in dbs),
        "tables_equal": all(d["tables_equal"] for d in dbs),
        "tables": max((d["tables"] for d in dbs), default=0),
    }


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_s") and isinstance(value, (int, float)):
        return f"{value:.3f} s"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    checks = met(results)
    rows = [("metric", "value", "target", "met")]
    for key, (label, target, _check) in TARGETS.items():
        mark = "" if key not in checks else ("yes" if checks[key] else "NO")
        rows.append((f"{key}: {label}", _fmt(results.get(key), key), target, mark))
    for point in results.get("scaling") or []:
        target = f"<= {SCALING_TARGET_S} s" if point is max(results["scaling"], key=lambda s: s["files"]) else ""
        mark = "" if not target or "scaling" not in checks else ("yes" if checks["scaling"] else "NO")
        rows.append((f"final_sync_s, {point['files']} files / {point['changed']} changed",
                     _fmt(point.get("final_sync_s"), "final_sync_s"), target, mark))
    db = results.get("database") or {}
    for key, (label, target, _check) in DATABASE_TARGETS.items():
        if key in db:
            mark = "" if f"database.{key}" not in checks else ("yes" if checks[f"database.{key}"] else "NO")
            rows.append((f"database.{key}: {label}", _fmt(db[key], key), target, mark))
    issue17 = [key for key in ISSUE17_TARGETS if key in results or (key == "scaling_1m" and results.get("scaling"))]
    if issue17:
        rows.append(("issue 17 (faster than a VM live migration):", "", "", ""))
    for key in issue17:
        label, target, _check = ISSUE17_TARGETS[key]
        verdict = checks.get(f"issue17.{key}")
        rows.append((f"{key}: {label}", _issue17_value(results, key), target,
                     "" if verdict is None else "yes" if verdict else "NO"))
    rows += _lever_rows(results.get("levers") or {})
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if results.get("env"):
        lines.insert(0, f"env: {results['env']}")
    return "\n".join(lines)


#: levers reported as a row before and a row now: (levers key, before label, its key, now label, its key)
_BEFORE_NOW = {
    "manifest_compare": ("verify's manifest comparison, manifest as a variable (before)", "as_argument_s",
                         "verify's manifest comparison, manifest as a file (now)", "as_file_s"),
    "provision_directories": ("provision's directories, a file module run each (before)", "file_loops_s",
                              "provision's directories, one env_directories run (now)", "one_call_s"),
    "proxy_files": ("provision's Caddy files, a module run per file (before)", "per_file_s",
                    "provision's Caddy files, one server_files run (now)", "one_call_s"),
    "stage_runs": ("start's five stages' start-up, one ansible-playbook each (before)", "per_stage_s",
                   "start's five stages' start-up, one chained run (now)", "chained_s"),
    "barrier": ("the freeze's barrier, a pass of its own after the final pass (before)", "own_s",
                "the freeze's barrier, carried by the final pass's last run (now)", "carried_s"),
}


def _before_now(lever: dict[str, Any], labels: tuple[str, str, str, str]) -> list[tuple[str, str, str, str]]:
    before, before_key, now, now_key = labels
    ratio = "" if lever.get("ratio") is None else f"ratio {lever['ratio']:.2f}"
    return [(before, _fmt(lever[before_key], before_key), "", ""), (now, _fmt(lever[now_key], now_key), ratio, "")]


def _lever_rows(levers: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The levers timed both ways in the run: before, now, and their ratio."""
    rows: list[tuple[str, str, str, str]] = []
    stop, follower = levers.get("app_stop"), levers.get("follower")
    if levers.get("manifest_compare"):
        rows += _before_now(levers["manifest_compare"], _BEFORE_NOW["manifest_compare"])
    if stop:
        rows.append(("the env's stop in the freeze, graceful (before; the default)", _fmt(stop["graceful_s"], "graceful_s"), "", ""))
        if stop.get("kill_lookup_inside_s") is not None:
            rows.append(("the env's stop in the freeze, kill, its cgroups read inside the freeze (before)",
                         _fmt(stop["kill_lookup_inside_s"], "kill_lookup_inside_s"), "", ""))
        rows.append(("the env's stop in the freeze, freeze_stop: kill (now, this env)", _fmt(stop["kill_s"], "kill_s"),
                     "" if stop.get("ratio") is None else f"ratio {stop['ratio']:.2f}"
                     + ("" if stop.get("lookup_ratio") is None else f", {stop['lookup_ratio']:.2f} of the before"), ""))
    for key in ("provision_directories", "proxy_files", "stage_runs", "barrier"):
        if levers.get(key):
            rows += _before_now(levers[key], _BEFORE_NOW[key])
    if follower and "without_s" in follower:
        def lag(value: float | None) -> str:
            return f"> {follower['window_s']:g} s (not seen)" if value is None else f"{value:.3f} s"
        rows.append(("sync lag while waiting, passes only (before)", lag(follower["without_s"]), "", ""))
        rows.append(("sync lag while waiting, the follower streaming (now)", lag(follower["with_s"]), "", ""))
    return [("levers (both ways in this run):", "", "", "")] + rows if rows else []


def write(path: str, results: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
        f.write("\n")
