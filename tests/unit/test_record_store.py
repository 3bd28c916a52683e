"""The record store's contract, run against both backends (the file store and the PostgreSQL store
on a throwaway server, tests/unit/pg_cluster.py), with the same test functions: records,
history, retained copies, the checks every record passes, and the per-env lock between
processes (two processes stand in for two AWX execution nodes); and the evacuations' records,
abort requests and per-server lock."""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from controller_testlib import new_record
from pg_cluster import PASSWORD

from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils import move_store_pg as pg
from ansible_collections.strackt.move.plugins.module_utils.holder_lock import LockBusy
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError
from ansible_collections.strackt.move.plugins.modules import move_record
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import run_work
from strackt_move.errors import MoveError
from strackt_move.evacuation import Evacuation, EvacuationStore, PlannedMove
from strackt_move.exit_codes import ExitCode
from strackt_move.store import RecordStore

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
FORK = multiprocessing.get_context("fork")


class Harness:
    """One backend, and a way around it to put raw text where it keeps a record (to show that
    what the store reads is checked, whoever wrote it)."""

    def __init__(self, kind: str, state_dir: str, setting: str) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.setting = setting  # what record_store / STRACKT_RECORD_STORE would say
        self.store = ms.open_store(state_dir, setting)

    def put_raw(self, env: str, text: str) -> None:
        if self.kind == "file":
            ms.ensure_dirs(self.state_dir)
            with open(ms.record_path(self.state_dir, env), "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            with psycopg.connect(self.setting, autocommit=True) as conn:
                conn.execute("INSERT INTO strackt_move_records (env, move_id, record) VALUES (%s, 'x', %s) "
                             "ON CONFLICT (env) DO UPDATE SET record = EXCLUDED.record", (env, text))


@pytest.fixture(params=["file", "postgresql"])
def harness(request, tmp_path):
    setting = "file" if request.param == "file" else request.getfixturevalue("pg_dsn")
    h = Harness(request.param, str(tmp_path / "state"), setting)
    h.store.ensure()
    yield h
    h.store.close()


def write(store: ms.RecordBackend, how: str, rec: mr.MoveRecord) -> str:
    """``store.create/save/archive(rec)`` under the env's lock, as every writer does (the PostgreSQL
    store refuses a write of a session that does not hold it)."""
    with store.lock(rec.env):
        return getattr(store, how)(rec)


def finished(rec: mr.MoveRecord) -> mr.MoveRecord:
    rec.transition("rollback")
    rec.transition("rolled_back")
    rec.complete("rolled_back")
    return rec


def retained_on(server: str) -> mr.RetainedCopies:
    return mr.RetainedCopies(env="shop", copies=[mr.RetainedCopy(
        server=server, move_id="shop-20261120T120000Z", root="/srv/shop", paths=["/srv/shop/data"],
        retained_at="2026-11-20T12:00:00Z", until="2026-11-27T12:00:00Z")])


def test_the_setting_chooses_the_backend(tmp_path, monkeypatch, pg_dsn):
    monkeypatch.delenv(ms.RECORD_STORE_ENV, raising=False)
    assert isinstance(ms.open_store(str(tmp_path)), ms.FileStore)  # nothing set: the files, as always
    assert isinstance(ms.open_store(str(tmp_path), "file"), ms.FileStore)
    monkeypatch.setenv(ms.RECORD_STORE_ENV, pg_dsn)
    store = ms.open_store(str(tmp_path))
    assert isinstance(store, pg.PostgresStore)
    store.close()
    assert isinstance(ms.open_store(str(tmp_path), "file"), ms.FileStore)  # the option wins over the variable
    with pytest.raises(ValueError, match="neither 'file' nor a PostgreSQL DSN") as refused:
        ms.open_store(str(tmp_path), "mysql:secret")
    assert "secret" not in str(refused.value)


def test_a_task_takes_the_store_from_the_environment_as_an_awx_credential_sets_it(tmp_path, monkeypatch, pg_dsn):
    monkeypatch.setenv(ms.RECORD_STORE_ENV, pg_dsn)
    done = run_work("move_record", move_record.argument_spec(), move_record.work,
                    dict(state_dir=str(tmp_path), env="shop", action="create", source="srv1", target="srv2",
                         source_address="10.77.0.11", target_address="10.77.0.12", commit="a" * 40), False)
    assert done["changed"] and not done.get("failed")
    store = ms.open_store(str(tmp_path), pg_dsn)
    assert store.load("shop").move_id == done["move_id"]
    store.close()
    assert not os.path.exists(ms.moves_dir(str(tmp_path)))  # nothing went to the files


def test_records_round_trip_and_one_move_per_env(harness):
    store = harness.store
    assert store.load("shop") is None and store.list_active() == []
    rec = new_record()
    rec.warn("something odd")
    write(store, "create", rec)
    assert store.load("shop") == rec
    with pytest.raises(mr.MoveInProgress, match="already in progress"):
        write(store, "create", new_record())
    write(store, "save", new_record("shop-x"))
    assert store.list_active() == ["shop", "shop-x"]
    rec.complete("preflight")
    write(store, "save", rec)
    assert store.load("shop").to_dict() == rec.to_dict()


def test_archive_keeps_history_oldest_first_per_env(harness):
    store = harness.store
    first = new_record()
    write(store, "create", first)
    with pytest.raises(mr.TransitionError, match="only done or rolled_back moves are archived"):
        write(store, "archive", first)
    assert store.load("shop") == first  # refused: nothing changed
    write(store, "archive", finished(first))
    assert store.load("shop") is None and store.list_active() == []
    second = new_record(now=T0 + datetime.timedelta(hours=1))
    write(store, "create", second)
    write(store, "archive", finished(second))
    write(store, "create", new_record("shop-x"))
    write(store, "archive", finished(new_record("shop-x")))
    assert store.list_history("shop") == [first.move_id, second.move_id]  # not shop-x's
    assert store.list_history() == [first.move_id, second.move_id, "shop-x-20261125T120000Z"]
    assert store.load_history(second.move_id) == second
    assert store.load_history("shop-20990101T000000Z") is None


def test_retained_copies(harness):
    store = harness.store
    assert store.load_retained("shop") == mr.RetainedCopies(env="shop")
    copies = mr.RetainedCopies(env="shop")
    copies.keep(mr.RetainedCopy(server="srv1", move_id="shop-20261125T120000Z", root="/srv/shop",
                                paths=["/srv/shop/data"], retained_at="2026-11-25T12:00:00Z",
                                until="2026-11-26T12:00:00Z"))
    with store.lock("shop"):  # as every writer (move_record) does
        store.save_retained(copies)
    assert store.load_retained("shop") == copies and store.list_retained() == ["shop"]
    copies.drop("srv1")
    with store.lock("shop"):
        store.save_retained(copies)
    assert store.load_retained("shop").copies == [] and store.list_retained() == []


def test_a_copy_being_retired_refuses_a_new_move_onto_its_server(harness):
    """The retire's claim and the record's creation are decided under one lock on either backend."""
    store = harness.store
    copies = mr.RetainedCopies(env="shop", copies=[mr.RetainedCopy(
        server="srv2", move_id="shop-20261120T120000Z", root="/srv/shop", paths=["/srv/shop/data"],
        retained_at="2026-11-20T12:00:00Z", until="2026-11-27T12:00:00Z")])
    assert copies.claim("srv2", datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc))
    with store.lock("shop"):
        store.save_retained(copies)
    with pytest.raises(mr.RetireInProgress, match="a retire of the old copy of shop on srv2 is in progress"):
        write(store, "create", new_record())
    assert store.load("shop") is None
    copies.drop("srv2")
    with store.lock("shop"):
        store.save_retained(copies)
    write(store, "create", new_record())
    assert store.load("shop") is not None


