"""strackt-move retire / retire --due and the retained copies in status/list (issue 14), with the
fake runner: the refusals change nothing and run no playbook; a removal runs retire.yml once."""

from __future__ import annotations

import datetime
import json

import pytest
from controller_testlib import T0, FakeRunner, new_record, stats_event, walk_to

from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms

from strackt_move import cli
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlayResult, ResultCollector

NOW = T0 + datetime.timedelta(days=3)


def copy(server: str, until: str, move_id: str = "shop-20261120T120000Z") -> mr.RetainedCopy:
    return mr.RetainedCopy(server=server, move_id=move_id, root="/srv/shop", paths=["/srv/shop/app", "/srv/shop/data"],
                           retained_at="2026-11-20T12:00:00Z", until=until)


def retire_play(state):
    """What the retire role does to the record: forget each copy it removed (the chosen server, the due
    ones, or all), and publish the servers."""

    def play(request, on_event, cancel):
        env, server = request.extravars["env"], request.extravars.get("server")
        kept = ms.load_retained(str(state), env)
        gone = [c.server for c in kept.copies
                if (server is None or c.server == server) and (not request.extravars.get("due") or c.due(NOW))]
        for name in gone:
            kept.drop(name)
        ms.save_retained(str(state), kept)
        collector = ResultCollector(on_event)
        collector(stats_event({"env": env, "retired": gone}))
        return PlayResult(rc=0, status="successful", artifact_data=collector.artifact_data)

    return play


@pytest.fixture
def world(tmp_path):
    state = tmp_path / "state"
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    fake = FakeRunner(state)
    fake.scripts["retire"] = retire_play(state)

    def run(*argv, ask=None):
        return cli.run(["--state-dir", str(state), "-i", str(inventory), *argv],
                       runner_factory=lambda settings: fake, ask=ask, now=lambda: NOW)

    run.fake = fake
    run.state = str(state)
    return run


def keep(world, env: str, *copies: mr.RetainedCopy) -> None:
    ms.save_retained(world.state, mr.RetainedCopies(env=env, copies=list(copies)))


def finished_move(world, target: str = "srv2") -> None:
    """The env's last move, archived done: it runs on ``target``."""
    rec = walk_to(new_record(now=T0), "awaiting_confirmation", now=T0)
    rec.target = target
    for stage in ("cutover", "switched", "done"):
        rec.transition(stage, now=T0)
        rec.complete(stage, now=T0)
    ms.archive(world.state, rec)


def test_retire_asks_then_removes_the_copy(world, capsys):
    finished_move(world)
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"))
    asked = []
    assert world("retire", "shop", ask=lambda q: asked.append(q) or "y") == ExitCode.OK
    assert asked == ["remove the retained copy of shop on srv1 for good? [y/N] "]
    [call] = world.fake.calls
    assert call.playbook == "retire.yml" and call.extravars["confirm"] is True and "server" not in call.extravars
    assert ms.load_retained(world.state, "shop").copies == []
    out = capsys.readouterr().out
    assert "retained copy of shop: srv1:/srv/shop (/srv/shop/app, /srv/shop/data; from move shop-20261120T120000Z)" in out
    assert "removed the retained copy of shop on srv1" in out


def test_retire_not_confirmed_removes_nothing(world, capsys):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"))
    assert world("retire", "shop", ask=lambda q: "n") == ExitCode.OK
    assert world.fake.calls == [] and len(ms.load_retained(world.state, "shop").copies) == 1
    assert "nothing was removed" in capsys.readouterr().out


def test_retire_without_a_terminal_needs_yes(world, capsys):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"))
    assert world("retire", "shop", "--server", "srv1") == ExitCode.USAGE
    assert world.fake.calls == []
    assert "`strackt-move retire shop --server srv1 --yes`" in capsys.readouterr().err
    assert world("retire", "shop", "--server", "srv1", "--yes") == ExitCode.OK
    assert world.fake.calls[0].extravars["server"] == "srv1"


