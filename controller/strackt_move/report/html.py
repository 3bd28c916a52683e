"""The report as one self-contained HTML page: styles, scripts and data inline, nothing fetched.

The stage timeline and the freeze are SVG drawn in Python (:mod:`strackt_move.report.svg`); the
sync passes' convergence is drawn in the browser by uPlot (vendored in ``vendor/``, MIT, its
licence text carried into the page with the code).
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any, Sequence

import jinja2
from markupsafe import Markup

from strackt_move import __version__
from strackt_move.report import svg
from strackt_move.report.evacuation import EvacuationReport
from strackt_move.report.model import MoveReport
from strackt_move.units import human_bytes, human_duration

_PACKAGE = "strackt_move.report"
UPLOT_VERSION = "1.6.32"


def _asset(*parts: str) -> str:
    return resources.files(_PACKAGE).joinpath(*parts).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>`` or ``<!--`` can end or bend the element."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_data(r: MoveReport) -> dict[str, Any]:
    """What the convergence charts plot: source→target passes only (a reverse pass copies back)."""
    push = [p for p in r.sync_passes if p.kind != "reverse"]
    return {
        "move_id": r.move_id,
        "pass": [p.number for p in push],
        "kind": [p.kind for p in push],
        "files": [p.files_changed for p in push],
        "bytes": [p.bytes_changed for p in push],
        "duration": [p.duration_s for p in push],
        "lag": [p.lag_s for p in push],
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = human_duration
    env.filters["bytes"] = human_bytes
    env.filters["seconds"] = lambda v: "-" if v is None else f"{v:.3f} s"
    env.filters["maybe_duration"] = lambda v: "-" if v is None else human_duration(v)
    env.filters["figure"] = lambda v: "not measured" if v is None else v
    env.filters["short"] = lambda v: (v or "")[:12]
    return env


def render(reports: Sequence[MoveReport], generated_at: datetime,
           evacuation: EvacuationReport | None = None) -> str:
    """One page for one move or for several (an overview row per move first); for an evacuation,
    its facts and a row per env (envs not started too) before that."""
    if not reports and evacuation is None:
        raise ValueError("a report needs at least one move")
    template = _environment().from_string(_asset("page.html.j2"))
    if evacuation is not None:
        title = f"Evacuation report: {evacuation.server} ({len(evacuation.rows)} envs, {evacuation.state})"
    elif len(reports) == 1:
        r = reports[0]
        title = f"Move report: {r.env} {r.source} → {r.target} ({r.move_id})"
    else:
        title = f"Move report: {len(reports)} moves ({', '.join(r.env for r in reports)})"
    moves = [{
        "r": r,
        "timeline": Markup(svg.move_timeline(r)),
        "freeze_svg": Markup(svg.freeze_bar(r.freeze)),
        "stale_rows": sorted((k, v) for k, v in (r.stale_traffic or {}).items() if not isinstance(v, (dict, list))),
    } for r in reports]
    fleet = Markup(svg.fleet_timeline(reports)) if len(reports) > 1 else None
    licence = _asset("vendor", "LICENSE.uPlot").replace("*/", "* /")
    return template.render(
        title=title, moves=moves, fleet=fleet, evacuation=evacuation, generated_at=generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        version=__version__, uplot_version=UPLOT_VERSION,
        css=Markup(_asset("vendor", "uPlot.min.css") + "\n" + _asset("page.css")),
        uplot_js=Markup(f"/*! uPlot {UPLOT_VERSION}\n{licence}*/\n"
                                                + _asset("vendor", "uPlot.iife.min.js")),
        page_js=Markup(_asset("page.js")),
        data=Markup(script_json([chart_data(r) for r in reports])),
    )
