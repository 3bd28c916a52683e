"""The results: JSON keys of issue 5, the targets they are held to, and the printed table."""

from __future__ import annotations

import json
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
    return out


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
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if results.get("env"):
        lines.insert(0, f"env: {results['env']}")
    return "\n".join(lines)


def write(path: str, results: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
        f.write("\n")
