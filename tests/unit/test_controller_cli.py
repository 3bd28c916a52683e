"""The command line end to end with a fake runner: exit codes, argument errors, the gate, resume."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from controller_testlib import REPO, FakeRunner, a_pass, failing, new_record, ok_event, walk_to

from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import cli, locks
from strackt_move.exit_codes import ExitCode
from strackt_move.errors import MoveError
from strackt_move.playbook_run import PlayResult, runner_envvars
from strackt_move.settings import ANSIBLE_SETTINGS, Settings, default_inventory, default_state_dir


@pytest.fixture
def world(tmp_path):
    state = tmp_path / "state"
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    fake = FakeRunner(state)

    def run(*argv, ask=None, stop=None, now=None):
        return cli.run(["--state-dir", str(state), "-i", str(inventory), *argv],
                       runner_factory=lambda settings: fake, ask=ask, stop=stop,
                       **({"now": now} if now else {}))

    run.fake = fake
    run.state = state
    return run


def _stages_run(fake):
    return [c.name for c in fake.calls]


# ---- argument errors (exit 2)


@pytest.mark.parametrize("argv", [
    [],
    ["start", "shop"],  # --target missing
    ["start", "shop", "--target", "srv 2"],
    ["sync", "shop", "--loop", "--interval", "soon"],
    ["sync", "shop", "--interval", "0"],
    ["status", "--stale-after", "-1h"],
    ["explode"],
    ["confirm"],
])
def test_argument_errors_exit_2(world, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        world(*argv)
    assert exc.value.code == ExitCode.USAGE == 2
    assert "error" in capsys.readouterr().err


def test_bad_env_name_is_usage(world, capsys):
    with pytest.raises(SystemExit) as exited:  # refused by argparse, before any file is touched
        world("resume", "../x")
    assert exited.value.code == ExitCode.USAGE
    assert "is not an env name" in capsys.readouterr().err
    assert not (world.state / "x.controller.lock").exists()


def test_missing_inventory_is_usage(world, tmp_path, capsys):
    assert world("start", "shop", "--target", "srv2", "-i", str(tmp_path / "nope")) == ExitCode.USAGE
    assert "does not exist" in capsys.readouterr().err
    assert world.fake.calls == []


def test_durations():
    assert cli.duration("300") == 300
    assert cli.duration("5m") == 300
    assert cli.duration("24h") == 86400
    assert cli.duration("1.5s") == 1.5


def test_global_options_work_after_the_command(tmp_path, capsys):
    rc = cli.run(["status", "--state-dir", str(tmp_path), "--json"])
    assert rc == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["moves"] == []


def test_exit_codes_are_documented():
    text = cli.build_parser().format_help()
    for code in ExitCode:
        assert f"  {int(code)}  " in text


# ---- the whole move with a well-behaved fake


def test_start_runs_to_the_gate_and_shows_the_summary(world, capsys):
    assert world("start", "shop", "--target", "srv2") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["preflight", "provision", "deploy", "sync", "verify"]
    out = capsys.readouterr().out
    assert "commit going live : aaaaaaaaaaaa" in out
    assert "target health     : ok (commit aaaaaaaaaaaa, database ok, server srv2)" in out
    assert "last sync pass" in out and "predicted freeze" in out
    assert "sync pass 1 (full): 100 files" in out  # progress line from the rsync task
    assert "strackt-move confirm shop" in out
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("awaiting_confirmation", "waiting")
    calls = {c.name: c for c in world.fake.calls}
    assert calls["preflight"].extravars["target"] == "srv2"
    assert calls["deploy"].playbook == "stages/deploy.yml"
    assert calls["deploy"].extravars["strackt_state_dir"] == str(world.state.resolve())
    assert "confirm" not in calls["verify"].extravars
    assert "move_database" not in calls["preflight"].extravars  # the env's database.move decides


def test_start_runs_the_stages_to_the_gate_in_one_run_and_resume_from_where_it_stopped(world, capsys):
    world.fake.scripts["deploy"] = failing("git clone failed")
    assert world("start", "shop", "--target", "srv2") == ExitCode.FAILED
    assert [r.name for r in world.fake.runs] == ["preflight-to-verify"]
    assert [stage for stage, _ in world.fake.runs[0].chain] == ["preflight", "provision", "deploy", "sync", "verify"]
    assert "stage deploy of shop failed" in capsys.readouterr().err
    del world.fake.scripts["deploy"]
    assert world("resume", "shop") == ExitCode.WAITING
    assert [r.name for r in world.fake.runs] == ["preflight-to-verify", "deploy-to-verify"]
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("==")][:4] == [
        "== resuming " + ms.load(str(world.state), "shop").move_id + " (srv1 → srv2): deploy failed; running it again",
        "== [3/5] deploy (stages/deploy.yml)", "== [4/5] sync (stages/sync.yml)", "== [5/5] verify (stages/verify.yml)"]
    assert "   deploy ok in" in out and "   sync ok in" in out and "   verify ok in" in out


def test_start_shows_preflights_warnings_once_after_preflight(world, capsys):
    default = world.fake.default

    def preflight_warns(request, on_event, cancel):
        result = default(request, on_event, cancel)
        data = {"strackt_preflight": {"warnings": ["hard links are copied as separate files"]}}
        on_event(ok_event("Publish the result", {"ansible_stats": {"data": data}}, host="localhost"))
        return PlayResult(rc=0, status="successful", artifact_data=data)

    world.fake.scripts["preflight"] = preflight_warns
    assert world("start", "shop", "--target", "srv2") == ExitCode.WAITING
    lines = capsys.readouterr().out.splitlines()
    warned = [i for i, line in enumerate(lines) if "warning: hard links" in line]
    assert len(warned) == 1 and lines[warned[0] - 1].startswith("   preflight ok in"), lines


def test_a_chain_that_fails_before_its_first_stage_says_so(world, capsys):
    def broken(request, on_event, cancel):  # e.g. a stage's playbook that does not parse
        return PlayResult(rc=4, status="failed", failures=["a stage's playbook could not be read"])

    world.fake.chain_script = broken
    assert world("start", "shop", "--target", "srv2") == ExitCode.REFUSED
    out = capsys.readouterr().out
    assert "FAILED before its first stage began" in out and "? FAILED" not in out, out


def test_a_record_unreadable_between_two_stages_does_not_break_the_run(world, capsys, monkeypatch):
    """The stage lines read the record while the playbook runs (in runner's event callback): a
    failing read costs the figures of that line, never the run."""
    from strackt_move.store import RecordStore

    real_find = RecordStore.find
    calls = []

    def flaky(self, env, move_id=None):
        calls.append(env)
        if len(calls) == 1:
            raise MoveError(ExitCode.FAILED, "the record store does not answer", "try again")
        return real_find(self, env, move_id)

    monkeypatch.setattr(RecordStore, "find", flaky)
    assert world("start", "shop", "--target", "srv2") == ExitCode.WAITING
    assert "preflight ok" in capsys.readouterr().out


def test_a_chain_whose_last_stage_records_nothing_is_not_run_again(world, capsys):
    world.fake.scripts["verify"] = lambda request, on_event, cancel: PlayResult(rc=0, status="successful")
    assert world("start", "shop", "--target", "srv2") == ExitCode.FAILED
    assert "did not move on" in capsys.readouterr().err
    assert len(world.fake.runs) == 1


def test_start_with_database_asks_preflight_once(world):
    world.fake.scripts["sync"] = failing("rsync: connection refused")
    assert world("start", "shop", "--target", "srv2", "--with-database") == ExitCode.FAILED
    [run] = world.fake.runs  # preflight and the stages after it, in one run
    assert run.extravars["move_database"] is True
    del world.fake.scripts["sync"]
    assert world("resume", "shop") == ExitCode.WAITING
    # a later run reads the decision from the record preflight wrote
    assert len(world.fake.runs) == 2 and "move_database" not in world.fake.runs[1].extravars


def test_confirm_yes_switches_and_returns_saying_what_happens_next(world, capsys):
    world("start", "shop", "--target", "srv2")
    capsys.readouterr()
    assert world("confirm", "shop", "--yes") == ExitCode.OK
    assert [c.name for c in world.fake.calls[-1:]] == ["cutover"]  # no finish: it would wait for hours
    assert world.fake.calls[-1].extravars["confirm"] is True
    assert ms.load(str(world.state), "shop").stage == "switched"
    out = capsys.readouterr().out
    assert "srv1 forwards stale traffic" in out and "strackt-move finish shop --wait" in out
    assert "finish --due" in out and "rollback shop" in out
    assert world("finish", "shop") == ExitCode.OK
    assert "confirm" not in world.fake.calls[-1].extravars and world.fake.calls[-1].name == "finish"
    assert ms.load(str(world.state), "shop") is None
    assert ms.load_history(str(world.state), ms.list_history(str(world.state), "shop")[-1]).stage == "done"
    assert "done: shop runs on srv2" in capsys.readouterr().out


def test_confirm_wait_finishes_like_finish_wait(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("confirm", "shop", "--yes", "--wait") == ExitCode.OK
    assert [c.name for c in world.fake.calls[-2:]] == ["cutover", "finish"]
    assert ms.load(str(world.state), "shop") is None
    assert "done: shop runs on srv2" in capsys.readouterr().out


def test_confirm_wait_and_no_finish_is_a_usage_error(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("confirm", "shop", "--yes", "--wait", "--no-finish") == ExitCode.USAGE
    assert ms.load(str(world.state), "shop").stage == "awaiting_confirmation"


def test_confirm_prompt_no_keeps_waiting(world, capsys):
    world("start", "shop", "--target", "srv2")
    asked = []
    rc = world("confirm", "shop", ask=lambda q: asked.append(q) or "n")
    assert rc == ExitCode.WAITING
    assert asked == ["switch over shop to srv2? [y/N] "]
    assert ms.load(str(world.state), "shop").state == "waiting"


def test_confirm_prompt_yes(world):
    world("start", "shop", "--target", "srv2")
    assert world("confirm", "shop", ask=lambda q: "y") == ExitCode.OK


def test_confirm_without_terminal_or_yes_is_refused(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("confirm", "shop") == ExitCode.USAGE
    assert "--yes" in capsys.readouterr().err


def test_confirm_refused_before_verify(world, capsys):
    world.fake.scripts["sync"] = failing("rsync: connection refused")
    assert world("start", "shop", "--target", "srv2") == ExitCode.FAILED
    capsys.readouterr()
    assert world("confirm", "shop", "--yes") == ExitCode.WRONG_STATE
    err = capsys.readouterr().err
    assert "not verified and waiting" in err and "strackt-move resume shop" in err
    assert "cutover" not in _stages_run(world.fake)


def test_confirm_without_move(world):
    assert world("confirm", "shop", "--yes") == ExitCode.NO_MOVE


def test_preflight_refusal_is_exit_3_and_nothing_else_runs(world, capsys):
    world.fake.scripts["preflight"] = failing("srv3 has 10 MiB free, needs 80 MiB")
    assert world("start", "shop", "--target", "srv3") == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "preflight refused the move of shop" in err and "10 MiB free" in err
    assert "next:" in err
    assert _stages_run(world.fake) == ["preflight"]


def test_failed_stage_then_resume_finishes(world, capsys):
    world.fake.scripts["deploy"] = failing("git clone failed")
    assert world("start", "shop", "--target", "srv2") == ExitCode.FAILED
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("deploy", "failed")
    assert "git clone failed" in rec.history[-1].message
    assert "strackt-move resume shop" in capsys.readouterr().err
    del world.fake.scripts["deploy"]
    world.fake.calls.clear()
    assert world("resume", "shop") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["deploy", "sync", "verify"]


def test_resume_after_a_controller_died_mid_stage(world, tmp_path):
    """A record left `running` in deploy (controller SIGKILLed): resume repeats deploy only."""
    rec = walk_to(new_record(), "provision")
    rec.transition("deploy")
    ms.create(str(world.state), rec)
    assert world("resume", "shop") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["deploy", "sync", "verify"]


def test_resume_at_the_gate_just_shows_it(world):
    world("start", "shop", "--target", "srv2")
    world.fake.calls.clear()
    assert world("resume", "shop") == ExitCode.WAITING
    assert world.fake.calls == []


def test_resume_after_cutover_died(world):
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover")
    ms.create(str(world.state), rec)
    assert world("resume", "shop") == ExitCode.OK
    assert _stages_run(world.fake) == ["cutover", "finish"]
    assert world.fake.calls[0].extravars["confirm"] is True


def test_confirm_no_finish_stops_switched_and_resume_finishes(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("confirm", "shop", "--yes", "--no-finish") == ExitCode.OK
    rec = ms.load(str(world.state), "shop")
    assert rec.stage == "switched"
    assert "finish shop" in capsys.readouterr().out
    assert world("confirm", "shop", "--yes") == ExitCode.WRONG_STATE
    assert world("resume", "shop") == ExitCode.OK
    assert world.fake.calls[-1].name == "finish"
    assert ms.load(str(world.state), "shop") is None


def _switched(store, switched_at: str = "2026-11-25T12:01:00Z"):
    rec = walk_to(new_record(), "awaiting_confirmation")  # created 12:00:00
    rec.set_dns({"shop.example.test.": ["10.77.0.11"]}, 300, 5)
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.complete("switched")
    rec.switched_at = switched_at
    ms.create(store.sd, rec)
    return rec


def test_finish_waits_out_the_dns_hold(tmp_path):
    from controller_testlib import settings_for
    from strackt_move.sequencer import Sequencer
    from strackt_move.store import RecordStore

    settings = settings_for(tmp_path)
    store = RecordStore(settings.state_dir)
    _switched(store)
    lines: list[str] = []
    fake = FakeRunner(settings.state_dir)
    clock = lambda: datetime(2026, 11, 25, 12, 2, 0, tzinfo=timezone.utc)  # noqa: E731
    # resume (and finish without --wait) never blocks: it says what it waits for
    told = Sequencer(settings, store, fake, lines.append, now=clock, wait=lambda s: pytest.fail("waited"))
    assert told.resume("shop") == ExitCode.OK
    assert fake.calls == [] and store.load("shop").stage == "switched"
    assert any("not finishing yet: resolvers' caches of the old address may hold it until 2026-11-25T12:05:02Z"
               in line for line in lines)
    interrupted = Sequencer(settings, store, fake, lines.append, now=clock, wait=lambda s: True, finish_wait=True)
    assert interrupted.finish("shop") == ExitCode.INTERRUPTED
    assert fake.calls == [] and store.load("shop").stage == "switched"
    waited: list[float] = []
    at = [clock()]

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        at[0] += timedelta(seconds=seconds)
        return False

    seq = Sequencer(settings, store, fake, lines.append, now=lambda: at[0], wait=wait, finish_wait=True)
    assert seq.finish("shop") == ExitCode.OK
    assert waited == [182.0]  # until 12:05:02
    assert [c.name for c in fake.calls] == ["finish"]
    assert any("forwards stale traffic" in line for line in lines)


def _finishing(tmp_path, switched_at: str, start: datetime, stale_looks: int, **options):
    """A Sequencer on a move switched at ``switched_at`` whose clock starts at ``start`` (UTC) and
    moves on only by its waits (recorded in ``waited``); the finish playbook keeps the move
    switched for ``stale_looks`` runs (stale requests still come), then finishes it."""
    from controller_testlib import settings_for, finish_waits
    from strackt_move.sequencer import Sequencer
    from strackt_move.store import RecordStore

    settings = settings_for(tmp_path)
    store = RecordStore(settings.state_dir)
    _switched(store, switched_at)
    fake = FakeRunner(settings.state_dir)
    at = [start.replace(tzinfo=timezone.utc)]
    fake.scripts["finish"] = finish_waits(stale_looks, lambda: at[0])
    waited: list[float] = []

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        at[0] += timedelta(seconds=seconds)
        return False

    lines: list[str] = []
    seq = Sequencer(settings, store, fake, lines.append, now=lambda: at[0], wait=wait, **options)
    return seq, store, fake, waited, lines


def test_finish_now_inside_the_dns_hold_waits_it_out_then_finishes(tmp_path):
    """`finish --now` ends the forwarding as soon as it is safe: inside the DNS hold (resolvers
    may still hand out the old address) it waits until the hold ends, saying so, and then
    finishes; it never exits 0 with the move still switched (make test of 2026-12-02: the database
    move's `finish --now` came 14 s after the switch, left the way back in place and said OK)."""
    # resolvers' caches expire at 12:05:02
    seq, store, fake, waited, lines = _finishing(tmp_path, "2026-11-25T12:01:00Z", datetime(2026, 11, 25, 12, 2, 0),
                                                 stale_looks=0, finish_now=True)
    assert seq.finish("shop") == ExitCode.OK
    assert sum(waited) == 182.0, waited  # until 12:05:02, not a second of forwarding.min or .quiet
    assert [c.name for c in fake.calls] == ["finish"] and fake.calls[0].extravars["finish_now"] is True
    assert store.load("shop") is None, "the move is still switched"
    assert any("2026-11-25T12:05:02Z" in line and "--now" in line for line in lines), lines
    # interrupted while it waits, the way on is the same command, not `--wait` (which honours the window)
    looking = [line for line in lines if "looking again" in line]
    assert looking and all("`strackt-move finish shop --now` continues" in line for line in looking), looking


def test_finish_wait_looks_again_until_stale_traffic_is_gone(tmp_path):
    """The finish playbook measures and keeps the move switched twice (stale requests keep coming),
    then finishes: --wait looks again each time the record says, never finishing in between."""
    seq, store, fake, waited, lines = _finishing(tmp_path, "2026-11-25T12:00:00Z", datetime(2026, 11, 25, 13, 0, 0),
                                                 stale_looks=2, finish_wait=True)
    assert seq.finish("shop") == ExitCode.OK
    assert [c.name for c in fake.calls] == ["finish"] * 3
    # each look saw a request that minute: the next one is a quiet window (15 min) later, bounded by 300 s
    assert waited == [300.0, 300.0, 300.0, 300.0, 300.0, 300.0], waited
    assert any("not finished yet: waiting for 15m00s without a stale request" in line for line in lines), lines
    assert store.load("shop") is None


def test_finish_wait_lets_go_of_the_move_while_it_sleeps(tmp_path):
    """`finish --wait` may wait for hours: meanwhile a rollback (or another command) must not be
    refused as busy, and once it took the move over the waiter stops instead of finishing."""
    from controller_testlib import settings_for, finish_waits
    from strackt_move import locks
    from strackt_move.sequencer import Sequencer
    from strackt_move.store import RecordStore

    settings = settings_for(tmp_path)
    store = RecordStore(settings.state_dir)
    _switched(store, "2026-11-25T12:00:00Z")
    fake = FakeRunner(settings.state_dir)
    at = [datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)]
    fake.scripts["finish"] = finish_waits(5, lambda: at[0])
    taken: list[locks.FileLock] = []

    def wait(seconds: float) -> bool:
        other = locks.controller_lock(settings.locks_dir, "shop", "rollback shop")
        other.acquire(timeout=0)  # LockBusy here: the waiter kept the lock through its sleep
        taken.append(other)
        at[0] += timedelta(seconds=seconds)
        return False

    lines: list[str] = []
    seq = Sequencer(settings, store, fake, lines.append, now=lambda: at[0], wait=wait, finish_wait=True)
    with pytest.raises(MoveError) as err:
        seq.finish("shop")
    assert err.value.code == ExitCode.BUSY and "rollback shop" in err.value.problem
    assert [c.name for c in fake.calls] == ["finish"] and len(taken) == 1
    taken[0].release()


def test_finish_now_tells_the_playbook_and_finish_of_an_unswitched_move_is_refused(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("finish", "shop", "--now") == ExitCode.WRONG_STATE
    assert "not switched" in capsys.readouterr().err
    world("confirm", "shop", "--yes")
    assert world("finish", "shop", "--now") == ExitCode.OK
    assert world.fake.calls[-1].extravars["finish_now"] is True


@pytest.mark.parametrize("argv", [("finish",), ("finish", "shop", "--due"), ("finish", "--due", "--wait"),
                                  ("finish", "shop", "--wait", "--now")])
def test_finish_usage_errors_change_nothing(world, capsys, argv):
    world("start", "shop", "--target", "srv2")
    world("confirm", "shop", "--yes")
    calls = len(world.fake.calls)
    assert world(*argv) == ExitCode.USAGE
    assert "next:" in capsys.readouterr().err
    assert len(world.fake.calls) == calls and ms.load(str(world.state), "shop").stage == "switched"


def test_finish_due_looks_at_every_switched_move_whose_finish_is_due(world, capsys):
    world("start", "shop", "--target", "srv2")
    world("confirm", "shop", "--yes")
    world("start", "blog", "--target", "srv2")  # waits at the gate: not a finish's business
    capsys.readouterr()
    assert world("finish", "--due") == ExitCode.OK
    assert [c.extravars["env"] for c in world.fake.calls if c.name == "finish"] == ["shop"]
    assert ms.load(str(world.state), "shop") is None and ms.load(str(world.state), "blog").stage == "awaiting_confirmation"


def test_start_while_another_move_to_elsewhere_is_refused(world, capsys):
    ms.create(str(world.state), walk_to(new_record(), "deploy"))
    assert world("start", "shop", "--target", "srv3") == ExitCode.WRONG_STATE
    assert "rollback shop" in capsys.readouterr().err


def test_start_again_for_the_same_target_continues(world):
    ms.create(str(world.state), walk_to(new_record(), "deploy"))
    assert world("start", "shop", "--target", "srv2") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["sync", "verify"]


def test_a_second_controller_is_refused_busy(world, capsys):
    ms.create(str(world.state), walk_to(new_record(), "deploy"))
    held = locks.controller_lock(world.state.resolve() / "locks", "shop", "resume shop")
    held.acquire()
    try:
        assert world("resume", "shop") == ExitCode.BUSY
        assert world("rollback", "shop") == ExitCode.BUSY
        assert "resume shop" in capsys.readouterr().err
    finally:
        held.release()
    assert world.fake.calls == []


def test_a_second_confirm_during_the_switch_over_is_told_who_drives_it(world, capsys):
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover", "confirmed by the operator")
    ms.create(str(world.state), rec)
    held = locks.controller_lock(world.state.resolve() / "locks", "shop", "confirm shop")
    held.acquire()
    try:
        assert world("confirm", "shop", "--yes") == ExitCode.BUSY
        err = capsys.readouterr().err
        assert "already confirmed and is being switched over by controller" in err and "confirm shop" in err
    finally:
        held.release()
    # nobody drives it any more (the first controller died): resume is the way on
    assert world("confirm", "shop", "--yes") == ExitCode.WRONG_STATE
    assert "resume shop" in capsys.readouterr().err
    assert world.fake.calls == []


def test_rollback_before_the_switch(world, capsys):
    world("start", "shop", "--target", "srv2")
    assert world("rollback", "shop") == ExitCode.OK
    assert world.fake.calls[-1].name == "rollback"
    assert ms.load(str(world.state), "shop") is None
    assert "rolled back" in capsys.readouterr().out


def test_failed_rollback_is_exit_1_and_retryable(world):
    world("start", "shop", "--target", "srv2")
    world.fake.scripts["rollback"] = failing("dns server unreachable")
    assert world("rollback", "shop") == ExitCode.FAILED
    assert ms.load(str(world.state), "shop").stage == "rollback"
    del world.fake.scripts["rollback"]
    assert world("resume", "shop") == ExitCode.OK


def _started(world, stage):
    """What a stage role does first: record its start."""
    with ms.lock(str(world.state), "shop", timeout=5):
        rec = ms.load(str(world.state), "shop")
        rec.transition(stage)
        ms.save(str(world.state), rec)


def test_interrupted_run_exits_8_and_resume_continues(world, capsys):
    """The controller records that the run died (the role could not): the open stage is failed."""
    stop = threading.Event()

    def interrupted(request, on_event, cancel):
        _started(world, "sync")
        stop.set()  # SIGINT arrives while the playbook runs
        assert cancel() is True
        return PlayResult(rc=-1, status="canceled")

    world.fake.scripts["sync"] = interrupted
    assert world("start", "shop", "--target", "srv2", stop=stop) == ExitCode.INTERRUPTED
    assert "resume shop" in capsys.readouterr().out
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("sync", "failed")
    assert rec.history[-1].message.startswith("interrupted")
    del world.fake.scripts["sync"]
    assert world("resume", "shop") == ExitCode.WAITING


def test_a_run_interrupted_before_its_role_started_leaves_the_record_alone(world, capsys):
    stop = threading.Event()

    def interrupted(request, on_event, cancel):
        stop.set()
        return PlayResult(rc=-1, status="canceled")

    world.fake.scripts["sync"] = interrupted
    assert world("start", "shop", "--target", "srv2", stop=stop) == ExitCode.INTERRUPTED
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state, rec.history[-1].event) == ("deploy", "running", "completed")
    del world.fake.scripts["sync"]
    world.fake.calls.clear()
    assert world("resume", "shop") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["sync", "verify"]


def test_resume_repeats_an_interrupted_preflight(world):
    stop = threading.Event()

    def interrupted(request, on_event, cancel):
        ms.create(str(world.state), new_record())  # the role created the record, then the run died
        stop.set()
        return PlayResult(rc=-1, status="canceled")

    world.fake.scripts["preflight"] = interrupted
    assert world("start", "shop", "--target", "srv2", stop=stop) == ExitCode.INTERRUPTED
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("preflight", "failed")
    del world.fake.scripts["preflight"]
    world.fake.calls.clear()
    assert world("resume", "shop") == ExitCode.WAITING
    assert _stages_run(world.fake) == ["preflight", "provision", "deploy", "sync", "verify"]
    assert world.fake.calls[0].extravars["resume"] is True


def test_the_controller_writes_no_stage_event_of_its_own(world, capsys):
    """A provision run that succeeds without its role recording anything: the controller does
    not fill the gap (it used to start and complete stages itself); it stops and says so."""
    def silent(request, on_event, cancel):
        return PlayResult(rc=0, status="successful")

    world.fake.scripts["provision"] = silent
    assert world("start", "shop", "--target", "srv2") == ExitCode.FAILED
    # the stages run in one ansible-playbook: the next stage's role is refused by the record
    assert "stage deploy of shop failed" in capsys.readouterr().err
    rec = ms.load(str(world.state), "shop")
    assert [(e.stage, e.event) for e in rec.history] == [("preflight", "started"), ("preflight", "completed")]


def test_a_cutover_that_fails_before_it_began_leaves_the_move_waiting(world, capsys):
    world("start", "shop", "--target", "srv2")
    world.fake.scripts["cutover"] = failing("the DNS server does not answer", started=False)
    capsys.readouterr()
    assert world("confirm", "shop", "--yes") == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "did not begin" in err and "strackt-move confirm shop" in err
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("awaiting_confirmation", "waiting")
    assert world("resume", "shop") == ExitCode.WAITING  # still at the gate


def test_a_cutover_that_failed_after_it_began_is_retried_by_resume(world, capsys):
    world("start", "shop", "--target", "srv2")
    world.fake.scripts["cutover"] = failing("target unhealthy before the freeze")
    assert world("confirm", "shop", "--yes") == ExitCode.FAILED
    rec = ms.load(str(world.state), "shop")
    assert (rec.stage, rec.state) == ("cutover", "failed")
    assert "target unhealthy" in rec.history[-1].message
    assert "strackt-move resume shop" in capsys.readouterr().err
    del world.fake.scripts["cutover"]
    assert world("resume", "shop") == ExitCode.OK
    assert _stages_run(world.fake)[-2:] == ["cutover", "finish"]


def test_a_rollback_refused_before_it_began_changes_nothing(world, capsys):
    world("start", "shop", "--target", "srv2")
    before = ms.load(str(world.state), "shop")
    world.fake.scripts["rollback"] = failing("srv2 is the database server of shop", started=False)
    assert world("rollback", "shop") == ExitCode.FAILED
    assert "strackt-move rollback shop` again" in capsys.readouterr().err
    assert ms.load(str(world.state), "shop") == before


def test_playbook_that_does_not_record_progress_is_caught(world, capsys):
    def silent(request, on_event, cancel):  # cutover "succeeds" but never finishes the record
        return PlayResult(rc=0, status="successful")

    world("start", "shop", "--target", "srv2")
    world.fake.scripts["cutover"] = silent
    assert world("confirm", "shop", "--yes") == ExitCode.FAILED
    assert "did not move on" in capsys.readouterr().err


# ---- status / list


def test_status_json_is_stable(world, capsys):
    world("start", "shop", "--target", "srv2")
    capsys.readouterr()
    assert world("status", "shop", "--json") == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "strackt-move/status/1"
    assert set(doc) == {"schema", "generated_at", "stale_after_s", "moves", "errors", "retained"}
    (m,) = doc["moves"]
    first_version = {
        "env", "move_id", "active", "source", "target", "commit", "source_commit", "stage", "state",
        "started_at", "updated_at", "elapsed_s", "stage_timings", "waiting_since", "waiting_s", "stale",
        "switched_at", "sync", "predicted_freeze_s", "predicted_freeze_basis", "driver", "warnings", "next",
    }
    added = {"as_of", "stale_message", "freeze", "last_pass_started_ns", "target_writes_since_ns", "released",
             "checks", "backups", "stale_traffic", "finish"}
    assert set(m) == first_version | added  # fields are only ever added within a schema version
    assert (m["stage"], m["state"], m["stale"], m["active"]) == ("awaiting_confirmation", "waiting", False, True)
    assert [t["stage"] for t in m["stage_timings"]][:5] == ["preflight", "provision", "deploy", "sync", "verify"]
    assert m["sync"]["passes"] == 1 and m["sync"]["last_pass"]["kind"] == "full"
    assert m["driver"] == {"controller": None, "sync_loop": None}
    assert m["next"].startswith("strackt-move confirm shop")


def test_status_flags_a_move_waiting_too_long(world, capsys):
    rec = walk_to(new_record(), "verify")
    rec.add_pass(a_pass())
    rec.wait(now=datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc))
    ms.create(str(world.state), rec)
    later = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert world("status", "shop", now=lambda: later) == ExitCode.OK
    captured = capsys.readouterr()
    assert "!!! shop" in captured.out and "26h00m" in captured.out
    assert "waited too long" in captured.err
    assert world("--stale-after", "48h", "list", "--json", now=lambda: later) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["moves"][0]["stale"] is False
    assert world("list", "--json", now=lambda: later) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["moves"][0]["stale"] is True


