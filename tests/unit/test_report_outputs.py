"""The report's three outputs (terminal, JSON, HTML page) and its hand-drawn SVG, without a browser."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from report_testlib import DONE, NOW, ROLLED_BACK, record, with_freeze_fields

from strackt_move.report import JSON_SCHEMA, document, html, model, svg, text


def _report(move_id=DONE, freeze=False, **extra):
    data = record(move_id)
    if freeze:
        data = with_freeze_fields(data)
    return model.build(data | extra, NOW)


# ---- terminal


def test_text_names_every_part():
    out = "\n".join(text.render([_report()]))
    assert out.startswith("shop-20261129T225524Z: shop srv1 → srv2  done")
    assert "total: 1m44s" in out
    assert re.search(r"^  provision\s+22:55:29\s+22:56:02\s+33s\s+completed$", out, re.M)
    assert re.search(r"^  3\s+final\s+incremental\s+22:56:48\s+0\.100 s\s+1\s+35 B\s+20s$", out, re.M)
    assert "  parts not recorded; the final pass took 0.100 s" in out
    assert "stale traffic after the switch\n  not recorded" in out
    assert "warnings\n  none" in out
    assert "checks (from the stage events)" in out


def test_text_freeze_parts_and_stale_traffic_when_recorded():
    out = "\n".join(text.render([_report(freeze=True, stale_traffic={"requests": 12})]))
    assert "  total 0.780 s  (held 2026-11-29T22:56:47.800Z → released 2026-11-29T22:56:48.580Z)" in out
    assert re.search(r"^  hold and drain\s+0\.281 s$", out, re.M)
    assert re.search(r"^  other\s+0\.197 s$", out, re.M)
    assert "stale traffic after the switch\n  requests: 12" in out


def test_text_several_moves_start_with_a_row_per_move():
    lines = text.render([_report(DONE), _report(ROLLED_BACK)])
    assert lines[0].split() == ["env", "move", "from", "→", "to", "result", "total", "freeze", "passes", "warnings"]
    assert lines[2].split()[:6] == ["shop", DONE, "srv1", "→", "srv2", "done"]
    assert lines[3].split()[:6] == ["shop", ROLLED_BACK, "srv1", "→", "srv2", "rolled_back"]


# ---- JSON


def test_json_document_is_versioned_and_complete():
    doc = json.loads(json.dumps(document([_report(freeze=True)], NOW)))
    assert doc["schema"] == JSON_SCHEMA == "strackt-move/report/1"
    assert doc["generated_at"] == "2026-11-30T09:00:00Z"
    (move,) = doc["moves"]
    # the fields scripts may rely on (only ever added to within the schema version)
    assert set(move) >= {
        "move_id", "env", "source", "target", "stage", "state", "active", "started_at", "ended_at", "duration_s",
        "switched_at", "waited_s", "stages", "sync_passes", "freeze", "stale_traffic", "warnings", "checks",
        "checks_origin"}
    assert set(move["stages"][0]) == {"stage", "result", "started_at", "ended_at", "duration_s", "start_offset_s",
                                      "end_offset_s"}
    assert set(move["sync_passes"][0]) == {
        "number", "kind", "mode", "started_at", "start_offset_s", "duration_s", "files_changed", "bytes_changed",
        "files_total", "bytes_total", "vanished", "lag_s"}
    assert move["freeze"]["recorded"] is True and move["freeze"]["freeze_s"] == 0.78
    assert move["stale_traffic"] is None


# ---- SVG


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def _bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if "bar" in e.get("class", "").split()]


def test_gantt_has_a_bar_per_stage_run_and_per_pass_on_one_axis():
    r = _report(ROLLED_BACK)
    root = _svg(svg.move_timeline(r))
    bars = _bars(root)
    assert len(bars) == len(r.stages) + len(r.sync_passes)
    by_stage = {b.get("class").split()[1]: b for b in bars}
    assert by_stage["stage-provision"].find("{http://www.w3.org/2000/svg}title").text.startswith(
        "provision: completed, 13s")
    # widths scale with the durations: provision (13 s) is longer than preflight (1 s)
    assert float(by_stage["stage-provision"].get("width")) > 5 * float(by_stage["stage-preflight"].get("width"))
    # a bar never leaves the plot
    for b in bars:
        assert svg.LABEL_W <= float(b.get("x")) and float(b.get("x")) + float(b.get("width")) <= svg.WIDTH


def test_gantt_marks_the_switch():
    root = _svg(svg.move_timeline(_report(DONE)))
    (marker,) = [e for e in root.iter("{http://www.w3.org/2000/svg}line") if e.get("class") == "marker"]
    assert "switched at 2026-11-29T22:56:56Z" in marker.find("{http://www.w3.org/2000/svg}title").text


@pytest.mark.parametrize("span, step", [(4, 0.5), (100, 10), (104, 15), (3600, 600), (86400 * 3, 43200)])
def test_tick_steps_stay_few(span, step):
    assert svg.tick_step(span) == step


def test_freeze_bar_has_the_parts_in_proportion():
    r = _report(freeze=True)
    bars = _bars(_svg(svg.freeze_bar(r.freeze)))
    assert [b.get("class").split()[-1] for b in bars] == ["drain_s", "stop_s", "final_sync_s", "forwarder_s", "other_s"]
    widths = [float(b.get("width")) for b in bars]
    assert widths[0] / widths[1] == pytest.approx(0.281 / 0.188, rel=0.01)
    assert svg.freeze_bar(_report().freeze) == ""  # nothing to draw when the parts were not recorded


def test_fleet_timeline_has_a_row_per_move_on_one_clock():
    a, b = _report(DONE), _report(ROLLED_BACK)
    root = _svg(svg.fleet_timeline([a, b]))
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "row-label"]
    assert labels == ["shop → srv2", "shop → srv2"]
    bars = _bars(root)
    assert len(bars) == len(a.stages) + len(b.stages)
    keys = [k.get("class") for k in root.iter("{http://www.w3.org/2000/svg}rect") if "key" in k.get("class", "")]
    assert keys == [f"key stage-{s}" for s in ("preflight", "provision", "deploy", "sync", "verify",
                                               "awaiting_confirmation", "cutover", "switched", "done",
                                               "rollback", "rolled_back")]
    # the second move started 338 s after the first: its first bar starts further right
    first_b = bars[len(a.stages)]
    assert float(first_b.get("x")) > float(bars[0].get("x")) + 100


# ---- HTML


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_page_is_self_contained():
    page = html.render([_report(freeze=True)], NOW)
    parsed = _parse(page)
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "img", "iframe", "object"), tag
        assert "src" not in attrs, (tag, attrs)
        href = attrs.get("href") or ""
        assert href == "" or href.startswith("#"), href
    assert not re.search(r"https?://(?!github\.com/leeoniya|www\.w3\.org/2000/svg)", page)
    assert "Permission is hereby granted" in page  # uPlot's MIT licence travels with its code
    assert "var uPlot=" in page


def test_page_carries_the_chart_data_and_every_part():
    r = _report(ROLLED_BACK)
    page = html.render([r], NOW)
    data_script = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    (data,) = json.loads(data_script)
    assert data["pass"] == [1, 2, 3, 4, 5] and data["files"] == [377, 6, 65, 46, 47]
    assert data["lag"][0] is None and data["lag"][1] == pytest.approx(1.328)
    assert page.count('class="chart uplot-host"') == 2
    assert "<h3>The freeze</h3>\n<p class=\"none\">parts not recorded</p>" in page
    assert "<h3>Stale traffic after the switch</h3>\n<p class=\"none\">not recorded</p>" in page
    assert page.count("<tr class=\"check-") == len(r.checks)


def test_page_escapes_what_the_record_says():
    hostile = "</script><script>alert(1)</script><b>x</b>"
    page = html.render([_report(warnings=[hostile], stale_traffic={"note": hostile})], NOW)
    assert hostile not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page
    assert html.script_json([{"a": hostile}]).count("<") == 0


def test_page_for_several_moves_has_an_overview_row_each_and_one_timeline():
    page = html.render([_report(DONE, freeze=True), _report(ROLLED_BACK)], NOW)
    overview = re.search(r'<table class="overview">(.*?)</table>', page, re.S).group(1)
    assert overview.count("<tr>") == 3  # header + one per move
    assert 'class="gantt fleet"' in page
    assert page.count('<section class="move"') == 2
    assert "0.780 s" in overview and "not recorded" in overview


def test_page_needs_a_move():
    with pytest.raises(ValueError):
        html.render([], NOW)
