"""`strackt-move report --evacuation SERVER`: one report of an evacuation, a row per env, in text,
JSON and the HTML page; which evacuation a name means; bad input (changes nothing).

The state dir holds an evacuation of srv1 whose moves are real records of the testbed (shop done;
the same move as notes, its freeze recorded, done), one move still preparing (drop) and one env
not started (blog)."""

from __future__ import annotations

import copy
import json
import os
from datetime import timedelta

import pytest
from controller_testlib import new_record, walk_to
from report_testlib import DONE, LOOPED, NOW, record, with_freeze_fields

from ansible_collections.strackt.move.plugins.module_utils import move_store as mr
from ansible_collections.strackt.move.plugins.module_utils.move_record import MoveRecord
from strackt_move import cli
from strackt_move.evacuation import Evacuation, EvacuationStore, PlannedMove
from strackt_move.exit_codes import ExitCode
from strackt_move.report import html

NOTES = LOOPED.replace("shop-", "notes-")
DROP_AT = NOW - timedelta(minutes=10)  # preparing when the report is made


def _move(data: dict) -> MoveRecord:
    return MoveRecord.from_dict(data | {"checksum": ""}, verify_checksum=False)


def _as_env(data: dict, env: str, freeze_shift_s: float = 0.0) -> MoveRecord:
    """A real record of shop as the move of ``env`` (same stages and figures)."""
    out = copy.deepcopy(data)
    out["env"], out["move_id"] = env, out["move_id"].replace("shop-", f"{env}-")
    if "freeze" in out:
        for key in ("held_at_ns", "released_at_ns"):
            out["freeze"][key] += int(freeze_shift_s * 1e9)
    return _move(out)


def _evacuation(state) -> Evacuation:
    return Evacuation(server="srv1", started_at="2026-11-29T22:55:00Z", targets=["srv2", "srv3"], parallel=2,
                      confirm="plan", moves=[PlannedMove("shop", "srv2", move_id=DONE),
                                             PlannedMove("notes", "srv2", move_id=NOTES),
                                             PlannedMove("drop", "srv3"), PlannedMove("blog", "srv3")])


@pytest.fixture
def state(tmp_path):
    state = tmp_path / "state"
    mr.ensure_dirs(str(state))
    # shop's freeze at the same instants as notes': an overlap (unless a test moves one)
    mr.archive(str(state), _move(record(DONE) | {"freeze": with_freeze_fields(record(LOOPED))["freeze"]}))
    mr.archive(str(state), _as_env(with_freeze_fields(record(LOOPED)), "notes"))
    drop = walk_to(new_record("drop", now=DROP_AT), "sync", now=DROP_AT)
    drop.target = "srv3"
    mr.save(str(state), drop)
    evac = _evacuation(state)
    evac.move_of("drop").move_id = drop.move_id
    EvacuationStore(state).save(evac)
    return state


def report(state, *argv):
    return cli.run(["--state-dir", str(state), "report", *argv], now=lambda: NOW)


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_a_row_per_env_in_the_plans_order_with_its_outcome_and_figures(state, capsys):
    assert report(state, "--evacuation", "srv1", "--json") == ExitCode.OK
    doc = _json(capsys)
    evac = doc["evacuation"]
    assert (evac["server"], evac["state"], evac["active"], evac["parallel"]) == ("srv1", "running", True, 2)
    rows = {r["env"]: r for r in evac["rows"]}
    assert list(rows) == ["shop", "notes", "drop", "blog"]
    assert [(r["source"], r["target"], r["outcome"]) for r in rows.values()] == [
        ("srv1", "srv2", "done"), ("srv1", "srv2", "done"), ("srv1", "srv3", "preparing"), ("srv1", "srv3", "not started")]
    # the figures are each move's own report's: one writer
    moves = {m["env"]: m for m in doc["moves"]}
    assert list(moves) == ["shop", "notes", "drop"]  # blog has no move
    notes = moves["notes"]
    assert rows["notes"]["total_s"] == notes["duration_s"]
    assert rows["notes"]["freeze_s"] == notes["freeze"]["freeze_s"] == 0.78
    assert rows["notes"]["waited_s"] == notes["waited_s"] > 0
    prepare = sum(s["duration_s"] for s in notes["stages"]
                  if s["stage"] in ("preflight", "provision", "deploy", "sync", "verify"))
    assert rows["notes"]["prepare_s"] == pytest.approx(prepare) and prepare > 0
    assert rows["notes"]["cutover_s"] == sum(s["duration_s"] for s in notes["stages"] if s["stage"] == "cutover")
    assert rows["notes"]["finish_s"] is not None
    assert rows["blog"]["move_id"] is None and rows["blog"]["total_s"] is None
    assert all(r["failed_requests"] is None and r["lost_writes"] is None for r in rows.values())  # not measured


def test_overlapping_freezes_are_said(state, capsys, tmp_path):
    """shop and notes carry the same freeze instants: they overlapped (one at a time was broken)."""
    assert report(state, "--evacuation", "srv1", "--json") == ExitCode.OK
    assert _json(capsys)["evacuation"]["freezes_overlap"] is True
    path = mr.history_path(str(state), NOTES)
    shifted = _as_env(with_freeze_fields(record(LOOPED)), "notes", freeze_shift_s=30)
    os.unlink(path)
    mr.archive(str(state), shifted)
    assert report(state, "--evacuation", "srv1", "--json") == ExitCode.OK
    assert _json(capsys)["evacuation"]["freezes_overlap"] is False


