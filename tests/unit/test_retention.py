"""The old copy after a move (issue 14): its retention in the env definition, the record of retained
copies (move_record.RetainedCopies, move_store), move_record's retain/unretain, and the module that
looks at or removes the copy on a server (module_utils/retention.py, modules/retained_copy.py)."""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest
from controller_testlib import new_record, walk_to
from test_environment import SERVERS, shop

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils import retention
from ansible_collections.strackt.move.plugins.module_utils.environment import (
    EnvironmentDefinitionError,
    parse_environment,
)
from ansible_collections.strackt.move.plugins.modules import move_record
from ansible_collections.strackt.move.plugins.modules.retained_copy import CopyRefused, handle
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import run_work

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)

# ---- the env definition's retention


@pytest.mark.parametrize("value, seconds", [(None, 7 * 86400), ("7d", 7 * 86400), ("36h", 36 * 3600),
                                            ("30s", 30), (45, 45), ("15m", 900)])
def test_retention_parses_like_forwarding(value, seconds):
    entry = shop()
    if value is not None:
        entry["retention"] = value
    env = parse_environment("shop", entry, SERVERS)
    assert env.retention_s == seconds
    assert env.to_dict()["retention_s"] == seconds


@pytest.mark.parametrize("value, fragment", [("soon", "'soon' is not a duration"), (0, "must be more than 0"),
                                             ("0d", "must be more than 0"), (True, "is not a duration"),
                                             (-3, "is negative")])
def test_bad_retention_is_named_with_what_to_do(value, fragment):
    entry = shop()
    entry["retention"] = value
    with pytest.raises(EnvironmentDefinitionError) as info:
        parse_environment("shop", entry, SERVERS)
    [problem] = info.value.problems
    assert problem.startswith("strackt_environments.shop.retention: ") and fragment in problem


def test_the_copy_is_the_app_and_the_data_paths():
    entry = shop()
    entry["data_paths"] = ["/srv/shop/data", "/srv/shop/media"]
    env = parse_environment("shop", entry, SERVERS)
    assert env.to_dict()["retained_paths"] == ["/srv/shop/app", "/srv/shop/data", "/srv/shop/media"]


# ---- the record of retained copies


def a_copy(server: str = "srv1", until: str = "2026-12-02T12:00:00Z", move_id: str = "shop-20261125T120000Z"):
    return mr.RetainedCopy(server=server, move_id=move_id, root="/srv/shop",
                           paths=["/srv/shop/app", "/srv/shop/data"], retained_at="2026-11-25T12:00:00Z", until=until)


def test_retained_copies_round_trip_0600_and_empty_removes_the_file(tmp_path):
    state = str(tmp_path / "state")
    assert ms.load_retained(state, "shop").copies == []
    kept = mr.RetainedCopies(env="shop")
    assert kept.keep(a_copy()) and not kept.keep(a_copy())
    path = ms.save_retained(state, kept)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ms.retained_dir(state)).st_mode) == 0o700
    assert ms.load_retained(state, "shop") == kept
    assert ms.list_retained(state) == ["shop"]
    assert kept.drop("srv1") and not kept.drop("srv1")
    ms.save_retained(state, kept)
    assert not os.path.exists(path) and ms.list_retained(state) == []


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["copies"][0].update(until="2026-12-09T12:00:00Z"), "checksum mismatch"),
    (lambda d: d.update(schema_version=2), "unsupported schema_version 2"),
    (lambda d: d.update(extra=1), "unknown field"),
])
def test_an_edited_retained_file_is_refused(tmp_path, change, fragment):
    state = str(tmp_path / "state")
    kept = mr.RetainedCopies(env="shop", copies=[a_copy()])
    path = ms.save_retained(state, kept)
    data = json.loads(Path(path).read_text())
    change(data)
    Path(path).write_text(json.dumps(data))
    with pytest.raises(mr.RecordError, match=fragment):
        ms.load_retained(state, "shop")


def test_a_copy_path_outside_its_root_is_refused():
    data = a_copy().to_dict()
    data["paths"] = ["/srv/shop/data", "/etc"]
    with pytest.raises(mr.RecordError, match=r"paths\[1\]: expected a path under the root /srv/shop"):
        mr.RetainedCopy.from_dict(data)


