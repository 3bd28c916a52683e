"""The report page in a real headless browser (Debian's chromium): it renders, nothing goes wrong
in the console, nothing is fetched, the charts are drawn — and a screenshot is kept.

Screenshots and the pages go to ``build/report/`` (or ``$STRACKT_REPORT_SHOTS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from headless_browser import CHROMIUM, Chromium
from report_testlib import DONE, LOOPED, NOW, ROLLED_BACK, record, with_freeze_fields

from strackt_move.report import html, model

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (`make deps` installs it)")

SHOTS = Path(os.environ.get("STRACKT_REPORT_SHOTS") or Path(__file__).resolve().parents[2] / "build" / "report")

# per uPlot canvas: how many pixels are painted (axes, grid, lines); a blank canvas has none
PAINTED = """
[...document.querySelectorAll('.uplot canvas')].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
})"""
# per chart host: the series' own colours, as drawn (the lines and points, not the axes)
SERIES_PIXELS = """
[...document.querySelectorAll('.uplot canvas')].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = [[31,119,180],[255,127,14],[44,160,44],[148,103,189]];
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i+3] > 200 && colours.some(([r,g,b]) => Math.abs(d[i]-r) + Math.abs(d[i+1]-g) + Math.abs(d[i+2]-b) < 30)) n++;
  return n;
})"""
# SVG bars with a real, drawn size
SVG_BARS = """(sel) => [...document.querySelectorAll(sel + ' rect.bar')].filter(r => {
  const b = r.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length"""


@pytest.fixture(scope="module")
def browser():
    with Chromium() as b:
        yield b


def _write(name: str, reports: list[model.MoveReport]) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.html"
    path.write_text(html.render(reports, NOW))
    return path


def _assert_clean(page) -> None:
    load = page.load
    assert load.exceptions == [] and load.console_errors == [] and load.log_errors == []
    assert load.network_requests == []  # self-contained: nothing fetched


def _assert_charts_drawn(page, hosts: int) -> None:
    assert page.evaluate("document.body.dataset.chartsDrawn") == str(hosts)
    painted = page.evaluate(PAINTED)
    assert len(painted) == hosts and all(n > 2000 for n in painted), painted
    series = page.evaluate(SERIES_PIXELS)
    assert all(n > 50 for n in series), series


def test_one_move_page_renders_with_its_charts(browser):
    """A real record as the testbed wrote it: the example page for the docs."""
    r = model.build(record(LOOPED), NOW)
    page = browser.open(_write("move-report", [r]).as_uri())
    _assert_clean(page)
    assert page.evaluate("document.title") == f"Move report: shop srv1 → srv2 ({LOOPED})"
    _assert_charts_drawn(page, 2)
    assert page.evaluate(f"({SVG_BARS})('svg.gantt')") == len(r.stages) + len(r.sync_passes) == 16
    assert page.evaluate("document.querySelectorAll('svg.freeze').length") == 0  # parts not recorded
    shot = page.screenshot(SHOTS / "move-report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_several_moves_page_renders_a_row_and_charts_per_move(browser):
    with_freeze = model.build(with_freeze_fields(record(DONE)), NOW)
    reports = [with_freeze, model.build(record(ROLLED_BACK), NOW), model.build(record(LOOPED), NOW)]
    page = browser.open(_write("evacuation-report", reports).as_uri())
    _assert_clean(page)
    assert page.evaluate("document.querySelectorAll('table.overview tbody tr').length") == 3
    _assert_charts_drawn(page, 6)
    assert page.evaluate(f"({SVG_BARS})('svg.fleet')") == sum(len(r.stages) for r in reports)
    assert page.evaluate(f"({SVG_BARS})('svg.freeze')") == len(with_freeze.freeze.parts) == 5
    page.screenshot(SHOTS / "evacuation-report.png")


def test_the_checks_see_a_broken_page(browser, tmp_path):
    """The harness is not blind: an error, an exception and a fetch are all reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><title>bad</title><img src='http://report.invalid/x.png'>"
                   "<script>console.error('drawn wrong'); undefinedFunction();</script>")
    load = browser.open(bad.as_uri()).load
    assert load.console_errors == ["drawn wrong"]
    assert len(load.exceptions) == 1 and "undefinedFunction" in load.exceptions[0]
    assert load.network_requests == ["http://report.invalid/x.png"]