def test_load_figures_from_a_load_checks_file(state, tmp_path, capsys):
    load = tmp_path / "load.json"
    load.write_text(json.dumps({"notes": {"requests": 900, "failed_requests": 0, "lost_writes": 2},
                                "blog": {"failed_requests": 1}}))
    assert report(state, "--evacuation", "srv1", "--load", str(load), "--json") == ExitCode.OK
    rows = {r["env"]: r for r in _json(capsys)["evacuation"]["rows"]}
    assert (rows["notes"]["failed_requests"], rows["notes"]["lost_writes"]) == (0, 2)
    assert (rows["blog"]["failed_requests"], rows["blog"]["lost_writes"]) == (1, None)
    assert rows["shop"]["failed_requests"] is None
    assert report(state, "--evacuation", "srv1", "--load", str(load)) == ExitCode.OK
    assert "not measured" not in capsys.readouterr().out


def test_text_has_the_evacuation_table_then_each_move(state, capsys):
    assert report(state, "--evacuation", "srv1") == ExitCode.OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "evacuation of srv1: running  [in progress]"
    header = next(line for line in lines if line.startswith("env ") and "outcome" in line)
    for column in ("from → to", "prepare", "waited", "cutover", "finish", "total", "freeze", "failed req.", "lost writes"):
        assert column in header
    blog = next(line for line in lines if line.startswith("blog "))
    assert "srv1 → srv3" in blog and "not started" in blog
    assert "FREEZES OVERLAPPED" in out
    assert "failed requests and lost writes: not measured" in out
    assert out.index("evacuation of srv1") < out.index(f"{DONE}: shop srv1 → srv2")  # each move's report follows


def test_page_has_the_evacuation_section_with_a_row_per_env(state, tmp_path, capsys):
    page = tmp_path / "evac.html"
    assert report(state, "--evacuation", "srv1", "--html", str(page)) == ExitCode.OK
    text = page.read_text()
    assert "<title>Evacuation report: srv1 (4 envs, running)</title>" in text
    section = text[text.index('<section id="evacuation">'):text.index("</section>")]
    assert section.count("<tr class=\"outcome-") == 4
    assert f'<a href="#{NOTES}">notes</a>' in section and "<td>blog</td>" in section
    assert "not started" in section and "freezes overlapped" in section
    assert f'id="{NOTES}"' in text  # the move's own section the row links to
    assert os.stat(page).st_mode & 0o777 == 0o600


def test_page_of_an_evacuation_that_started_no_move(tmp_path):
    from strackt_move.report.evacuation import build_evacuation
    from strackt_move.store import RecordStore

    state = tmp_path / "state"
    mr.ensure_dirs(str(state))
    evac = Evacuation(server="srv1", started_at="2026-11-29T22:55:00Z", targets=["srv2"], parallel=1,
                      confirm="plan", moves=[PlannedMove("blog", "srv2")])
    e, moves = build_evacuation(evac, True, RecordStore(state), NOW)
    assert moves == [] and [r.outcome for r in e.rows] == ["not started"]
    page = html.render(moves, NOW, evacuation=e)
    assert "<td>blog</td>" in page and "not started" in page


def test_the_latest_archived_evacuation_or_one_by_its_name(state, capsys):
    evacs = EvacuationStore(state)
    running = evacs.load("srv1")
    running.state, running.finished_at = "done", "2026-11-30T00:00:00Z"
    evacs.archive(running)
    older = _evacuation(state)
    older.started_at, older.state = "2026-11-20T10:00:00Z", "aborted"
    evacs.save(older)
    evacs.archive(older)
    assert evacs.history_ids("srv1") == ["srv1-20261120T100000Z", "srv1-20261129T225500Z"]

    assert report(state, "--evacuation", "srv1", "--json") == ExitCode.OK
    evac = _json(capsys)["evacuation"]
    assert (evac["started_at"], evac["state"], evac["active"]) == ("2026-11-29T22:55:00Z", "done", False)
    assert report(state, "--evacuation", "srv1-20261120T100000Z", "--json") == ExitCode.OK
    assert _json(capsys)["evacuation"]["state"] == "aborted"


@pytest.mark.parametrize("argv, code, words", [
    (["--evacuation", "srv1", "--load", "/nonexistent/load.json"], ExitCode.USAGE, "--load /nonexistent/load.json cannot be read"),
    (["--evacuation", "srv1", "--load", "BAD"], ExitCode.USAGE, "shop.lost_writes is -1, not a count"),
    (["shop", "--load", "BAD"], ExitCode.USAGE, "--load goes with --evacuation"),
    (["--evacuation", "srv2"], ExitCode.NO_MOVE, "no evacuation 'srv2' is in progress or archived"),
    (["--evacuation", "srv1-20200101T000000Z"], ExitCode.NO_MOVE, "no evacuation 'srv1-20200101T000000Z'"),
    (["shop", "--evacuation", "srv1"], ExitCode.USAGE, "name moves or --evacuation, not both"),
    ([], ExitCode.USAGE, "report needs an env, a move id or --evacuation SERVER"),
])
def test_bad_input_is_refused_and_writes_nothing(state, tmp_path, capsys, argv, code, words):
    before = sorted(p.relative_to(state) for p in state.rglob("*"))
    page, bad = tmp_path / "page.html", tmp_path / "bad.json"
    bad.write_text(json.dumps({"shop": {"lost_writes": -1}}))
    argv = [str(bad) if a == "BAD" else a for a in argv]
    assert report(state, *argv, "--html", str(page)) == code
    assert words in capsys.readouterr().err
    assert not page.exists()
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before


def test_a_bad_server_name_is_usage(state, capsys):
    with pytest.raises(SystemExit) as exc:
        report(state, "--evacuation", "../srv1")
    assert exc.value.code == 2