def test_a_record_that_fails_the_checks_is_refused_naming_where_it_is(harness):
    text = new_record().to_json()
    data = json.loads(text)
    data["target"] = "srv3"  # changed behind the store's back: the checksum no longer fits
    harness.put_raw("shop", json.dumps(data))
    with pytest.raises(mr.RecordError, match="move record: checksum mismatch") as refused:
        harness.store.load("shop")
    assert harness.store.where("shop") in str(refused.value)
    harness.put_raw("shop", new_record("blog").to_json())
    with pytest.raises(mr.RecordError, match="holds env 'blog', not 'shop'"):
        harness.store.load("shop")


def test_bad_names_are_refused_before_the_store_is_asked(harness):
    for env in ("../x", "Shop", "shop'; DROP TABLE strackt_move_records; --"):
        with pytest.raises(ValueError, match="must match"):
            harness.store.load(env)
        with pytest.raises(ValueError, match="must match"):
            with harness.store.lock(env):
                pass
    with pytest.raises(ValueError):
        harness.store.load_history("../../etc/passwd")


# ---- the lock, between processes


def _hold(kind_setting, state_dir, ready, release):
    store = ms.open_store(state_dir, kind_setting)
    with store.lock("shop"):
        ready.set()
        release.wait(30)


def test_the_lock_is_exclusive_waits_and_is_not_reentrant(harness):
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        started = time.monotonic()
        with pytest.raises(ms.RecordLocked, match="another strackt.move run holds the lock of env shop") as busy:
            with harness.store.lock("shop", timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3  # it waited its timeout, then said busy
        if harness.kind == "postgresql":  # who holds it: the holder's session, named by its pid
            assert "strackt-move pid %d on " % holder.pid in str(busy.value)
        with harness.store.lock("blog"):
            pass  # other envs are independent
        releaser = FORK.Process(target=lambda: (time.sleep(0.5), release.set()))
        releaser.start()
        with harness.store.lock("shop", timeout=20):  # waits for the holder to let go
            assert release.is_set()
            releaser.join(10)
            with pytest.raises(ms.RecordLocked):  # not re-entrant, in either store
                with harness.store.lock("shop"):
                    pass
    finally:
        release.set()
        holder.join(20)
    with harness.store.lock("shop"):
        pass


def test_a_holder_killed_with_sigkill_frees_the_lock(harness):
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    assert ready.wait(20)
    with pytest.raises(ms.RecordLocked):
        with harness.store.lock("shop"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(20)
    with harness.store.lock("shop", timeout=10):  # the kernel / the server ended its hold
        pass


def _warn_many(setting, state_dir, who, count, lock_timeout, results):
    """What an AWX job on one execution node does: move_record tasks (action warn), each a
    read-change-save under the record's lock."""
    failures = []
    for i in range(count):
        done = run_work("move_record", move_record.argument_spec(), move_record.work,
                        dict(state_dir=state_dir, record_store=setting, env="shop", action="warn",
                             note="%s-%d" % (who, i), lock_timeout=lock_timeout), False)
        if done.get("failed"):
            failures.append(done["msg"])
    results.put((who, failures))


def test_two_nodes_updating_one_record_lose_no_update(harness):
    write(harness.store, "create", new_record())
    results = FORK.Queue()
    nodes = [FORK.Process(target=_warn_many, args=(harness.setting, harness.state_dir, who, 25, 30, results))
             for who in ("node-a", "node-b")]
    for node in nodes:
        node.start()
    outcome = dict(results.get(timeout=120) for _ in nodes)
    for node in nodes:
        node.join(20)
    assert outcome == {"node-a": [], "node-b": []}
    warnings = harness.store.load("shop").warnings
    assert sorted(warnings) == sorted("%s-%d" % (who, i) for who in ("node-a", "node-b") for i in range(25))


def test_a_task_meeting_a_held_lock_is_refused_busy_and_changes_nothing(harness):
    write(harness.store, "create", new_record())
    before = harness.store.load("shop")
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        done = run_work("move_record", move_record.argument_spec(), move_record.work,
                        dict(state_dir=harness.state_dir, record_store=harness.setting, env="shop",
                             action="warn", note="late", lock_timeout=0.2), False)
    finally:
        release.set()
        holder.join(20)
    assert done["failed"] and "holds the lock of env shop" in done["msg"]
    assert harness.store.load("shop") == before


def test_the_controller_store_on_either_backend(harness):
    store = RecordStore(harness.state_dir, harness.setting)
    ms.create(harness.state_dir, new_record()) if harness.kind == "file" else write(harness.store, "create", new_record())
    after = store.update("shop", lambda r: r.complete("preflight"))
    assert store.load("shop") == after and store.active_envs() == ["shop"]
    store.update("shop", lambda r: finished(r))
    assert store.load("shop") is None and store.latest_history("shop").stage == "rolled_back"
    ready, release = FORK.Event(), FORK.Event()
    write(store.backend, "create", new_record(now=T0 + datetime.timedelta(hours=1)))
    holder = FORK.Process(target=_hold, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        import strackt_move.store as controller_store

        old, controller_store.WRITE_LOCK_TIMEOUT_S = controller_store.WRITE_LOCK_TIMEOUT_S, 0.2
        try:
            with pytest.raises(MoveError) as busy:
                store.update("shop", lambda r: r.warn("x"))
        finally:
            controller_store.WRITE_LOCK_TIMEOUT_S = old
        assert busy.value.code == ExitCode.BUSY
    finally:
        release.set()
        holder.join(20)
        store.close()


# ---- the DSN's password: never in a message, a result, a repr or a run's environment


def test_a_wrong_password_fails_naming_the_store_but_not_the_password(pg_cluster, pg_dsn, capsys):
    from ansible.module_utils.testing import patch_module_args

    wrong = pg_cluster.dsn(password="Wr0ng-s3cret")
    with pytest.raises(ms.StoreUnavailable) as refused:
        ms.open_store("/nonexistent", wrong).load("shop")
    text = str(refused.value)
    assert "Wr0ng-s3cret" not in text and "password authentication failed" in text
    assert "postgresql://strackt@%s:5432/postgres" % pg_cluster.base in text
    # as a module (what AWX jobs print): the failure and the echoed arguments hide it
    with patch_module_args(dict(state_dir="/nonexistent", env="shop", action="get", record_store=wrong)):
        with pytest.raises(SystemExit):
            move_record.main()
    out = capsys.readouterr().out
    assert json.loads(out)["failed"] and "Wr0ng-s3cret" not in out
    with pytest.raises(ms.StoreUnavailable) as unparsable:
        ms.open_store("/nonexistent", "host=x password='Wr0ng-s3cret")
    assert "Wr0ng-s3cret" not in str(unparsable.value) and "cannot be parsed" in str(unparsable.value)
    assert "Wr0ng-s3cret" not in repr(ms.open_store("/nonexistent", wrong))


def test_the_controller_keeps_the_password_out_of_settings_and_playbook_runs(pg_cluster, pg_dsn, monkeypatch, tmp_path):
    from strackt_move import settings
    from strackt_move.playbook_run import record_store_env

    monkeypatch.setenv(ms.RECORD_STORE_ENV, pg_dsn)
    resolved = settings.resolve(str(tmp_path / "state"), None)
    assert resolved.record_store == pg_dsn and PASSWORD not in repr(resolved)
    with record_store_env(resolved.record_store, resolved.state_dir) as env:
        assert PASSWORD not in json.dumps(env)  # what ansible-runner writes to artifacts/command
        passfile = env["PGPASSFILE"]
        assert os.stat(passfile).st_mode & 0o777 == 0o600
        # in the state directory, in a directory only its owner enters (not the shared /tmp)
        assert Path(passfile).parent == resolved.state_dir / "pgpass"
        assert os.stat(Path(passfile).parent).st_mode & 0o777 == 0o700
        # a playbook's task, given only this environment, reaches the store with the password
        monkeypatch.setenv("PGPASSFILE", passfile)
        store = ms.open_store("/nonexistent", env[ms.RECORD_STORE_ENV])
        assert store.list_active() == []
        store.close()
    assert not os.path.exists(passfile)  # gone when the run ends
    with record_store_env("file", resolved.state_dir) as env:
        assert env == {ms.RECORD_STORE_ENV: ""}  # the default: nothing for no_log to mask (below)


def test_a_passfile_a_killed_controller_left_behind_goes_when_the_next_run_starts(pg_dsn, tmp_path):
    """SIGKILL gives the controller no chance to remove its run's passfile: the next run removes the
    passfiles of controllers that are gone, and keeps those of controllers still running."""
    from strackt_move.playbook_run import record_store_env

    state = tmp_path / "state"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)  # a process that has ended
    directory = state / "pgpass"
    directory.mkdir(parents=True, mode=0o700)
    left = [directory / ("%d-0123abcd" % dead_pid), directory / (".%d-4567cdef.x1y2.tmp" % dead_pid)]
    live = directory / ("%d-89abcdef" % os.getppid())  # a controller still running
    for path in (*left, live):
        path.write_text("*:*:*:*:secret\n")
    with record_store_env(pg_dsn, state) as env:
        assert Path(env["PGPASSFILE"]).exists()
        assert not any(p.exists() for p in left) and live.exists()
    assert not Path(env["PGPASSFILE"]).exists() and live.exists()


def test_a_module_of_a_run_on_the_file_store_masks_nothing_in_its_result(tmp_path):
    """record_store is no_log (a DSN may hold a password) and falls back to $STRACKT_RECORD_STORE:
    had the controller exported 'file', Ansible would mask every 'file' in the module's result
    (env 'profiles' came back as 'pro********s'). It exports an empty value, which is the file
    store and masks nothing, also over a 'file' the controller itself inherited."""
    from strackt_move.playbook_run import record_store_env

    collections = Path(__file__).resolve().parents[2] / "collections"
    module = collections / "ansible_collections/strackt/move/plugins/modules/move_record.py"
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(
        state_dir=str(tmp_path / "state"), env="profiles", action="create", source="srv1", target="srv2",
        source_address="10.77.0.11", target_address="10.77.0.12", commit="a" * 40)}))
    with record_store_env(ms.FILE_STORE, tmp_path / "state") as env:
        proc = subprocess.run([sys.executable, str(module), str(args)], capture_output=True, text=True, check=False,
                              env={**os.environ, ms.RECORD_STORE_ENV: "file", **env, "PYTHONPATH": str(collections)})
    done = json.loads(proc.stdout)
    assert done["changed"] and not done.get("failed"), done
    assert done["record"]["env"] == "profiles" and done["move_id"].startswith("profiles-")
    assert "********" not in proc.stdout
    assert ms.load(str(tmp_path / "state"), "profiles").move_id == done["move_id"]  # the file store has it


