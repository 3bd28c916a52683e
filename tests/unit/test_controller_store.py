"""Records through the controller's store: round-trips, 0600/0700, atomic writes, locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from controller_testlib import REPO, a_pass, file_mode, new_record, walk_to

from ansible_collections.strackt.move.plugins.module_utils import fileio
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import locks
from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.store import RecordStore


def test_round_trip_keeps_every_field(tmp_path):
    store = RecordStore(tmp_path)
    rec = walk_to(new_record(), "sync")
    rec.add_pass(a_pass(kind="full"))
    rec.warn("something odd")
    ms.create(str(tmp_path), rec)
    loaded = store.load("shop")
    assert loaded.to_dict() == rec.to_dict()
    store.update("shop", lambda r: r.add_pass(a_pass()))
    again = store.load("shop")
    assert [p.kind for p in again.sync_passes] == ["full", "incremental"]
    assert again.warnings == ["something odd"]


def test_files_are_private(tmp_path):
    store = RecordStore(tmp_path / "state")
    store.ensure()
    ms.create(store.sd, new_record())
    store.update("shop", lambda r: r.complete("preflight"))
    assert file_mode(store.record_file("shop")) == 0o600
    assert file_mode(tmp_path / "state") == 0o700
    assert file_mode(tmp_path / "state" / "moves") == 0o700


def test_a_failed_write_leaves_the_old_record_and_no_temp_file(tmp_path, monkeypatch):
    store = RecordStore(tmp_path)
    ms.create(str(tmp_path), new_record())
    before = store.record_file("shop").read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError):
        store.update("shop", lambda r: r.complete("preflight"))
    assert store.record_file("shop").read_bytes() == before
    assert [p.name for p in (tmp_path / "moves").iterdir() if p.name.endswith(".tmp")] == []


def test_a_hand_edited_record_is_refused_with_a_next_step(tmp_path):
    store = RecordStore(tmp_path)
    ms.create(str(tmp_path), new_record())
    path = store.record_file("shop")
    path.write_text(path.read_text().replace('"srv2"', '"srv3"'))
    with pytest.raises(MoveError) as err:
        store.load("shop")
    assert err.value.code == ExitCode.FAILED
    assert "checksum" in err.value.problem
    assert str(path) in err.value.next_step


def test_require_without_a_move_names_the_next_step(tmp_path):
    with pytest.raises(MoveError) as err:
        RecordStore(tmp_path).require("shop", "confirm")
    assert err.value.code == ExitCode.NO_MOVE
    assert "strackt-move start shop --target" in err.value.next_step


def test_bad_env_name_is_a_usage_error(tmp_path):
    with pytest.raises(MoveError) as err:
        RecordStore(tmp_path).load("../etc")
    assert err.value.code == ExitCode.USAGE


def test_a_died_run_is_recorded_only_on_the_open_stage(tmp_path):
    store = RecordStore(tmp_path)
    rec = walk_to(new_record(), "provision")
    rec.transition("deploy")
    rec.fail("deploy", "from the playbook")
    ms.create(str(tmp_path), rec)
    # the role recorded the failure itself: the controller adds nothing
    store.mark_run_died("shop", "deploy", "from the controller")
    assert [e.message for e in store.load("shop").history if e.event == "failed"] == ["from the playbook"]
    # a stage the run never started (deploy failed, sync not begun): nothing either
    store.mark_run_died("shop", "sync", "from the controller")
    assert store.load("shop").history[-1].message == "from the playbook"
    # started by its role, then the run died: the controller records that
    store.update("shop", lambda r: r.transition("deploy"))
    store.mark_run_died("shop", "deploy", "interrupted by a signal")
    last = store.load("shop").history[-1]
    assert (last.stage, last.event, last.message) == ("deploy", "failed", "interrupted by a signal")
    # completed by its role, then the playbook failed later: the completion stands
    store.update("shop", lambda r: (r.transition("deploy"), r.complete("deploy")))
    store.mark_run_died("shop", "deploy", "a later task failed")
    assert store.load("shop").completed("deploy")


def test_a_died_run_of_a_finished_move_is_no_error(tmp_path):
    assert RecordStore(tmp_path).mark_run_died("shop", "rollback", "x") is None


# ---- locks


def test_second_holder_is_refused_and_named(tmp_path):
    first = locks.controller_lock(tmp_path, "shop", "start shop --target srv2")
    first.acquire()
    second = locks.controller_lock(tmp_path, "shop", "resume shop")
    with pytest.raises(locks.LockBusy) as busy:
        second.acquire(timeout=0)
    assert busy.value.holder.pid == os.getpid()
    assert busy.value.holder.command == "start shop --target srv2"
    assert locks.is_locked(first.path)
    first.release()
    assert not locks.is_locked(first.path)
    second.acquire(timeout=0)
    second.release()


def test_locks_of_different_envs_and_roles_are_independent(tmp_path):
    a = locks.controller_lock(tmp_path, "shop", "x")
    b = locks.controller_lock(tmp_path, "blog", "x")
    c = locks.sync_loop_lock(tmp_path, "shop", "x")
    for lock in (a, b, c):
        lock.acquire(timeout=0)
    for lock in (a, b, c):
        lock.release()


def test_acquire_waits_for_a_release(tmp_path):
    holder = locks.controller_lock(tmp_path, "shop", "x")
    holder.acquire()
    import threading

    threading.Timer(0.3, holder.release).start()
    waiter = locks.controller_lock(tmp_path, "shop", "y")
    began = time.monotonic()
    waiter.acquire(timeout=5)
    assert 0.2 < time.monotonic() - began < 5
    waiter.release()


def test_lock_held_by_another_process_and_freed_by_sigkill(tmp_path):
    """A controller killed with SIGKILL leaves no stale lock: resume can take it at once."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(REPO / 'controller')!r}, {str(REPO / 'collections')!r}]
        from pathlib import Path
        from strackt_move import locks
        lock = locks.controller_lock(Path({str(tmp_path)!r}), "shop", "start shop --target srv2")
        lock.acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        mine = locks.controller_lock(tmp_path, "shop", "resume shop")
        with pytest.raises(locks.LockBusy) as busy:
            mine.acquire(timeout=0)
        assert busy.value.holder.pid == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        mine.acquire(timeout=2)
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lock_file_is_private(tmp_path):
    lock = locks.sync_loop_lock(tmp_path / "locks", "shop", "sync shop --loop")
    lock.acquire()
    try:
        assert file_mode(lock.path) == 0o600
        assert file_mode(tmp_path / "locks") == 0o700
    finally:
        lock.release()
    assert locks.read_holder(Path(lock.path)) is None
