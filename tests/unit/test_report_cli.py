"""`strackt-move report`: which move a name means, the outputs, and bad input (changes nothing)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta

import pytest
from controller_testlib import T0, new_record, walk_to
from report_testlib import DATA, DONE, NOW, ROLLED_BACK

from ansible_collections.strackt.move.plugins.module_utils import move_store as mr
from strackt_move import cli
from strackt_move.exit_codes import ExitCode


@pytest.fixture
def state(tmp_path):
    """A state dir with the two real archived moves of shop."""
    state = tmp_path / "state"
    mr.ensure_dirs(str(state))
    for move_id in (DONE, ROLLED_BACK):
        shutil.copy(DATA / f"{move_id}.json", mr.history_path(str(state), move_id))
    return state


def report(state, *argv):
    return cli.run(["--state-dir", str(state), "report", *argv], now=lambda: NOW)


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_env_means_its_latest_archived_move(state, capsys):
    assert report(state, "shop", "--json") == ExitCode.OK
    doc = _json(capsys)
    assert doc["schema"] == "strackt-move/report/1"
    assert [m["move_id"] for m in doc["moves"]] == [ROLLED_BACK]
    assert doc["moves"][0]["active"] is False


def test_env_means_its_move_in_progress_first(state, capsys):
    rec = walk_to(new_record("shop", now=T0 + timedelta(days=5)), "verify")
    mr.save(str(state), rec)
    assert report(state, "shop", "--json") == ExitCode.OK
    (move,) = _json(capsys)["moves"]
    assert (move["move_id"], move["active"], move["stage"]) == (rec.move_id, True, "verify")


def test_move_id_means_that_move_active_or_archived(state, capsys):
    assert report(state, DONE, "--json") == ExitCode.OK
    assert [m["move_id"] for m in _json(capsys)["moves"]] == [DONE]
    rec = walk_to(new_record("shop", now=T0 + timedelta(days=5)), "sync")
    mr.save(str(state), rec)
    assert report(state, rec.move_id, "--json") == ExitCode.OK
    assert [m["move_id"] for m in _json(capsys)["moves"]] == [rec.move_id]


def test_an_env_whose_name_starts_like_another_is_not_mixed_up(state, capsys):
    # "shop" must not pick up the moves of an env "shop-eu" (their ids also start with "shop-")
    other = walk_to(new_record("shop-eu", now=T0 + timedelta(days=9)), "sync")
    other.transition("rollback")
    other.complete("rollback")
    other.transition("rolled_back")
    other.complete("rolled_back")
    mr.archive(str(state), other)
    assert report(state, "shop", "--json") == ExitCode.OK
    assert [m["move_id"] for m in _json(capsys)["moves"]] == [ROLLED_BACK]


def test_several_names_make_one_report(state, capsys):
    assert report(state, DONE, ROLLED_BACK) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["env", "move"]
    assert f"{DONE}: shop srv1 → srv2  done" in out and f"{ROLLED_BACK}: shop srv1 → srv2  rolled_back" in out


def test_text_and_html_page(state, tmp_path, capsys):
    page = tmp_path / "out" / "shop.html"
    page.parent.mkdir()
    assert report(state, DONE, "--html", str(page)) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith(f"{DONE}: shop srv1 → srv2  done\n")
    assert out.rstrip().endswith(f"report page written to {page}")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and DONE in text
    assert os.stat(page).st_mode & 0o777 == 0o600


def test_json_and_html_together(state, tmp_path, capsys):
    page = tmp_path / "r.html"
    assert report(state, "shop", "--json", "--html", str(page)) == ExitCode.OK
    assert _json(capsys)["moves"][0]["move_id"] == ROLLED_BACK
    assert ROLLED_BACK in page.read_text()


# ---- bad input: a clear error, exit code, nothing written


@pytest.mark.parametrize("name, words", [
    ("nosuchenv", "no move of nosuchenv is in progress or archived"),
    ("shop-20201231T235959Z", "no move shop-20201231T235959Z is in progress or archived"),
])
def test_unknown_move_is_exit_6(state, capsys, name, words):
    before = sorted(p.name for p in state.rglob("*"))
    assert report(state, name) == ExitCode.NO_MOVE
    err = capsys.readouterr().err
    assert words in err and "strackt-move list --all" in err
    assert sorted(p.name for p in state.rglob("*")) == before


def test_bad_name_is_usage_before_anything_is_read(state, capsys):
    with pytest.raises(SystemExit) as exited:
        report(state, "../etc/passwd")
    assert exited.value.code == ExitCode.USAGE
    assert "neither an env name nor a move id" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing-dir/r.html", "."])
def test_html_to_a_missing_dir_or_a_dir_is_usage_and_writes_nothing(state, tmp_path, capsys, where):
    target = tmp_path / where
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert report(state, DONE, "--html", str(target)) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"--html {target}" in err and "next:" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_hand_edited_record_is_refused(state, capsys):
    path = mr.history_path(str(state), DONE)
    data = json.loads(open(path).read())
    data["warnings"] = ["edited"]
    with open(path, "w") as fh:
        json.dump(data, fh)
    assert report(state, DONE) == ExitCode.FAILED
    assert "checksum mismatch" in capsys.readouterr().err
