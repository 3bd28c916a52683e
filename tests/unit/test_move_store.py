"""Where move records live: paths, 0600/0700, atomic saves, archive, listing, the write lock."""

import datetime
import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.strackt.move.plugins.module_utils import fileio
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


def new(env="shop", now=T0):
    return mr.MoveRecord.new(env, "srv1", "srv2", "10.77.0.11", "10.77.0.12", "a" * 40,
                             source_commit="b" * 40, now=now)


def test_files_modes_atomic_and_archive(tmp_path):
    state = str(tmp_path / "state")
    rec = new()
    path = ms.create(state, rec)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for d in (state, ms.moves_dir(state), ms.history_dir(state)):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert ms.load(state, "shop") == rec
    assert ms.load(state, "blog") is None
    assert ms.list_active(state) == ["shop"]
    with pytest.raises(mr.MoveInProgress, match="already in progress"):
        ms.create(state, new())
    # no temp files left behind
    assert sorted(os.listdir(ms.moves_dir(state))) == ["history", "shop.json"]
    with pytest.raises(mr.TransitionError):
        ms.archive(state, rec)
    rec.transition("rollback")
    rec.transition("rolled_back")
    rec.complete("rolled_back")
    dest = ms.archive(state, rec)
    assert not os.path.exists(path)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert ms.load_history(state, rec.move_id) == rec
    assert ms.list_history(state, "shop") == [rec.move_id]
    assert ms.load(state, "shop") is None


def test_listing_takes_only_record_names(tmp_path):
    state = str(tmp_path)
    ms.ensure_dirs(state)
    ms.save(state, new("shop-x"))
    ms.save(state, new("shop", now=T0 + datetime.timedelta(seconds=1)))
    for stray in ("my notes.json", ".shop.json.abc.tmp", "Shop.json", "shop.json~"):
        open(os.path.join(ms.moves_dir(state), stray), "w").close()
    assert ms.list_active(state) == ["shop", "shop-x"]
    for rec in (new("shop-x"), new("shop")):
        rec.transition("rollback")
        rec.transition("rolled_back")
        rec.complete("rolled_back")
        ms.archive(state, rec)
    open(os.path.join(ms.history_dir(state), "readme.json"), "w").close()
    # history of one env: not the env whose name merely starts the same
    assert ms.list_history(state, "shop") == ["shop-20261125T120000Z"]
    assert ms.list_history(state) == ["shop-20261125T120000Z", "shop-x-20261125T120000Z"]


def test_corrupt_file_on_disk_is_refused(tmp_path):
    state = str(tmp_path)
    rec = new()
    path = ms.save(state, rec)
    with open(path) as fh:
        data = json.load(fh)
    data["target"] = "srv3"
    with open(path, "w") as fh:
        json.dump(data, fh)
    with pytest.raises(mr.RecordError, match="shop.json: move record: checksum mismatch"):
        ms.load(state, "shop")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    state = str(tmp_path)
    rec = new()
    path = ms.save(state, rec)
    before = open(path).read()

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(fileio.os, "replace", boom)
    rec.warn("x")
    with pytest.raises(OSError):
        ms.save(state, rec)
    assert open(path).read() == before
    assert sorted(os.listdir(ms.moves_dir(state))) == ["history", "shop.json"]


def test_bad_names_never_become_paths(tmp_path):
    for env in ("../x", "shop/..", "Shop", ""):
        with pytest.raises(EnvNameError):
            ms.record_path(str(tmp_path), env)
        with pytest.raises(EnvNameError):
            ms.lock_path(str(tmp_path), env)
    with pytest.raises(EnvNameError):
        ms.history_path(str(tmp_path), "../../etc/passwd")


def _hold_lock(state, ready, release):
    with ms.lock(state, "shop"):
        ready.set()
        release.wait(10)


def test_lock_is_exclusive(tmp_path):
    state = str(tmp_path)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(state, ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(ms.RecordLocked, match="holds the lock of env shop"):
            with ms.lock(state, "shop", timeout=0.3):
                pass
        with ms.lock(state, "blog"):
            pass  # other envs are independent
    finally:
        release.set()
        proc.join(10)
    with ms.lock(state, "shop", timeout=1):
        pass
    assert stat.S_IMODE(os.stat(ms.lock_path(state, "shop")).st_mode) == 0o600
