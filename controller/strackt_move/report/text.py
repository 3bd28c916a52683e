"""The report in the terminal: a header and one table per part, in plain text."""

from __future__ import annotations

from typing import Sequence

from strackt_move.report.evacuation import EvacuationReport, EvacuationRow
from strackt_move.report.model import MoveReport
from strackt_move.units import human_bytes, human_duration


def _clock(at: str | None) -> str:
    """``2026-11-29T22:55:24Z`` → ``22:55:24`` (the date is in the header)."""
    return at[11:19] if at and len(at) >= 19 else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line.rstrip(), indent + "  ".join("-" * w for w in widths)]
    out += [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]
    return out


def render_move(r: MoveReport) -> list[str]:
    state = f"{r.stage}" + ("" if r.state == r.stage else f" ({r.state})")
    out = [f"{r.move_id}: {r.env} {r.source} → {r.target}  {state}" + ("  [in progress]" if r.active else "")]
    commit = r.commit[:12] + ("" if not r.source_commit or r.source_commit == r.commit
                              else f" (source ran {r.source_commit[:12]})")
    out.append(f"  commit    : {commit}")
    ended = r.ended_at or "(in progress)"
    out.append(f"  started   : {r.started_at or '-'}   ended: {ended}   total: {human_duration(r.duration_s)}")
    if r.waited_s is not None:
        out.append(f"  waited    : {human_duration(r.waited_s)} for the operator's confirmation")
    if r.switched_at:
        out.append(f"  switched  : {r.switched_at}")

    out += ["", "stages"]
    out += table(["stage", "start", "end", "duration", "result"],
                 [[s.stage, _clock(s.started_at), _clock(s.ended_at), human_duration(s.duration_s), s.result]
                  for s in r.stages])

    out += ["", "sync passes"]
    if r.sync_passes:
        out += table(["#", "kind", "mode", "start", "duration", "files", "bytes", "lag"],
                     [[str(p.number), p.kind + (" (vanished)" if p.vanished else ""), p.mode or "-",
                       _clock(p.started_at), _seconds(p.duration_s),
                       "-" if p.files_changed is None else str(p.files_changed), human_bytes(p.bytes_changed),
                       "-" if p.lag_s is None else human_duration(p.lag_s)] for p in r.sync_passes])
    else:
        out.append("  none recorded")

    out += ["", "freeze"]
    f = r.freeze
    if f.recorded:
        out.append(f"  total {_seconds(f.freeze_s)}" + (f"  (held {f.held_at} → released {f.released_at})"
                                                         if f.held_at and f.released_at else ""))
        if f.parts:
            out += table(["part", "seconds"], [[p.label, _seconds(p.seconds)] for p in f.parts])
    else:
        final = f"; the final pass took {_seconds(f.final_pass_s)}" if f.final_pass_s is not None else ""
        out.append(f"  parts not recorded{final}")

    out += ["", "stale traffic after the switch"]
    if r.stale_traffic is None:
        out.append("  not recorded")
    else:
        out += [f"  {k}: {v}" for k, v in sorted(r.stale_traffic.items()) if not isinstance(v, (dict, list))]

    out += ["", "warnings"]
    out += [f"  - {w}" for w in r.warnings] or ["  none"]

    out += ["", f"checks ({'recorded checks' if r.checks_origin == 'checks' else 'from the stage events'})"]
    if r.checks:
        out += table(["at", "stage", "result", "detail"],
                     [[_clock(c.at), c.stage, c.result, c.detail] for c in r.checks])
    else:
        out.append("  none recorded")
    return out


def render_overview(reports: Sequence[MoveReport]) -> list[str]:
    """One row per move (an evacuation's envs)."""
    rows = [[r.env, r.move_id, f"{r.source} → {r.target}", r.stage, human_duration(r.duration_s),
             _seconds(r.freeze.freeze_s) if r.freeze.recorded else "-", str(len(r.sync_passes)),
             str(len(r.warnings))] for r in reports]
    return table(["env", "move", "from → to", "result", "total", "freeze", "passes", "warnings"], rows, indent="")


def render(reports: Sequence[MoveReport]) -> list[str]:
    out: list[str] = []
    if len(reports) > 1:
        out += render_overview(reports) + [""]
    for i, r in enumerate(reports):
        if i:
            out.append("")
        out += render_move(r)
    return out


def _duration(value: float | None) -> str:
    return "-" if value is None else human_duration(value)


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


def _database(r: EvacuationRow, server: str) -> str:
    return "moved with it" if r.with_database else f"stays on {server}" if r.database_stays else "-"


def render_evacuation(e: EvacuationReport) -> list[str]:
    """The evacuation's facts and one row per env (each move's own report follows)."""
    state = e.state + ("  [in progress]" if e.active else "")
    out = [f"evacuation of {e.server}: {state}",
           f"  started   : {e.started_at}   finished: {e.finished_at or '-'}",
           f"  targets   : {', '.join(e.targets)}   --parallel {e.parallel}   --confirm {e.confirm}",
           "  switch-overs: " + ("FREEZES OVERLAPPED" if e.freezes_overlap else "one at a time (no freezes overlapped)"),
           ""]
    if e.with_database:
        out.insert(-1, "  databases : each env's PostgreSQL database on the server moved with it (--with-database)")
    out += table(["env", "from → to"] + (["database"] if e.with_database else [])
                 + ["outcome", "prepare", "waited", "cutover", "finish", "total", "freeze", "failed req.", "lost writes"],
                 [[r.env, f"{r.source} → {r.target}"] + ([_database(r, e.server)] if e.with_database else [])
                  + [r.outcome, _duration(r.prepare_s),
                     _duration(r.waited_s), _duration(r.cutover_s), _duration(r.finish_s),
                     _duration(r.total_s), _seconds(r.freeze_s), _figure(r.failed_requests),
                     _figure(r.lost_writes)] for r in e.rows], indent="")
    out += [f"warning: {w}" for w in e.warnings]
    if all(r.failed_requests is None and r.lost_writes is None for r in e.rows):
        out.append("failed requests and lost writes: not measured (the moves do not measure them; "
                   "`--load FILE` adds a load check's figures)")
    return out