def test_a_copy_is_due_when_its_retention_ended():
    copy = a_copy(until="2026-12-02T12:00:00Z")
    assert not copy.due(datetime.datetime(2026, 12, 2, 11, 59, 59, tzinfo=datetime.timezone.utc))
    assert copy.due(datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.timezone.utc))


# ---- move_record retain / unretain (what the finish and the retire role write)


def switched_record(target: str = "srv2") -> mr.MoveRecord:
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.target = target
    for stage in ("cutover", "switched"):
        rec.transition(stage)
        rec.complete(stage)
    return rec


def call(state: str, action: str, check_mode: bool = False, **args) -> dict:
    params = {"state_dir": state, "env": "shop", "action": action, **args}
    return json.loads(json.dumps(run_work("move_record", move_record.argument_spec(), move_record.work, params,
                                          check_mode)))


RETAIN = dict(server="srv1", root="/srv/shop", paths=["/srv/shop/app", "/srv/shop/data"], retention_s=7 * 86400)


def test_finish_retains_the_old_copy_until_the_retention_ends(tmp_path):
    state = str(tmp_path / "state")
    rec = switched_record()
    ms.save(state, rec)
    before = clock.utcnow()
    done = call(state, "retain", **RETAIN)
    assert done["changed"]
    [copy] = done["retained"]
    assert copy["server"] == "srv1" and copy["move_id"] == rec.move_id and copy["due"] is False
    assert copy["paths"] == ["/srv/shop/app", "/srv/shop/data"]
    span = clock.parse_ts(copy["until"]) - clock.parse_ts(copy["retained_at"])
    assert span == datetime.timedelta(days=7) and clock.parse_ts(copy["retained_at"]) >= before.replace(microsecond=0)
    # a finish run again keeps the first instants (the retention does not start anew)
    again = call(state, "retain", **RETAIN)
    assert not again["changed"] and again["retained"] == done["retained"]
    # every result carries the copies (preflight reads them from admit)
    assert call(state, "get")["retained"] == done["retained"]


def test_retain_refuses_another_server_or_a_move_not_switched(tmp_path):
    state = str(tmp_path / "state")
    ms.save(state, switched_record())
    wrong = call(state, "retain", **dict(RETAIN, server="srv3"))
    assert wrong["failed"] and "left its old copy on srv1, not srv3" in wrong["msg"]
    ms.save(state, walk_to(new_record(), "sync"))
    early = call(state, "retain", **RETAIN)
    assert early["failed"] and "is at stage sync" in early["msg"]
    assert ms.load_retained(state, "shop").copies == []


def test_a_move_back_forgets_the_copy_it_started_from(tmp_path):
    """srv1 -> srv2 retained srv1's copy; srv2 -> srv1 finishing retains srv2's and forgets srv1's
    (the env is live there again)."""
    state = str(tmp_path / "state")
    ms.save_retained(state, mr.RetainedCopies(env="shop", copies=[a_copy("srv1")]))
    back = switched_record()
    back.source, back.target = "srv2", "srv1"
    ms.save(state, back)
    done = call(state, "retain", **dict(RETAIN, server="srv2"))
    assert [c["server"] for c in done["retained"]] == ["srv2"]


def test_unretain_forgets_a_removed_copy_and_check_mode_changes_nothing(tmp_path):
    state = str(tmp_path / "state")
    ms.save_retained(state, mr.RetainedCopies(env="shop", copies=[a_copy("srv1"), a_copy("srv3")]))
    checked = call(state, "unretain", check_mode=True, server="srv1")
    assert checked["changed"] and len(ms.load_retained(state, "shop").copies) == 2
    done = call(state, "unretain", server="srv1")
    assert done["changed"] and [c["server"] for c in done["retained"]] == ["srv3"]
    assert not call(state, "unretain", server="srv1")["changed"]


# ---- the retire's claim (move_record retire_begin, under the record's lock): a retire and a move
# back onto the copy it removes never run at once, in either order