def test_without_psycopg_the_task_fails_naming_what_to_install(monkeypatch, pg_dsn, tmp_path):
    monkeypatch.setattr(pg, "psycopg", None)
    done = run_work("move_record", move_record.argument_spec(), move_record.work,
                    dict(state_dir=str(tmp_path), record_store=pg_dsn, env="shop", action="get"), False)
    assert done["failed"] and "Failed to import the required Python library (psycopg)" in done["msg"]
    assert "pip install 'psycopg[binary]" in done["msg"] and PASSWORD not in done["msg"]
    # the file store needs no driver
    assert not run_work("move_record", move_record.argument_spec(), move_record.work,
                        dict(state_dir=str(tmp_path), env="shop", action="get"), False).get("failed")
    with pytest.raises(MoveError) as refused:
        RecordStore(tmp_path, pg_dsn).load("shop")
    assert refused.value.code == ExitCode.FAILED and "psycopg" in refused.value.problem


def test_strackt_move_status_reads_the_store_the_environment_names(tmp_path, monkeypatch, capsys, pg_dsn):
    from strackt_move import cli

    store = ms.open_store(str(tmp_path), pg_dsn)
    write(store, "create", new_record())
    store.close()
    monkeypatch.setenv(ms.RECORD_STORE_ENV, pg_dsn)
    assert cli.run(["status", "--state-dir", str(tmp_path / "elsewhere"), "--json"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "shop-20261125T120000Z" in out and PASSWORD not in out
    monkeypatch.setenv(ms.RECORD_STORE_ENV, "file")  # the files of that state dir hold no move
    assert cli.run(["status", "--state-dir", str(tmp_path / "elsewhere"), "--json"]) == ExitCode.OK
    assert "shop-20261125T120000Z" not in capsys.readouterr().out


# ---- evacuations: their record, archive, abort request and lock (what the jobs of an AWX
# evacuation workflow share when they run on different execution nodes)


def _evacuation(server: str = "srv1", started_at: str = "2026-11-25T12:00:00Z") -> Evacuation:
    return Evacuation(server=server, started_at=started_at, targets=["srv2", "srv3"], parallel=2, confirm="plan",
                      moves=[PlannedMove("shop", "srv2", 1024, 64), PlannedMove("blog", "srv3")])


def _other_node(harness, tmp_path) -> str:
    """The state directory a job on another node would have: its own disk with the PostgreSQL store
    (the records are in the database), the same directory with the file store (one node)."""
    return str(tmp_path / "other-node") if harness.kind == "postgresql" else harness.state_dir


def test_evacuation_records_round_trip_abort_and_archive(harness, tmp_path):
    evacs = EvacuationStore(Path(harness.state_dir), RecordStore(harness.state_dir, harness.setting))
    other = EvacuationStore(Path(_other_node(harness, tmp_path)), RecordStore(_other_node(harness, tmp_path), harness.setting))
    assert evacs.load("srv1") is None and evacs.active() == [] and evacs.abort_requested("srv1") is None
    evac = _evacuation()
    evacs.save(evac)
    assert other.load("srv1") == evac and other.active() == ["srv1"]  # the report job reads what evacuate wrote
    other.request_abort("srv1", rollback=True)  # the abort job, on its node
    evac.move_of("shop").move_id = "shop-20261125T120100Z"
    evacs.save(evac)  # the running evacuation saves on: the request stays
    assert evacs.load("srv1") == evac and evacs.abort_requested("srv1")["rollback"] is True
    evac.state, evac.finished_at = "aborted", "2026-11-25T13:00:00Z"
    where = evacs.archive(evac)
    assert "srv1-20261125T120000Z" in where
    assert other.load("srv1") is None and other.active() == [] and other.abort_requested("srv1") is None
    assert other.history_ids("srv1") == ["srv1-20261125T120000Z"] and other.load_history("srv1-20261125T120000Z") == evac
    evacs.save(_evacuation("srv1-b", "2026-11-26T08:00:00Z"))  # a server whose name starts like srv1's
    evacs.archive(_evacuation("srv1-b", "2026-11-26T08:00:00Z"))
    later = _evacuation(started_at="2026-11-27T08:00:00Z")
    evacs.save(later)
    evacs.archive(later)
    assert evacs.history_ids("srv1") == ["srv1-20261125T120000Z", "srv1-20261127T080000Z"]  # oldest first, srv1's only
    assert evacs.history_ids("srv1-b") == ["srv1-b-20261126T080000Z"]
    if harness.kind == "file":  # the files exactly where they always were
        assert sorted(os.listdir(os.path.join(harness.state_dir, "evacuations", "history"))) == [
            "srv1-20261125T120000Z.json", "srv1-20261127T080000Z.json", "srv1-b-20261126T080000Z.json"]


def test_an_evacuation_record_that_fails_its_checks_is_refused_naming_where_it_is(harness):
    evacs = EvacuationStore(Path(harness.state_dir), RecordStore(harness.state_dir, harness.setting))
    bad = json.dumps(_evacuation().to_dict() | {"schema_version": 99})
    if harness.kind == "file":
        os.makedirs(os.path.join(harness.state_dir, "evacuations"), exist_ok=True)
        with open(ms.evacuation_path(harness.state_dir, "srv1"), "w", encoding="utf-8") as fh:
            fh.write(bad)
    else:
        with psycopg.connect(harness.setting, autocommit=True) as conn:
            conn.execute("INSERT INTO strackt_evacuations (server, record) VALUES ('srv1', %s)", (bad,))
    with pytest.raises(MoveError) as refused:
        evacs.load("srv1")
    assert refused.value.code == ExitCode.FAILED and "unknown schema_version 99" in str(refused.value)
    assert harness.store.where_evacuation("srv1") in str(refused.value)  # it names where it is
    for name in ("../srv1", "", "-srv1", "srv1/x"):  # nothing that could leave the state directory
        with pytest.raises(MoveError) as usage:
            evacs.load(name)
        assert usage.value.code == ExitCode.USAGE and "server name" in str(usage.value)
    with pytest.raises(EnvNameError):
        harness.store.load_evacuation_history("srv1-yesterday")


def _hold_evacuation(setting, state_dir, ready, release):
    store = ms.open_store(state_dir, setting)
    lock = store.evacuation_lock("srv1", "evacuate srv1")
    lock.acquire()
    ready.set()
    release.wait(30)
    lock.release()


def _refuse_to_run(*_args):
    pytest.fail("a refused evacuation runs no playbook (not even its plan)")


def test_a_second_evacuation_of_one_server_is_refused_from_another_node(harness, tmp_path, monkeypatch, capsys):
    from strackt_move import cli

    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_evacuation, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    node = _other_node(harness, tmp_path)
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    monkeypatch.setenv(ms.RECORD_STORE_ENV, harness.setting)
    try:
        assert ready.wait(20)
        assert cli.run(["--state-dir", node, "-i", str(inventory), "evacuate", "srv1", "--yes"],
                       runner_factory=lambda s: _refuse_to_run) == ExitCode.BUSY
        err = capsys.readouterr().err
        assert "the evacuation of srv1 is driven by evacuation (pid %d" % holder.pid in err
        assert PASSWORD not in err
        with pytest.raises(LockBusy):
            harness.store.evacuation_lock("srv1", "evacuate srv1").acquire(timeout=0.3)
        with harness.store.evacuation_lock("srv2", "evacuate srv2"):
            pass  # other servers are independent
        with harness.store.lock("srv1"):
            pass  # and so is an env that happens to share the server's name: another key space
        assert EvacuationStore(Path(node), RecordStore(node)).active() == []  # the refused one wrote nothing
        if harness.kind == "postgresql":
            with psycopg.connect(harness.setting, autocommit=True) as conn:
                spaces = conn.execute("SELECT l.objsubid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                                      "WHERE l.locktype = 'advisory' AND a.application_name LIKE %s",
                                      ("strackt-move pid %d on %%" % holder.pid,)).fetchall()
            assert spaces == [(2,)]  # the two-int4 key space: never an env's (bigint) lock
    finally:
        release.set()
        holder.join(20)
    lock = harness.store.evacuation_lock("srv1", "evacuate srv1")
    lock.acquire(timeout=10)  # released: the next one drives it
    with pytest.raises(RuntimeError):  # not re-entrant
        lock.acquire()
    lock.release()


def test_an_evacuation_holder_killed_with_sigkill_frees_its_lock(harness):
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_evacuation, args=(harness.setting, harness.state_dir, ready, release))
    holder.start()
    assert ready.wait(20)
    with pytest.raises(LockBusy):
        harness.store.evacuation_lock("srv1", "evacuate srv1").acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(20)
    lock = harness.store.evacuation_lock("srv1", "evacuate srv1")
    lock.acquire(timeout=10)  # the kernel / the server ended its hold
    lock.release()


def _end_this_process_sessions(pg_dsn: str) -> None:
    """What a database restart or an admin does to the store's session."""
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                      ("strackt-move pid %d on %%" % os.getpid(),))


