"""The unattended sync loop with a fake runner: back-off, warnings, ending, singleton, signals."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from controller_testlib import FakeRunner, a_pass, failing, new_record, settings_for, walk_to

from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import cli, locks
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlayResult
from strackt_move.sequencer import Sequencer
from strackt_move.store import RecordStore
from strackt_move.sync_loop import LoopPolicy, SyncLoop


@pytest.fixture
def bed(tmp_path):
    settings = settings_for(tmp_path)
    store = RecordStore(settings.state_dir)
    store.ensure()
    ms.create(store.sd, walk_to(new_record(), "awaiting_confirmation"))
    fake = FakeRunner(settings.state_dir)
    lines: list[str] = []
    return settings, store, fake, lines


def _loop(bed, policy=None, sleep=None, stop=None):
    settings, store, fake, lines = bed
    return SyncLoop(settings, store, fake, lines.append, policy=policy or LoopPolicy(interval_s=60),
                    stop=stop or threading.Event(), sleep=sleep)


def _confirm_and_finish(store):
    def change(r):
        r.transition("cutover")
    store.update("shop", change)


def test_back_off_then_recovery_is_recorded(bed):
    settings, store, fake, lines = bed
    outcomes = iter([False, False, False, True, True])
    ok_script = fake.default

    def flaky(request, on_event, cancel):
        if next(outcomes):
            return ok_script(request, on_event, cancel)
        return failing("ssh: connect to host 10.77.0.11 port 22: No route to host")(request, on_event, cancel)

    fake.scripts["sync-loop"] = flaky
    delays: list[float] = []

    def sleep(seconds):
        delays.append(seconds)
        if len(delays) == 5:
            _confirm_and_finish(store)  # the operator confirmed: the loop must end by itself
        return False

    loop = _loop(bed, LoopPolicy(interval_s=60, backoff_initial_s=5, backoff_max_s=300), sleep=sleep)
    assert loop.run("shop") == ExitCode.OK
    assert delays == [5, 10, 20, 60, 60]
    assert len(fake.calls) == 5
    assert all(c.playbook == "sync.yml" and c.extravars["strackt_sync_mode"] == "loop" for c in fake.calls)
    rec = store.load("shop")
    assert len(rec.sync_passes) == 2
    failed = [w for w in rec.warnings if "pass failed" in w]
    assert len(failed) == 1 and "1 in a row" in failed[0] and "No route to host" in failed[0]
    assert any("recovered" in w and "after 3 failed" in w for w in rec.warnings)
    assert any("the sync loop ends" in line for line in lines)


def test_back_off_is_capped():
    policy = LoopPolicy(interval_s=60, backoff_initial_s=5, backoff_max_s=40)
    assert [policy.retry_delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 40, 40]


def test_gives_up_after_max_failures(bed):
    settings, store, fake, lines = bed
    fake.scripts["sync-loop"] = failing("rsync error 12")
    loop = _loop(bed, LoopPolicy(interval_s=60, max_failures=3), sleep=lambda s: False)
    with pytest.raises(MoveError) as err:
        loop.run("shop")
    assert err.value.code == ExitCode.FAILED
    assert len(fake.calls) == 3
    assert any("gave up" in w for w in store.load("shop").warnings)


def test_loop_ends_when_the_move_is_finished(bed):
    settings, store, fake, lines = bed

    def sleep(seconds):
        store.update("shop", lambda r: (r.transition("rollback"), r.complete("rollback"),
                                        r.transition("rolled_back"), r.complete("rolled_back")))
        return False

    assert _loop(bed, sleep=sleep).run("shop") == ExitCode.OK
    assert len(fake.calls) == 1
    assert store.load("shop") is None


def test_never_two_loops_per_move(bed):
    settings, store, fake, lines = bed
    other = locks.sync_loop_lock(settings.locks_dir, "shop", "sync shop --loop")
    other.acquire()
    try:
        with pytest.raises(MoveError) as err:
            _loop(bed).run("shop")
        assert err.value.code == ExitCode.BUSY
        assert f"pid {os.getpid()}" in err.value.problem
    finally:
        other.release()
    assert fake.calls == []


def test_pass_skipped_while_a_controller_drives_the_move(bed):
    settings, store, fake, lines = bed
    held = locks.controller_lock(settings.locks_dir, "shop", "confirm shop")
    held.acquire()
    delays = []

    def sleep(seconds):
        delays.append(seconds)
        if len(delays) == 2:
            held.release()
        if len(delays) == 3:
            _confirm_and_finish(store)
        return False

    assert _loop(bed, sleep=sleep).run("shop") == ExitCode.OK
    assert delays == [60, 60, 60]
    assert len(fake.calls) == 1  # only once the controller let go
    assert sum("skipping this pass" in line and "confirm shop" in line for line in lines) == 2


def test_loop_waits_while_the_target_is_not_deployed(tmp_path):
    settings = settings_for(tmp_path)
    store = RecordStore(settings.state_dir)
    store.ensure()
    rec = walk_to(new_record(), "provision")
    rec.transition("deploy")
    ms.create(store.sd, rec)
    fake = FakeRunner(settings.state_dir)
    seen = []

    def sleep(seconds):
        seen.append(store.load("shop").stage)
        if len(seen) == 1:
            store.update("shop", lambda r: (r.complete("deploy"), r.transition("sync")))
        elif len(seen) == 2:
            def to_gate(r):
                r.add_pass(a_pass(kind="full"))
                r.complete("sync")
                r.transition("verify")
                r.complete("verify")
                r.wait()
            store.update("shop", to_gate)
        else:
            store.update("shop", lambda r: r.transition("rollback"))
        return False

    loop = SyncLoop(settings, store, fake, lambda line: None, policy=LoopPolicy(interval_s=10), sleep=sleep)
    assert loop.run("shop") == ExitCode.OK
    assert seen == ["deploy", "sync", "awaiting_confirmation"]
    assert len(fake.calls) == 1


def test_single_pass_mode(bed):
    settings, store, fake, lines = bed
    loop = _loop(bed, LoopPolicy(once=True))
    assert loop.run("shop") == ExitCode.OK
    assert len(store.load("shop").sync_passes) == 1
    fake.scripts["sync-loop"] = failing("boom")
    with pytest.raises(MoveError) as err:
        _loop(bed, LoopPolicy(once=True)).run("shop")
    assert err.value.code == ExitCode.FAILED


@pytest.fixture
def real_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = threading.Event()
    cli._install_signals(stop)
    yield stop
    for s, h in saved.items():
        signal.signal(s, h)


def test_sigterm_while_sleeping_stops_cleanly(bed, real_signals):
    settings, store, fake, lines = bed
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    began = time.monotonic()
    loop = _loop(bed, LoopPolicy(interval_s=30), stop=real_signals)
    assert loop.run("shop") == ExitCode.OK
    assert time.monotonic() - began < 5
    assert len(fake.calls) == 1
    assert not locks.is_locked(settings.locks_dir / "shop.sync-loop.lock")
    assert not locks.is_locked(settings.locks_dir / "shop.controller.lock")
    assert lines[-1] == "sync loop for shop stopped"


def test_sigint_during_a_pass_cancels_it(bed, real_signals):
    settings, store, fake, lines = bed

    def slow(request, on_event, cancel):
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if cancel():
                return PlayResult(rc=-15, status="canceled")
            time.sleep(0.02)
        return PlayResult(rc=0, status="successful")

    fake.scripts["sync-loop"] = slow
    assert _loop(bed, stop=real_signals).run("shop") == ExitCode.OK
    assert store.load("shop").sync_passes == []
    assert store.load("shop").warnings == []


def test_confirm_waits_for_the_loops_running_pass(bed):
    settings, store, fake, lines = bed
    loop_pass = locks.controller_lock(settings.locks_dir, "shop", "sync shop --loop", role="sync-loop")
    loop_pass.acquire()
    threading.Timer(0.4, loop_pass.release).start()
    seq = Sequencer(settings, store, fake, lines.append, loop_pass_wait_s=10)
    assert seq.confirm("shop", yes=True, ask=None) == ExitCode.OK
    assert any("waiting for the sync loop's current pass" in line for line in lines)
    assert [c.name for c in fake.calls] == ["cutover"]
