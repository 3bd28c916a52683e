"""`strackt-move evacuate`: what runs next (pure), where each move is (from its record), and the
whole command over the fake runner, its children run in-process."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from controller_testlib import FakeRunner, failing, new_record, settings_for, walk_to

from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import cli
from strackt_move.evacuation import EvacuationStore, Phase, PlannedMove, phase
from strackt_move.evacuator import next_actions
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlayRequest, PlayResult
from strackt_move.store import RecordStore

MOVES = [PlannedMove("big", "srv2"), PlannedMove("mid", "srv3"), PlannedMove("small", "srv2")]


def phases(**by_env: Phase) -> dict[str, Phase]:
    return {m.env: by_env.get(m.env, Phase.PENDING) for m in MOVES}


def kinds(actions) -> list[tuple[str, str]]:
    return [(a.kind, a.env) for a in actions]


def yes(_env: str) -> bool:
    return True


# ------------------------------------------------------------------ next_actions

def test_preparations_fill_the_slots_in_plan_order() -> None:
    assert kinds(next_actions(MOVES, phases(), set(), 2, yes)) == [("start", "big"), ("start", "mid")]
    # one slot taken by a move someone drives: one more start
    assert kinds(next_actions(MOVES, phases(big=Phase.PREPARING), {"big"}, 2, yes)) == [("start", "mid")]


def test_an_interrupted_preparation_is_resumed_before_new_ones_start() -> None:
    actions = next_actions(MOVES, phases(mid=Phase.PREPARING), set(), 1, yes)
    assert kinds(actions) == [("resume", "mid")] and actions[0].argv == ("resume", "mid")


def test_one_switch_over_at_a_time_and_never_during_another() -> None:
    ready = phases(big=Phase.READY, mid=Phase.READY, small=Phase.READY)
    actions = next_actions(MOVES, ready, set(), 2, yes)
    assert kinds(actions) == [("confirm", "big")]
    assert actions[0].argv == ("confirm", "big", "--yes", "--no-finish")
    # big's switch-over runs (our child, or someone's `confirm` holding its lock): nothing else switches
    assert next_actions(MOVES, ready, {"big"}, 2, yes) == []
    assert next_actions(MOVES, phases(big=Phase.SWITCHING, mid=Phase.READY, small=Phase.READY), set(), 2, yes) == []


def test_switched_moves_finish_while_preparations_go_on() -> None:
    actions = next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.PREPARING), {"mid"}, 2, yes)
    assert kinds(actions) == [("start", "small"), ("finish", "big")]
    assert actions[1].argv == ("resume", "big")


def test_a_finish_and_a_switch_over_never_run_at_once() -> None:
    # a finish reloads the old server's front proxy, which drops the requests a freeze holds there
    actions = next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.READY), set(), 1, yes)
    assert kinds(actions) == [("start", "small"), ("finish", "big")]
    # big finishing (our child, or someone's `resume`): mid waits at the gate
    assert next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.READY, small=Phase.PREPARING),
                        {"big", "small"}, 2, yes) == []
    # mid switching: big's finish waits
    assert next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.SWITCHING, small=Phase.PREPARING),
                        {"mid", "small"}, 2, yes) == []
    assert next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.READY, small=Phase.PREPARING),
                        {"mid", "small"}, 2, yes) == []
    # big switched but its finish not due yet (resolvers may still hold the old address): mid switches
    assert kinds(next_actions(MOVES, phases(big=Phase.SWITCHED, mid=Phase.READY), set(), 1, yes,
                              finish_due=lambda env: env != "big")) == [("start", "small"), ("confirm", "mid")]
    # once big is done, mid switches
    assert kinds(next_actions(MOVES, phases(big=Phase.DONE, mid=Phase.READY, small=Phase.PREPARING),
                              {"small"}, 2, yes)) == [("confirm", "mid")]


def test_what_the_operator_declines_or_must_decide_is_left_alone() -> None:
    ready = phases(big=Phase.READY, mid=Phase.READY, small=Phase.FAILED)
    assert kinds(next_actions(MOVES, ready, set(), 2, lambda env: env != "big")) == [("confirm", "mid")]
    assert next_actions(MOVES, phases(big=Phase.FAILED, mid=Phase.FAILED, small=Phase.FAILED), set(), 2, yes) == []
    # held: a command of ours failed for it in this run (e.g. a start refused by preflight)
    assert kinds(next_actions(MOVES, phases(), set(), 2, yes, frozenset({"big"}))) == [("start", "mid"), ("start", "small")]


def test_an_interrupted_rollback_is_resumed() -> None:
    assert kinds(next_actions(MOVES, phases(big=Phase.ROLLING_BACK), set(), 0, yes)) == [("resume", "big")]


# ------------------------------------------------------------------ phase

@pytest.mark.parametrize("stage, expected", [
    ("provision", Phase.PREPARING), ("awaiting_confirmation", Phase.READY)])
def test_phase_from_the_record(tmp_path: Path, stage: str, expected: Phase) -> None:
    store = RecordStore(tmp_path)
    store.ensure()
    ms.save(str(tmp_path), walk_to(new_record(), stage))
    got, rec = phase(store, PlannedMove("shop", "srv2"))
    assert got is expected and rec is not None


def test_phase_of_failed_switched_and_archived_moves(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.ensure()
    rec = walk_to(new_record(), "sync")
    rec.transition("verify")
    rec.fail("verify", "manifest differs")
    ms.save(str(tmp_path), rec)
    assert phase(store, PlannedMove("shop", "srv2"))[0] is Phase.FAILED
    # a move of the env to another server is not this evacuation's
    assert phase(store, PlannedMove("shop", "srv3"))[0] is Phase.PENDING
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.complete("switched")
    ms.save(str(tmp_path), rec)
    assert phase(store, PlannedMove("shop", "srv2"))[0] is Phase.SWITCHED
    rec.transition("done")
    rec.complete("done")
    ms.archive(str(tmp_path), rec)
    assert phase(store, PlannedMove("shop", "srv2", move_id=rec.move_id))[0] is Phase.DONE
    assert phase(store, PlannedMove("shop", "srv2"))[0] is Phase.PENDING


# ------------------------------------------------------------------ the command, on the fake runner

def plan_script(placed: list[tuple[str, str]], unplaced: list[dict[str, Any]] | None = None,
                left_behind: dict[str, tuple[str, ...]] | None = None):
    left_behind = left_behind or {}

    def script(request: PlayRequest, on_event, cancel) -> PlayResult:
        assert request.playbook == "evacuation_plan.yml" and request.extravars["server"] == "srv1"
        plan = {"server": "srv1", "targets": ["srv2", "srv3"], "complete": not unplaced,
                "placed": [{"env": e, "target": t, "data_bytes": 1024 * 1024, "memory_mb": 64,
                            "left_behind": list(left_behind.get(e, ()))} for e, t in placed],
                "unplaced": unplaced or []}
        return PlayResult(rc=0, status="successful", artifact_data={"evacuation_plan": plan})
    return script


class InProcessChild:
    """A child `strackt-move` run to its end at once, in this process, on the same fake runner."""

    def __init__(self, rc: int) -> None:
        self.rc = rc

    def poll(self) -> int | None:
        return self.rc

    def send_signal(self, sig: int) -> None:  # pragma: no cover - already ended
        pass

    def wait(self, timeout: float | None = None) -> int:
        return self.rc


@pytest.fixture
def world(tmp_path: Path, monkeypatch):
    settings = settings_for(tmp_path)
    settings.inventory.mkdir()
    fake = FakeRunner(settings.state_dir)
    spawned: list[tuple[str, ...]] = []

    def spawn(argv: tuple[str, ...], log: Path) -> InProcessChild:
        spawned.append(argv)
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(out):
            rc = cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), *argv],
                         runner_factory=lambda s: fake)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out.getvalue())
        return InProcessChild(int(rc))

    monkeypatch.setattr("strackt_move.evacuator.spawn_cli", lambda settings: spawn)
    monkeypatch.setattr("strackt_move.evacuator.Evacuator.poll_s", 0.0)

    def evacuate(*args: str) -> ExitCode:
        return cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), "evacuate", "srv1", *args],
                       runner_factory=lambda s: fake)

    return settings, fake, spawned, evacuate


def test_evacuate_moves_every_env_and_archives_the_evacuation(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("big", "srv2"), ("mid", "srv3"), ("small", "srv2")])
    assert evacuate("--parallel", "2", "--yes") == ExitCode.OK
    out = capsys.readouterr().out
    assert "srv1 is empty" in out and "[big] start: strackt-move start big --target srv2" in out
    assert {a[0] for a in spawned} == {"start", "confirm", "resume"}
    assert [a[1] for a in spawned if a[0] == "confirm"] == ["big", "mid", "small"]
    store = RecordStore(settings.state_dir)
    for env in ("big", "mid", "small"):
        assert store.load(env) is None and store.latest_history(env).stage == "done"


def test_an_evacuation_that_leaves_a_database_behind_never_says_the_server_is_empty(world, capsys) -> None:
    # the moves all end, but srv1 still runs big's database: switching srv1 off would take it down
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("big", "srv2"), ("small", "srv3")],
                                                  left_behind={"big": ("its MariaDB database big",)})
    assert evacuate("--yes") == ExitCode.OK
    out = capsys.readouterr().out
    assert "is empty" not in out
    end = out[out.index("== evacuation of srv1:"):]
    assert "srv1 still runs what big connects to: do not switch it off yet" in end
    assert "warning: big moves without its MariaDB database big: it stays on srv1" in end
    archived = next((EvacuationStore(settings.state_dir).directory / "history").glob("srv1-*.json"))
    assert [m["left_behind"] for m in json.loads(archived.read_text())["moves"]] == [["its MariaDB database big"], []]
    evacs = EvacuationStore(settings.state_dir)
    assert evacs.active() == []
    archived = list((evacs.directory / "history").glob("srv1-*.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text())["state"] == "done"
    assert (archived[0].stat().st_mode & 0o777) == 0o600


def test_plan_only_changes_nothing(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("shop", "srv2")])
    assert evacuate("--plan") == ExitCode.OK
    assert "shop  → srv2" in capsys.readouterr().out
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_no_room_is_refused_naming_env_and_reasons_and_starts_nothing(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script(
        [("shop", "srv2")], [{"env": "notes", "reasons": ["srv3 has 10.0 MiB free, notes needs 80.0 MiB"]}])
    assert evacuate("--yes") == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "no room for notes (srv3 has 10.0 MiB free, notes needs 80.0 MiB)" in err and "nothing was changed" in err
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_a_refused_plan_playbook_changes_nothing(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = failing("no env is attached to srv1 (strackt_environments.*.server): "
                                              "there is nothing to evacuate", started=False)
    assert evacuate("--yes") == ExitCode.REFUSED
    assert "there is nothing to evacuate" in capsys.readouterr().err
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_bad_input_is_usage(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    assert evacuate("--to", "srv1,srv2") == ExitCode.USAGE
    assert "srv1 cannot be evacuated to itself" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        evacuate("--parallel", "0")
    assert usage.value.code == ExitCode.USAGE and "not a whole number of 1 or more" in capsys.readouterr().err
    assert evacuate("--rollback") == ExitCode.USAGE
    assert fake.calls == [] and spawned == []


def test_the_plan_needs_a_confirmation(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("shop", "srv2")])
    assert evacuate() == ExitCode.USAGE  # no terminal here
    assert "--yes" in capsys.readouterr().err
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_two_evacuations_of_one_server_at_once(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    evacs = EvacuationStore(settings.state_dir)
    held = evacs.lock("srv1", "evacuate srv1")
    held.acquire()
    try:
        assert evacuate("--yes") == ExitCode.BUSY
        assert "evacuation of srv1 is driven by evacuation" in capsys.readouterr().err
    finally:
        held.release()
    assert fake.calls == []


def test_an_env_already_moving_is_refused(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    RecordStore(settings.state_dir).ensure()
    ms.save(str(settings.state_dir), walk_to(new_record("shop"), "sync"))
    fake.scripts["evacuation_plan"] = plan_script([("shop", "srv2")])
    assert evacuate("--yes") == ExitCode.WRONG_STATE
    assert "envs with a move in progress: shop" in capsys.readouterr().err
    assert spawned == []


def test_confirm_each_without_a_terminal_leaves_moves_waiting_then_continues(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("a", "srv2"), ("b", "srv3")])
    assert evacuate("--confirm", "each", "--parallel", "2") == ExitCode.WAITING
    assert "waiting for confirmation: a, b" in capsys.readouterr().out
    assert EvacuationStore(settings.state_dir).active() == ["srv1"]
    # status --server shows each env's move
    assert cli.run(["--state-dir", str(settings.state_dir), "status", "--server", "srv1"]) == ExitCode.OK
    status = capsys.readouterr().out
    assert "0/2 ended" in status and "ready" in status and "awaiting_confirmation (waiting)" in status
    # the operator confirms one by hand; running evacuate again continues with the plan's settings
    assert cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), "confirm", "a", "--yes"],
                   runner_factory=lambda s: fake) == ExitCode.OK
    fake.scripts.pop("evacuation_plan")
    assert evacuate("--yes") == ExitCode.WAITING
    out = capsys.readouterr().out
    assert "continuing the evacuation of srv1" in out and "a done, b ready" in out


def test_abort_with_rollback_leaves_every_env_on_one_server(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("a", "srv2"), ("b", "srv3")])
    assert evacuate("--confirm", "each", "--parallel", "2") == ExitCode.WAITING
    code = cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), "evacuate", "srv1",
                    "--abort", "--rollback"], runner_factory=lambda s: fake)
    assert code == ExitCode.INTERRUPTED
    store = RecordStore(settings.state_dir)
    assert [store.latest_history(e).stage for e in ("a", "b")] == ["rolled_back", "rolled_back"]
    assert EvacuationStore(settings.state_dir).active() == []
    assert ("rollback", "a") in spawned and ("rollback", "b") in spawned


def test_a_failed_preparation_is_left_to_the_operator(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("a", "srv2"), ("b", "srv3")])
    fake.scripts["deploy"] = failing("git: branch main not found")
    assert evacuate("--parallel", "2", "--yes") == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "the moves of a, b did not complete" in captured.err
    assert "[a] start ended" in captured.out and "exit 1" in captured.out
    assert EvacuationStore(settings.state_dir).active() == ["srv1"]  # kept: `evacuate srv1` continues


def test_switched_envs_are_finished_when_due_and_the_evacuation_waits_for_it(world, capsys, monkeypatch) -> None:
    # resolvers may hold the old address a while after a switch: the finish waits for that, and
    # meanwhile the other envs switch over; the evacuation ends only once every env is finished
    settings, fake, spawned, evacuate = world
    store = RecordStore(settings.state_dir)

    asked: dict[str, int] = {}

    def due(self, env: str) -> bool:  # due once no env waits to switch and after a few more looks
        if not all((rec := store.load(e)) is None or rec.stage in ("switched", "done") for e in ("a", "b")):
            return False
        asked[env] = asked.get(env, 0) + 1
        return asked[env] > 3

    monkeypatch.setattr("strackt_move.evacuator.Evacuator._finish_due", due)
    fake.scripts["evacuation_plan"] = plan_script([("a", "srv2"), ("b", "srv3")])
    assert evacuate("--parallel", "2", "--yes") == ExitCode.OK
    out = capsys.readouterr().out
    assert "srv1 is empty" in out
    # while only finishes were left the operator was told once that leaving loses nothing
    assert out.count("waiting for the finishes: a") == 1 and "Ctrl-C is safe" in out
    order = [a[:2] for a in spawned if a[0] in ("confirm", "resume")]
    assert order == [("confirm", "a"), ("confirm", "b"), ("resume", "a"), ("resume", "b")]


def test_finish_is_due_when_resolvers_caches_of_the_old_address_expired(world, monkeypatch) -> None:
    from datetime import datetime, timedelta, timezone

    from strackt_move.evacuator import Evacuator

    settings, fake, spawned, evacuate = world
    RecordStore(settings.state_dir).ensure()
    ms.save(str(settings.state_dir), walk_to(new_record("shop"), "sync"))
    at = datetime(2026, 11, 30, 7, 0, tzinfo=timezone.utc)
    monkeypatch.setattr("strackt_move.evacuator.finish_not_before", lambda rec: at)
    evacuator = Evacuator(settings, RecordStore(settings.state_dir), fake, print, spawn=lambda argv, log: None)
    evacuator.now = lambda: at - timedelta(seconds=1)
    assert evacuator._finish_due("shop") is False
    evacuator.now = lambda: at
    assert evacuator._finish_due("shop") is True
    assert evacuator._finish_due("nothing") is True  # no record: nothing to wait for


def test_an_abort_finishes_switched_envs_but_not_during_a_switch_over(world) -> None:
    from strackt_move.evacuation import Evacuation
    from strackt_move.evacuator import Evacuator

    settings, fake, spawned, evacuate = world
    evacuator = Evacuator(settings, RecordStore(settings.state_dir), fake, print, spawn=lambda argv, log: None)
    evac = Evacuation("srv1", "2026-11-30T07:00:00Z", ["srv2", "srv3"], 2, "plan", moves=list(MOVES))
    # big switched, mid's switch-over under way (our confirm, or someone's): big's finish waits
    during = evacuator._abort_actions(evac, phases(big=Phase.SWITCHED, mid=Phase.READY, small=Phase.READY),
                                      {"mid"}, {}, rollback=True)
    assert kinds(during) == [("rollback", "small")]
    after = evacuator._abort_actions(evac, phases(big=Phase.SWITCHED, mid=Phase.DONE, small=Phase.ROLLED_BACK),
                                     set(), {}, rollback=True)
    assert kinds(after) == [("finish", "big")]
    # a finish not due yet (stale traffic still arriving) is not asked for on every poll: it
    # would return at once and be spawned again a second later, for hours
    evacuator._finish_due = lambda env: False  # type: ignore[method-assign]
    assert evacuator._abort_actions(evac, phases(big=Phase.SWITCHED, mid=Phase.DONE, small=Phase.ROLLED_BACK),
                                    set(), {}, rollback=True) == []


# ------------------------------------------------------------------ --approved-plan (AWX's approval node)

def test_the_approved_plan_is_moved_as_approved(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("big", "srv2"), ("small", "srv3")])
    assert evacuate("--yes", "--approved-plan", "small=srv3,big=srv2") == ExitCode.OK
    assert "srv1 is empty" in capsys.readouterr().out


@pytest.mark.parametrize("approved, words", [
    ("big=srv2,small=srv2", "small → srv3 (approved: srv2)"),
    ("big=srv2", "small → srv3 (approved: not in the plan)"),
    ("big=srv2,small=srv3,gone=srv2", "gone (approved → srv2, now not attached to srv1)"),
])
def test_a_plan_that_changed_since_its_approval_is_refused_and_changes_nothing(world, capsys, approved, words) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("big", "srv2"), ("small", "srv3")])
    assert evacuate("--yes", "--approved-plan", approved) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "the plan changed since it was approved" in err and words in err and "nothing was changed" in err
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_a_continued_evacuation_is_held_to_its_recorded_plan(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = plan_script([("big", "srv2"), ("small", "srv3")])
    evacs = EvacuationStore(settings.state_dir)
    from strackt_move.evacuation import Evacuation
    evacs.save(Evacuation("srv1", "2026-11-25T12:00:00Z", ["srv2", "srv3"], 1, "plan",
                          [PlannedMove("big", "srv2"), PlannedMove("small", "srv2")]))
    assert evacuate("--approved-plan", "big=srv2,small=srv3") == ExitCode.REFUSED
    assert "small → srv2 (approved: srv3)" in capsys.readouterr().err
    assert spawned == []


def test_a_malformed_approved_plan_is_usage(world, capsys) -> None:
    settings, fake, spawned, evacuate = world
    for bad in ("big", "big=srv2,big=srv3", "=srv2", "Big=srv2"):
        with pytest.raises(SystemExit) as exc:
            evacuate("--yes", "--approved-plan", bad)
        assert exc.value.code == 2, bad
    assert spawned == []