def test_retire_one_server_keeps_the_others(world):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"), copy("srv3", "2026-12-27T12:00:00Z"))
    assert world("retire", "shop", "--server", "srv3", "--yes") == ExitCode.OK
    assert [c.server for c in ms.load_retained(world.state, "shop").copies] == ["srv1"]


def _switched(world) -> mr.MoveRecord:
    rec = walk_to(new_record(now=T0), "awaiting_confirmation", now=T0)
    rec.transition("cutover", now=T0)
    rec.complete("cutover", now=T0)
    rec.transition("switched", now=T0)
    rec.complete("switched", now=T0)
    ms.save(world.state, rec)
    return rec


# the bad-input rows: each refused with what to do, nothing run, nothing changed
def test_retire_refuses_while_the_move_is_switched_and_forwarding(world, capsys):
    keep(world, "shop", copy("srv3", "2026-11-27T12:00:00Z"))
    _switched(world)
    assert world("retire", "shop", "--yes") == ExitCode.WRONG_STATE
    err = capsys.readouterr().err
    assert "a move of shop is in progress" in err and "stage switched" in err
    assert "srv1 still forwards stale traffic to srv2" in err and "`strackt-move finish shop`" in err
    assert world.fake.calls == [] and len(ms.load_retained(world.state, "shop").copies) == 1


def test_retire_refuses_while_a_move_is_in_progress(world, capsys):
    keep(world, "shop", copy("srv3", "2026-11-27T12:00:00Z"))
    ms.save(world.state, walk_to(new_record(now=T0), "sync", now=T0))
    assert world("retire", "shop", "--yes") == ExitCode.WRONG_STATE
    assert "stage sync" in capsys.readouterr().err and world.fake.calls == []


def test_retire_refuses_the_server_the_env_runs_on(world, capsys):
    finished_move(world, target="srv3")
    keep(world, "shop", copy("srv3", "2026-11-27T12:00:00Z"))
    assert world("retire", "shop", "--server", "srv3", "--yes") == ExitCode.WRONG_STATE
    assert "shop runs on srv3" in capsys.readouterr().err and world.fake.calls == []


@pytest.mark.parametrize("argv, fragment", [
    (["retire", "wiki", "--yes"], "wiki has no retained copy on any server; nothing was removed"),
    (["retire", "shop", "--server", "srv2", "--yes"], "srv2 holds no retained copy of shop (retained copies: srv1)"),
    (["retire", "blog", "--server", "srv1", "--yes"], "srv1 holds no retained copy of blog (retained copies: none)"),
])
def test_retire_refuses_without_a_retained_copy(world, capsys, argv, fragment):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"))
    assert world(*argv) == ExitCode.NO_MOVE
    assert fragment in capsys.readouterr().err and world.fake.calls == []


@pytest.mark.parametrize("argv", [["retire"], ["retire", "shop", "--due"], ["retire", "--due", "--server", "srv1"]])
def test_retire_usage(world, argv, capsys):
    assert world(*argv) == ExitCode.USAGE
    assert "retire" in capsys.readouterr().err and world.fake.calls == []


def test_retire_due_removes_only_due_copies_of_envs_not_moving(world, capsys):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"), copy("srv3", "2026-12-27T12:00:00Z"))
    keep(world, "blog", copy("srv2", "2026-11-26T12:00:00Z", move_id="blog-20261120T120000Z"))
    keep(world, "wiki", copy("srv2", "2026-12-26T12:00:00Z", move_id="wiki-20261120T120000Z"))
    blog = new_record("blog", now=T0)
    ms.save(world.state, blog)  # blog moves again: its copy waits
    assert world("retire", "--due") == ExitCode.OK
    assert [(c.env, c.extravars.get("due")) for c in world.fake.calls] == [("shop", True)]
    assert [c.server for c in ms.load_retained(world.state, "shop").copies] == ["srv3"]
    assert len(ms.load_retained(world.state, "blog").copies) == 1
    assert "blog: a move is in progress" in capsys.readouterr().out