MOVE_BACK = dict(source="srv2", target="srv1", source_address="10.77.0.12", target_address="10.77.0.11",
                 commit="a" * 40)


def test_a_copy_written_before_the_claim_existed_still_loads(tmp_path):
    state = str(tmp_path / "state")
    old = {"schema_version": 1, "env": "shop", "copies": [{
        "server": "srv1", "move_id": "shop-20261125T120000Z", "root": "/srv/shop",
        "paths": ["/srv/shop/app", "/srv/shop/data"], "retained_at": "2026-11-25T12:00:00Z",
        "until": "2026-12-02T12:00:00Z"}]}
    old["checksum"] = mr.checksum_of(old)
    os.makedirs(ms.retained_dir(state))
    Path(ms.retained_path(state, "shop")).write_text(json.dumps(old))
    [copy] = ms.load_retained(state, "shop").copies
    assert copy == a_copy() and copy.retiring is None


def test_a_copy_being_retired_round_trips_and_is_due_before_its_retention_ends(tmp_path):
    state = str(tmp_path / "state")
    kept = mr.RetainedCopies(env="shop", copies=[a_copy("srv1"), a_copy("srv3")])
    assert kept.claim("srv1", T0) and not kept.claim("srv1", T0 + datetime.timedelta(hours=1))
    ms.save_retained(state, kept)
    loaded = ms.load_retained(state, "shop")
    assert loaded.on("srv1").retiring == "2026-11-25T12:00:00Z" and loaded.on("srv3").retiring is None
    # a retire that failed midway is completed by the next one, a due run's included
    assert loaded.on("srv1").due(T0) and not loaded.on("srv3").due(T0)
    bad = a_copy().to_dict()
    bad["retiring"] = "soon"
    with pytest.raises(mr.RecordError, match="copies\\[\\]\\.retiring"):
        mr.RetainedCopy.from_dict(bad)


def test_a_move_in_progress_refuses_the_retire_claim_and_a_due_claim_takes_nothing(tmp_path):
    """The move back first: its record exists (its preflight saw the copy as retired, its head start);
    a retire then removes nothing, and a schedule's due run succeeds removing nothing."""
    state = str(tmp_path / "state")
    ms.save_retained(state, mr.RetainedCopies(env="shop", copies=[a_copy("srv1")]))
    started = call(state, "create", **MOVE_BACK)
    assert started["changed"] and not started.get("failed")
    refused = call(state, "retire_begin", servers=["srv1"])
    assert refused.get("failed") and "a move of shop is in progress (%s" % started["move_id"] in refused["msg"]
    waited = call(state, "retire_begin", servers=["srv1"], due=True)
    assert not waited.get("failed") and not waited["changed"] and waited["claimed"] == []
    assert ms.load_retained(state, "shop").copies == [a_copy("srv1")]  # nothing marked


def test_a_copy_being_retired_refuses_a_move_onto_its_server(tmp_path):
    """The retire first: its claim marks the copy; the move back's admit and create then refuse,
    creating nothing, until the retire removed the copy (unretain) or ran again to complete it."""
    state = str(tmp_path / "state")
    ms.save_retained(state, mr.RetainedCopies(env="shop", copies=[a_copy("srv1"), a_copy("srv3")]))
    checked = call(state, "retire_begin", check_mode=True, servers=["srv1"])
    assert checked["changed"] and ms.load_retained(state, "shop").on("srv1").retiring is None
    claimed = call(state, "retire_begin", servers=["srv1"])
    assert claimed["changed"] and [c["server"] for c in claimed["claimed"]] == ["srv1"]
    assert [c["retiring"] is not None for c in claimed["retained"]] == [True, False]
    again = call(state, "retire_begin", servers=["srv1"])  # the next retire completes it
    assert not again["changed"] and again["claimed"] == claimed["claimed"]
    for action in ("admit", "create"):
        refused = call(state, action, **MOVE_BACK)
        assert refused.get("failed"), refused
        assert "a retire of the old copy of shop on srv1 is in progress" in refused["msg"]
        assert "wait for it or run retire again to complete it" in refused["msg"]
    assert ms.load(state, "shop") is None
    assert not call(state, "admit", **dict(MOVE_BACK, target="srv3")).get("failed")  # its copy is not retiring
    call(state, "unretain", server="srv1")  # the retire removed it: the mark goes with it
    assert call(state, "create", **MOVE_BACK)["changed"]