@pytest.mark.parametrize("lost", ["between statements", "inside an env lock"])
def test_a_lost_session_never_goes_on_without_its_evacuation_lock(pg_dsn, tmp_path, lost):
    """The evacuation lock lives as long as the session: when the database ends the session (a
    restart, an admin), the holder stops instead of going on unlocked on a new session. Also when
    the loss is met giving back an env's lock at the end of its block (that give-back fails
    quietly: what the block wrote, it wrote under the lock), which once opened a new session and
    forgot the evacuation lock."""
    store = ms.open_store(str(tmp_path), pg_dsn)
    lock = store.evacuation_lock("srv1", "evacuate srv1")
    lock.acquire()
    if lost == "between statements":
        _end_this_process_sessions(pg_dsn)
        with pytest.raises(ms.StoreUnavailable, match="terminating connection"):
            store.load_evacuation("srv1")  # the statement that meets the loss
    else:
        with store.lock("shop"):
            _end_this_process_sessions(pg_dsn)
    for _ in range(2):  # and every one after, until the lock is given back: no new session without it
        with pytest.raises(ms.StoreUnavailable, match="strackt-move/evacuation/srv1 was lost"):
            store.load_evacuation("srv1")
    other = ms.open_store(str(tmp_path / "other-node"), pg_dsn)
    taken = other.evacuation_lock("srv1", "evacuate srv1")
    taken.acquire(timeout=10)  # it is free for the next driver ...
    with pytest.raises(ms.StoreUnavailable, match="strackt-move/evacuation/srv1 was lost"):
        store.save_evacuation("srv1", "{}")  # ... and the first one writes nothing more
    lock.release()
    assert store.load_evacuation("srv1") is None  # given back: the store works again, on a new session
    taken.release()
    other.close()
    store.close()