def test_retire_due_with_nothing_due(world, capsys):
    keep(world, "shop", copy("srv1", "2026-12-27T12:00:00Z"))
    assert world("retire", "--due") == ExitCode.OK
    assert world.fake.calls == [] and "no retained copy is due" in capsys.readouterr().out


def test_a_failed_retire_says_so_and_keeps_the_copy(world, capsys):
    keep(world, "shop", copy("srv1", "2026-11-27T12:00:00Z"))
    world.fake.scripts["retire"] = lambda request, on_event, cancel: PlayResult(
        rc=2, status="failed", failures=["srv1: Remove each retained copy on its server: env shop may be live"])
    assert world("retire", "shop", "--yes") == ExitCode.FAILED
    assert "env shop may be live" in capsys.readouterr().err
    assert len(ms.load_retained(world.state, "shop").copies) == 1


# ---- status / list


def test_status_and_list_show_retained_copies_and_when_they_go(world, capsys):
    finished_move(world)
    keep(world, "shop", copy("srv1", "2026-11-29T12:00:00Z"))
    keep(world, "blog", copy("srv3", "2026-11-27T12:00:00Z", move_id="blog-20261120T120000Z"))
    assert world("status", "shop") == ExitCode.OK
    out = capsys.readouterr().out
    assert "shop on srv1: /srv/shop (/srv/shop/app, /srv/shop/data), from shop-20261120T120000Z, " \
           "until 2026-11-29T12:00:00Z (24h00m left); now: `strackt-move retire shop --server srv1`" in out
    assert "blog" not in out
    assert world("list") == ExitCode.OK
    out = capsys.readouterr().out
    assert "blog on srv3" in out and "due since 2026-11-27T12:00:00Z" in out and "shop on srv1" in out
    assert world("list", "--json") == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert [(c["env"], c["server"], c["due"]) for c in doc["retained"]] == [("blog", "srv3", True),
                                                                             ("shop", "srv1", False)]
    shop = doc["retained"][1]
    assert shop["until"] == "2026-11-29T12:00:00Z" and shop["remaining_s"] == 24 * 3600
    assert shop["paths"] == ["/srv/shop/app", "/srv/shop/data"] and shop["move_id"] == "shop-20261120T120000Z"


def test_status_json_without_retained_copies_has_an_empty_list(world, capsys):
    assert world("list", "--json") == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["retained"] == []


def test_a_copy_a_retire_claimed_shows_retiring_and_the_next_due_run_completes_it(world, capsys):
    """A retire that failed after its claim left the copy marked: status says so, and `retire --due`
    removes it before its retention ends (a move back onto srv1 is refused until then)."""
    claimed = copy("srv1", "2026-12-27T12:00:00Z")
    claimed.retiring = "2026-11-28T11:00:00Z"
    finished_move(world)
    keep(world, "shop", claimed, copy("srv3", "2026-12-27T12:00:00Z"))
    assert world("status", "shop") == ExitCode.OK
    out = capsys.readouterr().out
    assert "shop on srv1: /srv/shop (/srv/shop/app, /srv/shop/data), from shop-20261120T120000Z, " \
           "retiring since 2026-11-28T11:00:00Z (a retire began removing it; no move onto srv1 until it is " \
           "done); now: `strackt-move retire shop --server srv1`" in out
    assert "shop on srv3" in out and "until 2026-12-27T12:00:00Z" in out
    assert world("list", "--json") == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert [(c["server"], c["retiring"], c["due"]) for c in doc["retained"]] == [
        ("srv1", "2026-11-28T11:00:00Z", True), ("srv3", None, False)]
    assert world("retire", "--due") == ExitCode.OK
    assert [c.server for c in ms.load_retained(world.state, "shop").copies] == ["srv3"]