def test_the_retire_claim_refuses_a_server_without_a_copy(tmp_path):
    state = str(tmp_path / "state")
    ms.save_retained(state, mr.RetainedCopies(env="shop", copies=[a_copy("srv1")]))
    refused = call(state, "retire_begin", servers=["srv3"])
    assert refused.get("failed") and "srv3 holds no retained copy of shop" in refused["msg"]
    assert ms.load_retained(state, "shop").on("srv1").retiring is None
    assert call(state, "retire_begin", servers=["srv3"], due=True)["claimed"] == []  # removed meanwhile

# ---- the copy on a server: retired or live; removed only when retired


@pytest.fixture
def server(tmp_path):
    """A server's tree as the finish leaves it: app and data kept, units masked, site and env file gone,
    the site closed, the unit files kept aside."""
    root = tmp_path / "srv" / "shop"
    (root / "app").mkdir(parents=True)
    (root / "app" / "REVISION").write_text("a" * 40)
    (root / "data" / "uploads").mkdir(parents=True)
    (root / "data" / "uploads" / "1.txt").write_text("x" * 100)
    units = tmp_path / "systemd"
    units.mkdir()
    names = ("strackt-env-shop.target", "strackt-env-shop-web.service")
    for name in names:
        os.symlink("/dev/null", units / name)
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "shop").write_text("closed")
    (tmp_path / "sites").mkdir()
    kept = tmp_path / "retired" / "shop"
    kept.mkdir(parents=True)
    (kept / "strackt-env-shop.target").write_text("[Unit]\n")
    layout = retention.ServerLayout(
        root=str(root), paths=(str(root / "app"), str(root / "data")), units=names, unit_dir=str(units),
        site_file=str(tmp_path / "sites" / "shop.caddy"), closed_file=str(tmp_path / "closed" / "shop"),
        env_file=str(tmp_path / "envs" / "shop.env"), retired_units_dir=str(kept))
    return layout


def test_a_retired_copy_is_seen_as_such_and_removed(server):
    query = handle("shop", server, "query", [], check_mode=False)
    assert query["retired"] and query["present"] and query["live_signs"] == [] and not query["changed"]
    done = handle("shop", server, "absent", [], check_mode=False)
    assert done["changed"] and done["bytes_freed"] >= 140
    assert sorted(done["unmasked"]) == sorted(server.units)
    for path in (*server.paths, server.retired_units_dir, server.closed_file, server.root):
        assert not os.path.lexists(path), path
    assert os.listdir(server.unit_dir) == []
    again = handle("shop", server, "absent", [], check_mode=False)
    assert not again["changed"] and not again["present"]


def test_check_mode_removes_nothing(server):
    done = handle("shop", server, "absent", [], check_mode=True)
    assert done["changed"] and str(Path(server.root) / "data") in done["removed"]
    assert all(os.path.exists(p) for p in server.paths) and os.path.exists(server.closed_file)


def _live_unit(layout):
    name = layout.units[1]
    os.unlink(os.path.join(layout.unit_dir, name))
    Path(layout.unit_dir, name).write_text("[Service]\n")
    return "unit strackt-env-shop-web.service is not masked"


@pytest.mark.parametrize("make_live", [
    _live_unit,
    lambda layout: (Path(layout.site_file).write_text("site"), "its site")[1],
    lambda layout: (os.unlink(layout.closed_file), "its site is not closed")[1],
    lambda layout: (Path(layout.env_file).parent.mkdir(), Path(layout.env_file).write_text("X=1"), "env file")[2],
])
def test_a_live_copy_is_never_removed(server, make_live):
    sign = make_live(server)
    query = handle("shop", server, "query", [], check_mode=False)
    assert not query["retired"] and any(sign in s for s in query["live_signs"])
    with pytest.raises(CopyRefused, match="may be live on this server .*refusing to remove it"):
        handle("shop", server, "absent", [], check_mode=False)
    assert all(os.path.exists(p) for p in server.paths)


