"""Hand-drawn SVG for the two charts no small plotting library draws: the stage timeline (a Gantt
chart: horizontal bars on a time axis) and the freeze broken into its parts (one stacked bar).

Drawn here rather than in the browser, so the page shows them without JavaScript and the unit
tests can read them. Every bar carries a ``<title>`` (the browser shows it on hover).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Sequence

from strackt_move.report.model import FreezeBreakdown, MoveReport
from strackt_move.store import STAGES
from strackt_move.units import human_duration

WIDTH = 960
LABEL_W = 170
RIGHT_PAD = 20
ROW_H = 22
BAR_H = 14
AXIS_H = 26
MIN_BAR_W = 2.0  # a stage of 0 s (same second) still shows

#: nice tick steps in seconds
_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


@dataclass(frozen=True)
class Bar:
    start_s: float
    end_s: float
    css: str  # class names: the stage and the result, for the colours
    title: str


@dataclass(frozen=True)
class Row:
    label: str
    bars: tuple[Bar, ...]


def tick_step(span_s: float, max_ticks: int = 10) -> float:
    for step in _STEPS:
        if span_s / step <= max_ticks:
            return step
    return _STEPS[-1] * max(1, int(span_s / (_STEPS[-1] * max_ticks)) + 1)


def _tick_label(t: float, step: float) -> str:
    if t == 0:
        return "0"
    if step < 1:
        return f"{t:.1f}s"
    return human_duration(t) if t < 60 else _minutes(t)


def _minutes(t: float) -> str:
    minutes, sec = divmod(int(round(t)), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m") + (f"{sec:02d}s" if sec else "")


def gantt(rows: Sequence[Row], span_s: float, markers: Sequence[tuple[float, str]] = (),
          label: str = "timeline", css: str = "gantt", legend: Sequence[str] = ()) -> str:
    """Rows of bars on a shared axis from 0 to ``span_s`` seconds; ``markers`` = vertical lines;
    ``legend``: stage names to show with their colour under the chart."""
    span = max(span_s, 1.0)
    plot_w = WIDTH - LABEL_W - RIGHT_PAD
    rows_h = AXIS_H + ROW_H * max(1, len(rows)) + 6
    height = rows_h + (ROW_H if legend else 0)

    def x(t: float) -> float:
        return LABEL_W + max(0.0, min(t, span)) / span * plot_w

    out = [f'<svg class="{escape(css)}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    step = tick_step(span)
    n = int(span / step) + 1
    for i in range(n):
        t = i * step
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{AXIS_H - 6}" y2="{rows_h - 4}"/>')
        out.append(f'<text class="tick" x="{x(t):.1f}" y="{AXIS_H - 10}">{escape(_tick_label(t, step))}</text>')
    for i, row in enumerate(rows):
        y = AXIS_H + i * ROW_H
        out.append(f'<text class="row-label" x="{LABEL_W - 8}" y="{y + ROW_H / 2 + 4:.1f}">{escape(row.label)}</text>')
        for bar in row.bars:
            x0 = x(bar.start_s)
            w = max(MIN_BAR_W, x(bar.end_s) - x0)
            out.append(f'<rect class="bar {escape(bar.css)}" x="{x0:.1f}" y="{y + (ROW_H - BAR_H) / 2:.1f}" '
                       f'width="{w:.1f}" height="{BAR_H}"><title>{escape(bar.title)}</title></rect>')
    for t, text in markers:
        out.append(f'<line class="marker" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{AXIS_H - 6}" y2="{rows_h - 4}">'
                   f'<title>{escape(text)}</title></line>')
    lx = 8.0
    for stage in legend:
        out.append(f'<rect class="key stage-{escape(stage)}" x="{lx:.1f}" y="{rows_h + 4}" width="10" height="10"/>')
        out.append(f'<text class="key-label" x="{lx + 14:.1f}" y="{rows_h + 13}">{escape(stage)}</text>')
        lx += 20 + 6.2 * len(stage)
    out.append("</svg>")
    return "\n".join(out)


def _span_title(stage: str, result: str, start: float, end: float | None, duration: float | None) -> str:
    took = human_duration(duration) if duration is not None else (
        human_duration(end - start) if end is not None else "?")
    return f"{stage}: {result}, {took} (from +{human_duration(start)})"


def move_rows(r: MoveReport) -> list[Row]:
    """One row per stage (a stage run again gets a second bar in its row), then the sync passes."""
    by_stage: dict[str, list[Bar]] = {}
    for s in r.stages:
        if s.start_offset_s is None:
            continue
        end = s.end_offset_s if s.end_offset_s is not None else s.start_offset_s
        by_stage.setdefault(s.stage, []).append(Bar(
            s.start_offset_s, end, f"stage-{s.stage} result-{s.result}",
            _span_title(s.stage, s.result, s.start_offset_s, s.end_offset_s, s.duration_s)))
    rows = [Row(stage, tuple(bars)) for stage, bars in by_stage.items()]
    passes = tuple(Bar(p.start_offset_s, p.start_offset_s + (p.duration_s or 0.0), f"pass pass-{p.kind}",
                       f"sync pass {p.number} ({p.kind}): {p.files_changed} files changed in "
                       f"{human_duration(p.duration_s)}")
                   for p in r.sync_passes if p.start_offset_s is not None)
    if passes:
        rows.append(Row("sync passes", passes))
    return rows


def move_timeline(r: MoveReport) -> str:
    markers = [(r.switched_offset_s, f"switched at {r.switched_at}")] if r.switched_offset_s is not None else []
    ends = [s.end_offset_s for s in r.stages if s.end_offset_s is not None]
    span = max([r.duration_s or 0.0, *ends])
    return gantt(move_rows(r), span, markers, label=f"stage timeline of {r.move_id}")


def fleet_timeline(reports: Sequence[MoveReport]) -> str:
    """An evacuation: one row per env on one clock (preparations side by side, switches in turn)."""
    from strackt_move.report.model import parse_time

    starts = {r.move_id: parse_time(r.started_at) for r in reports}
    known = [t.timestamp() for t in starts.values() if t is not None]
    origin = min(known) if known else 0.0
    rows, span = [], 1.0
    for r in reports:
        start = starts[r.move_id]
        shift = (start.timestamp() - origin) if start is not None else 0.0
        bars = []
        for s in r.stages:
            if s.start_offset_s is None:
                continue
            end = s.end_offset_s if s.end_offset_s is not None else s.start_offset_s
            bars.append(Bar(shift + s.start_offset_s, shift + end, f"stage-{s.stage} result-{s.result}",
                            f"{r.env} " + _span_title(s.stage, s.result, s.start_offset_s, s.end_offset_s,
                                                      s.duration_s)))
            span = max(span, shift + end)
        rows.append(Row(f"{r.env} → {r.target}", tuple(bars)))
    seen = {s.stage for r in reports for s in r.stages}
    return gantt(rows, span, label="timeline of every move", css="gantt fleet",
                 legend=[stage for stage in STAGES if stage in seen])


def freeze_bar(f: FreezeBreakdown) -> str:
    """The freeze as one stacked bar of its parts, scaled to the freeze's total."""
    total = f.freeze_s if f.freeze_s else sum(p.seconds for p in f.parts)
    if not f.parts or total <= 0:
        return ""
    plot_w = WIDTH - 2 * RIGHT_PAD
    height = 64
    out = [f'<svg class="freeze" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="the freeze by part" '
           'xmlns="http://www.w3.org/2000/svg">']
    x = float(RIGHT_PAD)
    for i, p in enumerate(f.parts):
        w = max(MIN_BAR_W, p.seconds / total * plot_w)
        title = f"{p.label}: {p.seconds:.3f} s ({p.seconds / total:.0%} of the freeze)"
        out.append(f'<rect class="bar part part-{i} {escape(p.name)}" x="{x:.1f}" y="6" width="{w:.1f}" '
                   f'height="24"><title>{escape(title)}</title></rect>')
        if w > 60:
            out.append(f'<text class="part-label" x="{x + w / 2:.1f}" y="48">{escape(p.label)}</text>')
            out.append(f'<text class="part-value" x="{x + w / 2:.1f}" y="61">{p.seconds:.3f} s</text>')
        x += w
    out.append("</svg>")
    return "\n".join(out)