def test_status_says_resume_when_no_controller_runs(world, capsys):
    rec = walk_to(new_record(), "provision")
    rec.transition("deploy")
    ms.create(str(world.state), rec)
    world("status", "shop")
    assert "resume shop" in capsys.readouterr().out


def test_status_of_unknown_env_is_exit_6(world, capsys):
    assert world("status", "blog") == ExitCode.NO_MOVE
    assert "start blog --target" in capsys.readouterr().err


def test_list_all_includes_archived(world, capsys):
    world("start", "shop", "--target", "srv2")
    world("confirm", "shop", "--yes", "--wait")
    capsys.readouterr()
    world("list", "--json")
    assert json.loads(capsys.readouterr().out)["moves"] == []
    world("list", "--all", "--json")
    (m,) = json.loads(capsys.readouterr().out)["moves"]
    assert (m["stage"], m["active"], m["next"]) == ("done", False, None)


def test_list_reports_an_untrustworthy_record(world, capsys):
    ms.create(str(world.state), new_record())
    path = world.state / "moves" / "shop.json"
    path.write_text(path.read_text().replace("srv2", "srv9"))
    assert world("list") == ExitCode.FAILED
    assert "checksum" in capsys.readouterr().err


# ---- settings


def test_state_dir_defaults(tmp_path):
    assert default_state_dir({"STRACKT_STATE_DIR": "/x"}) == __import__("pathlib").Path("/x")
    assert str(default_state_dir({"XDG_STATE_HOME": "/xdg", "HOME": "/h"})) == "/xdg/strackt-move"
    assert str(default_state_dir({"HOME": "/h"})) == "/h/.local/state/strackt-move"


