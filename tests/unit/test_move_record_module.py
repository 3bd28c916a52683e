"""strackt.move.move_record as Ansible runs it: arguments in, JSON out, the record on disk."""

from __future__ import annotations

import json
import re

import pytest
from ansible.module_utils.testing import patch_module_args
from controller_testlib import new_record, walk_to

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.modules import move_record
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import run_work

SECOND = 1_795_608_000  # 2026-11-25T12:00:00Z


@pytest.fixture(params=["module", "action plugin"])
def way(request):
    return request.param


@pytest.fixture(params=["file", "postgresql"])
def record_store(request):
    """Either record store: the file store as every task has it by default (no record_store
    given), and the PostgreSQL store (tests/unit/pg_cluster.py) named by the option."""
    return None if request.param == "file" else request.getfixturevalue("pg_dsn")


@pytest.fixture
def call(way, record_store, tmp_path, capsys):
    """Run move_record as a module (a payload, as on a host) and as its action plugin (in
    Ansible's worker, as tasks on the control node run it), on either record store: the same
    arguments must give the same result and the same record in the store."""
    state = str(tmp_path / "state")
    store = ms.open_store(state, record_store or "file")

    def run(action: str, env: str = "shop", check_mode: bool = False, **args) -> dict:
        args = {"state_dir": state, "env": env, "action": action, **args}
        if record_store is not None:
            args["record_store"] = record_store
        if way == "module":
            with patch_module_args({**args, "_ansible_check_mode": check_mode}):
                with pytest.raises(SystemExit):
                    move_record.main()
            result = json.loads(capsys.readouterr().out)
        else:
            done = run_work("move_record", move_record.argument_spec(), move_record.work, args, check_mode)
            result = json.loads(json.dumps(done))
        result["_on_disk"] = store.load(env) if env == "shop" else None
        return result

    run.state = state
    run.store = store
    yield run
    store.close()


CREATE = dict(source="srv1", target="srv2", source_address="10.77.0.11", target_address="10.77.0.12",
              commit="a" * 40)


def test_admit_then_create_then_admit_refuses(call):
    assert call("admit", source="srv1", target="srv2")["record"] is None
    created = call("create", **CREATE, source_commit="b" * 40)
    assert created["changed"] and created["exists"]
    assert created["record"]["warnings"] == [
        "the source runs commit %s, the move deploys %s (the top of the branch)" % ("b" * 40, "a" * 40)]
    refused = call("admit", source="srv1", target="srv2")
    assert refused["failed"] and refused["msg"].startswith("a move of shop is already in progress: shop-")
    assert refused["record"]["move_id"] == created["move_id"]
    again = call("create", **CREATE)
    assert again["failed"] and "already in progress" in again["msg"]
    # the controller repeating an interrupted preflight takes the record over, unchanged
    resumed = call("admit", source="srv1", target="srv2", resume=True)
    assert not resumed.get("failed") and resumed["record"]["move_id"] == created["move_id"]
    taken = call("create", **CREATE, resume=True)
    assert taken["changed"] is False and taken["move_id"] == created["move_id"]
    assert call("admit", source="srv1", target="srv3", resume=True)["failed"]
    # a preflight that failed (or whose run died) is started again, then completes
    call("stage", stage="preflight", event="failed", note="interrupted by a signal")
    retried = call("create", **CREATE, resume=True)
    assert retried["changed"] and retried["_on_disk"].is_open("preflight")
    assert [e["event"] for e in retried["record"]["history"]] == ["started", "failed", "started"]
    assert not call("stage", stage="preflight", event="completed").get("failed")


def test_a_bad_env_name_is_refused_before_any_file(call, tmp_path):
    result = call("get", env="../etc")
    assert result["failed"] and "must match" in result["msg"]
    assert not (tmp_path / "state").exists()


def _to_sync(call):
    call("create", **CREATE)
    call("stage", stage="preflight", event="completed")
    for stage in ("provision", "deploy", "sync"):
        call("stage", stage=stage)
        call("stage", stage=stage, event="completed")