def test_a_running_unit_is_a_live_copy(server):
    with pytest.raises(CopyRefused, match="unit strackt-env-shop-web.service is running"):
        handle("shop", server, "absent", ["strackt-env-shop-web.service"], check_mode=False)
    assert all(os.path.exists(p) for p in server.paths)


def test_only_paths_under_the_root_are_removed(server, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    bad = retention.ServerLayout(**{**server.__dict__, "paths": (server.paths[0], str(outside))})
    with pytest.raises(CopyRefused, match="is not a path under the root"):
        handle("shop", bad, "absent", [], check_mode=False)
    assert outside.exists() and all(os.path.exists(p) for p in server.paths)
    # a data path that leads out of the root through a link in between
    link_parent = Path(server.root) / "via"
    os.symlink(outside, link_parent)
    escaping = retention.ServerLayout(**{**server.__dict__, "paths": (str(link_parent / "inner"),)})
    (outside / "inner").mkdir()
    with pytest.raises(CopyRefused, match="leads out of the root"):
        handle("shop", escaping, "absent", [], check_mode=False)
    assert (outside / "inner").exists()
    wrong_kept = retention.ServerLayout(**{**server.__dict__, "retired_units_dir": str(tmp_path)})
    with pytest.raises(CopyRefused, match="retired_units_dir .* is not a directory of this env's own"):
        handle("shop", wrong_kept, "absent", [], check_mode=False)


# ---- preflight: a retained copy on the target is accepted, anything else of the env refused (the role's
# own expressions, evaluated as Ansible does)


def _preflight_tasks():
    import yaml

    tasks = (Path(__file__).resolve().parents[2] / "collections/ansible_collections/strackt/move/roles/preflight"
             / "tasks")
    return {t["name"]: t for name in ("check_servers.yml", "target_copy.yml")
            for t in yaml.safe_load((tasks / name).read_text())}


def _evaluate(expression: str, variables: dict):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    templar = Templar(loader=DataLoader(), variables=variables)
    if "{{" in expression:
        return templar.template(trust_as_template(expression))
    return templar.evaluate_conditional(trust_as_template(expression))


def _preflight(retained: list, present: bool, copy_result: dict | None) -> tuple[bool, bool]:
    """(whether the target copy is looked at, whether the target is accepted)."""
    tasks = _preflight_tasks()
    variables = {"preflight_admitted": {"retained": retained}, "preflight_target": "srv1",
                 "preflight_target_facts": {"present": present}}
    variables["preflight_retained"] = _evaluate(
        tasks["Remember a retained copy of the env on the target"]["ansible.builtin.set_fact"]["preflight_retained"],
        variables)
    # the room on the target counts the copy's files only where the record retains one
    head_start = _evaluate(tasks["Look at the target"]["strackt.move.server_facts"]["head_start"], variables)
    assert head_start is any(c["server"] == "srv1" for c in retained), (head_start, retained)
    looked = _evaluate(tasks["Look at the retained copy on the target"]["when"], variables)
    variables["preflight_target_copy"] = copy_result if looked else {"skipped": True, "changed": False}
    accepted = _evaluate(tasks["Refuse when the target already has the env"]["ansible.builtin.assert"]["that"],
                         variables)
    return looked, accepted


RETIRED = {"changed": False, "retired": True, "live_signs": []}
LIVE = {"changed": False, "retired": False, "live_signs": ["unit strackt-env-shop-web.service is running"]}


def test_preflight_accepts_a_retained_copy_that_is_still_the_retired_one():
    assert _preflight([dict(a_copy("srv1").to_dict(), due=False)], True, RETIRED) == (True, True)


def test_preflight_refuses_a_retained_copy_that_may_be_live():
    assert _preflight([dict(a_copy("srv1").to_dict(), due=False)], True, LIVE) == (True, False)


def test_preflight_refuses_an_env_copy_nothing_retained_there():
    assert _preflight([dict(a_copy("srv3").to_dict(), due=False)], True, None) == (False, False)
    assert _preflight([], True, None) == (False, False)


def test_preflight_takes_an_empty_target():
    assert _preflight([dict(a_copy("srv1").to_dict(), due=False)], False, None) == (False, True)


# ---- the retire role: which copies it removes, and its refusals (its own expressions)


def _retire_tasks():
    import yaml

    path = (Path(__file__).resolve().parents[2] / "collections/ansible_collections/strackt/move/roles/retire"
            / "tasks/main.yml")
    return {t["name"]: t for t in yaml.safe_load(path.read_text())}


RETAINED = [dict(a_copy("srv1").to_dict(), due=True), dict(a_copy("srv3").to_dict(), due=False)]


def _retire_variables(record: dict | None, due: bool, server: str = "") -> dict:
    variables = {"retire_record": {"record": record, "retained": RETAINED}, "retire_server": server,
                 "retire_due": due, "retire_env_info": {"environment": {}}}
    noted = _retire_tasks()["Note whether a move of the env is in progress"]["ansible.builtin.set_fact"]
    variables["retire_moving"] = _evaluate(noted["retire_moving"], variables)
    return variables


@pytest.mark.parametrize("server, due, chosen", [("", False, ["srv1", "srv3"]), ("srv3", False, ["srv3"]),
                                                 ("", True, ["srv1"]), ("srv2", False, [])])
def test_retire_role_chooses_the_copies(server, due, chosen):
    task = _retire_tasks()["Choose the copies to remove"]["ansible.builtin.set_fact"]
    copies = _evaluate(task["retire_copies"], _retire_variables(None, due, server))
    assert [c["server"] for c in copies] == chosen


@pytest.mark.parametrize("record, ok", [(None, True), ({"stage": "done"}, True), ({"stage": "switched"}, False),
                                        ({"stage": "sync"}, False)])
def test_retire_role_refuses_while_a_move_is_in_progress(record, ok):
    that = _retire_tasks()["Refuse while a move of the env is in progress"]["ansible.builtin.assert"]["that"]
    assert _evaluate(that, _retire_variables(record, due=False)) is ok


@pytest.mark.parametrize("record", [{"stage": "switched", "move_id": "shop-1"}, {"stage": "sync", "move_id": "shop-1"}])
def test_a_due_retire_run_leaves_the_copies_while_a_move_is_in_progress(record):
    """A schedule's due run (AWX, cron) is no refusal while a move runs: it removes nothing and
    succeeds, as `strackt-move retire --due` does; a later due run removes them."""
    tasks = _retire_tasks()
    variables = _retire_variables(record, due=True)
    assert _evaluate(tasks["Refuse while a move of the env is in progress"]["ansible.builtin.assert"]["that"],
                     variables) is True
    assert _evaluate(tasks["Choose the copies to remove"]["ansible.builtin.set_fact"]["retire_copies"], variables) == []
    assert _evaluate(tasks["Say the due copies wait for the move in progress"]["when"], variables) is True
    assert _evaluate(tasks["Refuse a server with no retained copy of the env"]["ansible.builtin.assert"]["that"],
                     {**variables, "retire_copies": []}) is True


def test_retire_role_refuses_the_attached_server():
    that = _retire_tasks()["Refuse the server the env is attached to"]["ansible.builtin.assert"]["that"]
    assert _evaluate(that, {"retire_def": {"server": "srv2"}, "retire_copies": RETAINED}) is True
    assert _evaluate(that, {"retire_def": {"server": "srv3"}, "retire_copies": RETAINED}) is False


def test_retire_role_removes_only_what_its_claim_took():
    """The claim (under the record's lock) comes before any removal, and the removal loops over it."""
    names = list(_retire_tasks())
    claim = _retire_tasks()["Claim the copies to remove"]["strackt.move.move_record"]
    assert claim["action"] == "retire_begin" and claim["due"] == "{{ retire_due }}"
    assert names.index("Claim the copies to remove") < names.index("Remove each retained copy on its server")
    assert names.index("Refuse the server the env is attached to") < names.index("Claim the copies to remove")
    removal = _retire_tasks()["Remove each retained copy on its server"]
    assert removal["loop"] == "{{ retire_claim.claimed }}"