def test_no_default_inventory(tmp_path):
    """Only what the operator names: -i, else $STRACKT_INVENTORY, else $ANSIBLE_INVENTORY."""
    assert default_inventory({}) is None
    assert default_inventory({"ANSIBLE_INVENTORY": "/a/inv,/b/inv"}) == Path("/a/inv")
    assert default_inventory({"STRACKT_INVENTORY": "/s", "ANSIBLE_INVENTORY": "/a"}) == Path("/s")


def test_a_command_that_reaches_servers_needs_an_inventory(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STRACKT_INVENTORY", raising=False)
    monkeypatch.delenv("ANSIBLE_INVENTORY", raising=False)
    state = tmp_path / "state"
    fake = FakeRunner(state)
    code = cli.run(["--state-dir", str(state), "start", "shop", "--target", "srv2"], runner_factory=lambda s: fake)
    assert code == ExitCode.USAGE and fake.calls == []
    err = capsys.readouterr().err
    assert "no inventory given" in err and "-i PATH" in err and "STRACKT_INVENTORY" in err
    assert not state.exists()  # refused before anything was written
    code = cli.run(["--state-dir", str(state), "-i", str(tmp_path / "nope"), "start", "shop", "--target", "srv2"],
                   runner_factory=lambda s: fake)
    assert code == ExitCode.USAGE and "nope does not exist" in capsys.readouterr().err
    # reading records needs none
    assert cli.run(["--state-dir", str(state), "list"]) == ExitCode.OK


def test_runner_env_turns_host_key_checking_back_on(tmp_path):
    settings = Settings(state_dir=tmp_path, inventory=tmp_path)
    env = runner_envvars(settings, tmp_path / "cp", path="/nonexistent")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "ANSIBLE_CONFIG" not in env  # no checkout needed: the settings come with the run
    assert env["ANSIBLE_COLLECTIONS_PATH"] == str(REPO / "collections")  # the imported collection's
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(tmp_path / "cp")
    assert env["PATH"].split(":")[0].endswith("bin")  # the venv's bin: ansible-playbook is found


def test_runner_settings_are_the_checkouts_ansible_cfg():
    """ansible.cfg (plain ansible-playbook from a checkout) and the controller's runs agree."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "ansible.cfg")
    as_env = {"defaults": {"host_key_checking": "ANSIBLE_HOST_KEY_CHECKING",
                           "interpreter_python": "ANSIBLE_PYTHON_INTERPRETER", "forks": "ANSIBLE_FORKS",
                           "timeout": "ANSIBLE_TIMEOUT", "retry_files_enabled": "ANSIBLE_RETRY_FILES_ENABLED"},
              "ssh_connection": {"pipelining": "ANSIBLE_PIPELINING", "ssh_args": "ANSIBLE_SSH_ARGS"}}
    for section, keys in as_env.items():
        for key, var in keys.items():
            assert cfg.get(section, key) == ANSIBLE_SETTINGS[var], key
    assert set(ANSIBLE_SETTINGS) == {v for keys in as_env.values() for v in keys.values()}
    assert not cfg.has_option("defaults", "inventory")  # no inventory is a default


def test_ctrl_c_or_eof_at_the_prompt_answers_no(monkeypatch):
    import builtins
    import signal

    def interrupt(prompt):
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(builtins, "input", interrupt)
    assert cli._ask("switch over shop to srv2? [y/N] ") == ""
    monkeypatch.setattr(builtins, "input", lambda prompt: (_ for _ in ()).throw(EOFError))
    assert cli._ask("?") == ""
    assert signal.getsignal(signal.SIGINT) is before


def test_status_shows_the_stale_traffic_of_a_switched_move(world, capsys):
    from ansible_collections.strackt.move.plugins.module_utils import move_record as mr

    rec = _switched(_store_of(world), "2026-11-25T12:00:00Z")
    rec = ms.load(str(world.state), "shop")
    rec.set_stale(mr.StaleTraffic(measured_at="2026-11-25T12:30:00Z", since="2026-11-25T12:00:00Z", total=42,
                                  last_seen="2026-11-25T12:29:30Z", per_minute=[4, 0, 2], log_found=True,
                                  forwarding={"min_s": 3600, "quiet_s": 900, "max_s": 259200}))
    ms.save(str(world.state), rec)
    later = lambda: datetime(2026, 11, 25, 12, 31, tzinfo=timezone.utc)  # noqa: E731
    assert world("status", "shop", now=later) == ExitCode.OK
    out = capsys.readouterr().out
    assert "stale     : 42 request(s) to srv1 since the release, 2/min now" in out
    assert "last seen 2026-11-25T12:29:30Z" in out and "finish    : not yet: waiting for forwarding.min" in out
    assert "next      : strackt-move finish shop --wait" in out
    assert world("status", "shop", "--json", now=later) == ExitCode.OK
    (m,) = json.loads(capsys.readouterr().out)["moves"]
    assert m["stale_traffic"]["total"] == 42 and m["stale_traffic"]["per_minute"] == [4, 0, 2]
    assert m["finish"] == {"due": False, "not_before": "2026-11-25T13:00:00Z", "why": m["finish"]["why"]}


def _store_of(world):  # noqa: N802 - the store of the world's state dir
    from strackt_move.store import RecordStore

    return RecordStore(world.state)