def test_events_follow_the_state_machine_and_a_repeat_is_refused(call):
    _to_sync(call)
    before = call("get")["record"]["history"]
    # each event has one writer (the stage's role): a second completion is an error, not a no-op
    repeat = call("stage", stage="sync", event="completed")
    assert repeat["failed"] and "not running" in repeat["msg"]
    assert call("get")["record"]["history"] == before
    # anything else out of order stays an error
    wrong = call("stage", stage="deploy", event="completed")
    assert wrong["failed"] and "at stage sync" in wrong["msg"]
    call("stage", stage="verify")
    call("stage", stage="verify", event="failed", note="manifest differs")
    late = call("stage", stage="verify", event="completed")
    assert late["failed"] and "not running" in late["msg"]
    # a retry after a failure is an ordinary start
    retry = call("stage", stage="verify")
    assert retry["changed"] and retry["_on_disk"].is_open("verify")


def test_add_pass_keeps_started_at_ns_and_get_returns_the_instants(call):
    _to_sync(call)
    ns = SECOND * 10**9 + 999_999_999  # the last ns of its second
    figures = {"duration_s": 1.23456, "files_changed": 3, "bytes_changed": 300, "files_total": 10,
               "bytes_total": 1000, "started_at_ns": ns, "started_at": "2026-11-25T12:00:01Z",  # rounded up
               "kind": "incremental", "mode": "incremental", "changed": True}
    added = call("add_pass", figures=figures)
    p = added["record"]["sync_passes"][-1]
    assert p["started_at"] == "2026-11-25T12:00:00Z"  # derived from the ns: one instant
    assert p["started_at_ns"] == ns and p["duration_s"] == 1.235
    got = call("get")
    assert got["last_pass_started_ns"] == ns and got["target_writes_since_ns"] == ns
    assert got["summary"]["sync"]["passes"] == 1
    bad = call("add_pass", figures={"duration_s": 1})
    assert bad["failed"] and "figures is not a pass result" in bad["msg"]
    # a pass recorded without ns: the instant to the second
    call("add_pass", figures={"duration_s": 1, "files_changed": 0, "bytes_changed": 0, "files_total": 1,
                              "bytes_total": 1, "started_at": "2026-11-25T12:05:00Z"})
    assert call("get")["last_pass_started_ns"] == (SECOND + 300) * 10**9


FREEZE = {"changed": True, "forwarding": True, "freeze_s": 0.8, "drain_s": 0.2, "stop_s": 0.1,
          "final_sync_s": 0.4, "forwarder_s": 0.1, "frozen_at_ns": SECOND * 10**9 + 1,
          "released_at_ns": SECOND * 10**9 + 800_000_001, "sync_pass": {"files_changed": 1}}


def _at_cutover(call):
    _to_sync(call)
    call("add_pass", figures={"duration_s": 1, "files_changed": 0, "bytes_changed": 0, "files_total": 1,
                              "bytes_total": 1, "started_at_ns": SECOND * 10**9})
    call("stage", stage="verify")
    call("stage", stage="verify", event="completed")
    assert call("wait")["record"]["state"] == "waiting"
    call("stage", stage="cutover", note="confirmed by the operator")


def test_set_freeze_once_and_target_writes_since_its_release(call):
    _at_cutover(call)
    first = call("set_freeze", figures=FREEZE)
    assert first["changed"] and first["record"]["freeze"]["held_at_ns"] == FREEZE["frozen_at_ns"]
    assert first["target_writes_since_ns"] == FREEZE["released_at_ns"]
    assert first["summary"]["freeze"]["freeze_s"] == 0.8
    assert call("set_freeze", figures=FREEZE)["changed"] is False
    other = dict(FREEZE, released_at_ns=FREEZE["released_at_ns"] + 5)
    refused = call("set_freeze", figures=other)
    assert refused["failed"] and "already recorded a freeze" in refused["msg"]
    assert call("get")["record"]["freeze"]["released_at_ns"] == FREEZE["released_at_ns"]
    assert call("set_freeze", figures=other, replace=True)["changed"]
    repeated_freeze = call("set_freeze", figures={"changed": False, "forwarding": True})
    assert repeated_freeze["failed"] and "released_at_ns is missing" in repeated_freeze["msg"]