def test_closing_the_store_gives_back_its_locks_and_a_new_session_starts_clean(pg_dsn, tmp_path):
    """An explicit close ends the session and what it held: the store is usable again at once."""
    store = ms.open_store(str(tmp_path), pg_dsn)
    lock = store.evacuation_lock("srv1", "evacuate srv1")
    lock.acquire()
    store.close()
    assert store.load_evacuation("srv1") is None
    other = ms.open_store(str(tmp_path / "other-node"), pg_dsn)
    other.evacuation_lock("srv1", "evacuate srv1").acquire()  # freed by the close
    lock.release()
    other.close()
    store.close()


def test_no_test_inherits_the_developers_record_store():
    """conftest's autouse fixture: a STRACKT_RECORD_STORE in the shell that runs the tests (a
    developer's real database) never reaches a test; tests that want a store set it themselves."""
    assert ms.RECORD_STORE_ENV not in os.environ
    assert isinstance(ms.open_store("/nonexistent"), ms.FileStore)


def test_a_node_cut_off_from_the_database_notices_it_as_soon_as_the_server_frees_its_locks(pg_dsn):
    """The server drops a lost node's session (and locks) after about a minute of keepalives; the
    node's own side has libpq's keepalives and TCP user timeout, so its connection fails within
    about as long instead of when the kernel gives up (many minutes). The DSN's own values win;
    a Unix socket needs none."""
    remote = pg.connect_options(pg._conninfo("postgresql://strackt@db.example:5432/moves"))
    assert {k: remote[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                   "tcp_user_timeout")} == dict(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                                                                keepalives_count=3, tcp_user_timeout=60000)
    assert remote["sslmode"] == "verify-full" and remote["connect_timeout"] == pg.CONNECT_TIMEOUT_S
    own = pg.connect_options(pg._conninfo("host=db.example dbname=moves keepalives_idle=5 tcp_user_timeout=9000"))
    assert "keepalives_idle" not in own and "tcp_user_timeout" not in own and own["keepalives_count"] == 3
    local = pg.connect_options(pg._conninfo(pg_dsn))
    assert not any(k.startswith(("keepalives", "tcp_")) for k in local) and "sslmode" not in local
    # libpq knows every one of them (it refuses an option it does not know)
    with psycopg.connect(pg_dsn, **pg.CLIENT_KEEPALIVES) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_session_without_the_env_lock_writes_no_record(pg_dsn, tmp_path):
    """The lock is a session's: behind a pooler in transaction mode (PgBouncer pool_mode=transaction)
    the lock taken by one statement stays on one server connection while the next statement may
    run on another, without it. A save or archive there is refused and changes nothing. Stood in
    for by giving the store a second session of its own after it took the lock."""
    store = ms.open_store(str(tmp_path), pg_dsn)
    first = new_record()
    write(store, "create", first)
    with pytest.raises(ms.StoreUnavailable, match="does not hold the lock of env shop.*pool_mode=transaction"):
        store.save(new_record())  # no lock taken at all
    with store.lock("shop"):
        pooled = store._conn
        store._conn = psycopg.connect(pg_dsn, autocommit=True)  # the pooler's next server connection
        try:
            later = new_record()
            later.warn("written without the lock")
            with pytest.raises(ms.StoreUnavailable, match="does not hold the lock of env shop"):
                store.save(later)
            with pytest.raises(ms.StoreUnavailable, match="does not hold the lock of env shop"):
                store.archive(finished(new_record()))
            for copies in (retained_on("srv1"), mr.RetainedCopies(env="shop")):  # a save, a forget
                with pytest.raises(ms.StoreUnavailable, match="retained copies of shop refused: this session"):
                    store.save_retained(copies)
        finally:
            store._conn.close()
            store._conn = pooled
    assert store.load("shop") == first and store.list_history() == []  # nothing changed
    assert store.list_retained() == []
    write(store, "archive", finished(first))  # with the lock on its own session: written
    assert store.list_history() == [first.move_id]
    store.close()