def test_check_mode_changes_nothing(call):
    _at_cutover(call)
    before = call("get")["record"]
    assert call("set_freeze", figures=FREEZE, check_mode=True)["changed"] is True
    assert call("get")["record"] == before


def test_bad_arguments_are_refused_alike(call):
    missing = call("stage")
    assert missing["failed"] and missing["msg"] == "action=stage needs stage"
    bad_choice = call("stage", stage="teleport")
    assert bad_choice["failed"] and "stage" in bad_choice["msg"] and "teleport" in bad_choice["msg"]
    unknown = call("get", bogus=1)
    # the module's own name (basic.py when a test imports it, as Ansible does not)
    assert unknown["failed"] and re.match(r"Unsupported parameters for \((move_record|basic\.py)\) module: bogus\. "
                                          r"Supported parameters include: action, ", unknown["msg"]), unknown["msg"]
    bad_name = call("get", env="../etc")
    assert bad_name["failed"] and "../etc" in bad_name["msg"]


def test_get_without_a_record(call):
    got = call("get")
    assert (got["record"], got["exists"], got["overdue"], got["last_pass_started_ns"],
            got["target_writes_since_ns"]) == (None, False, False, None, None)
    required = call("get", require=True)
    assert required["failed"] and "has no move in progress" in required["msg"]


def test_get_flags_a_move_waiting_too_long(call):
    _to_sync(call)
    call("stage", stage="verify")
    call("stage", stage="verify", event="completed")
    call("wait")
    assert call("get")["overdue"] is False
    with call.store.lock("shop"):
        rec = call.store.load("shop")
        rec.waiting_since = "2020-01-01T00:00:00Z"  # long ago
        call.store.save(rec)
    assert call("get", wait_warn_hours=24.0 * 365 * 100)["overdue"] is False
    stale = call("get")
    assert stale["overdue"] is True and stale["summary"]["stale"] is True
    assert stale["summary"]["as_of"] == clock.format_ts(clock.parse_ts(stale["summary"]["as_of"]))


def test_check_backup_and_abandon_cutover_actions(call):
    _to_sync(call)
    call("stage", stage="verify")
    call("stage", stage="verify", event="completed")
    call("wait")
    call("stage", stage="cutover")
    missing = call("check", check_name="data_check", stage="cutover")
    assert missing["failed"] and missing["msg"] == "action=check needs ok"
    done = call("check", check_name="data_check", stage="cutover", ok=True, note="12 compared, 0 repaired",
                details={"repaired": []})
    assert done["changed"] and done["summary"]["checks"][0]["summary"] == "12 compared, 0 repaired"
    backup = call("backup", server="srv1", path="/srv/shop/.strackt-backup/x", files=3)
    assert backup["summary"]["backups"] == [dict(backup["record"]["backups"][0])]
    assert backup["record"]["backups"][0]["files"] == 3
    assert call("backup", server="srv1", path="/srv/shop/.strackt-backup/x")["changed"] is False
    waiting = call("abandon_cutover", note="the final pass would take 9 s")
    assert (waiting["record"]["stage"], waiting["record"]["state"]) == ("awaiting_confirmation", "waiting")
    assert waiting["summary"]["released"] is False


def _switched(store: ms.RecordBackend) -> None:
    rec = walk_to(new_record(), "awaiting_confirmation")
    for stage in ("cutover", "switched"):
        rec.transition(stage)
        rec.complete(stage)
    with store.lock(rec.env):
        store.save(rec)


FORWARDING = {"min_s": 3600, "quiet_s": 900, "max_s": 72 * 3600}
NO_LOG = {"measured_at": "2026-11-30T10:00:00Z", "since": "2026-11-30T09:00:00Z", "total": 0, "last_seen": None,
          "per_minute": [], "log_found": False}


def test_a_finish_that_began_completes_without_a_new_measurement_and_bars_a_rollback(call):
    """A finish stops the forwarding and closes the old site before it archives the record: run
    again after dying in between, it must complete (the old site it would measure is gone, which
    alone would make it wait for forwarding.max), and a rollback must not send visitors back."""
    _switched(call.store)
    waiting = call("set_stale", figures=NO_LOG, forwarding=FORWARDING)
    assert waiting["finish_decision"]["due"] is False and "finishing_since" not in waiting["_on_disk"].to_dict()
    begun = call("set_stale", figures=NO_LOG, forwarding=FORWARDING, operator_now=True)
    assert begun["changed"] and begun["finish_decision"]["due"] is True
    since = begun["_on_disk"].finishing_since
    assert since is not None and begun["record"]["finishing_since"] == since
    again = call("set_stale", figures={}, forwarding=FORWARDING)  # the role skips the measurement
    assert not again.get("failed") and again["finish_decision"]["due"] is True
    assert "its finish began at %s" % since in again["finish_decision"]["why"]
    assert again["_on_disk"].finishing_since == since and not again["changed"]
    refused = call("stage", stage="rollback")
    assert refused["failed"] and "the finish of move" in refused["msg"] and "finish shop --now" in refused["msg"]
    assert call("get")["record"]["stage"] == "switched"


def test_a_measurement_is_needed_until_the_finish_began(call):
    _switched(call.store)
    missing = call("set_stale", figures={}, forwarding=FORWARDING)
    assert missing["failed"] and "needs figures" in missing["msg"]


def test_create_records_the_envs_forwarding_settings_for_the_finish_before_its_first_measurement(call):
    """The preflight passes the env's forwarding settings: a status before the first finish judges by
    them (here the testbed's 10 min max), not by the default 72 h."""
    testbed = {"min_s": 0, "quiet_s": 10, "max_s": 600}
    created = call("create", **CREATE, forwarding=testbed)
    assert created["record"]["forwarding"] == testbed and created["_on_disk"].forwarding == testbed
    bad = call("create", env="shop2", **CREATE, forwarding={"min_s": 0, "quiet_s": "soon", "max_s": 600})
    assert bad["failed"] and "forwarding" in bad["msg"], bad


def test_the_move_is_switched_and_its_switch_time_recorded_in_one_write(call):
    """The cutover records "switched" with one call once the cutover completed: a run killed
    between marking the move switched and recording its switch time left a record at switched
    without one, which no finish could ever end (make test of 2026-12-02, SIGKILL right after the
    DNS update)."""
    _at_cutover(call)
    call("stage", stage="cutover", event="completed")
    switched = call("stage", stage="switched", event="completed", note="shop serves from srv2")
    assert not switched.get("failed"), switched
    on_disk = switched["_on_disk"]
    assert (on_disk.stage, on_disk.state) == ("switched", "running") and on_disk.switched_at
    assert [(e.stage, e.event) for e in on_disk.history[-2:]] == [("switched", "started"), ("switched", "completed")]
    again = call("stage", stage="switched", event="completed")
    assert not again.get("failed") and not again["changed"] and again["_on_disk"].switched_at == on_disk.switched_at


def test_a_finish_completes_a_switch_whose_time_a_killed_run_left_unrecorded(call):
    """A record an earlier version left at switched without its switch time (the run killed
    between its two writes): the finish records the switch now instead of refusing for ever. The
    later instant only makes the finish wait longer for resolvers' caches, never shorter."""
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    with call.store.lock(rec.env):
        call.store.save(rec)
    decided = call("set_stale", figures=NO_LOG, forwarding=FORWARDING)
    assert not decided.get("failed"), decided["msg"]
    assert decided["_on_disk"].switched_at and decided["finish_decision"]["due"] is False
