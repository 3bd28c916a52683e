"""Evacuating with the databases (`strackt-move evacuate SERVER --with-database`, issue 16 with 15):
the plan through the playbook's module calls, the record, the moves' argv, status and report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from test_evacuation import InProcessChild, world  # noqa: F401 (world: the fixture)

from ansible_collections.strackt.move.plugins.module_utils.placement import MIB
from ansible_collections.strackt.move.plugins.modules import evacuation_plan, server_facts
from strackt_move import cli
from strackt_move.evacuation import Evacuation, EvacuationStore, PlannedMove
from strackt_move.evacuator import next_actions
from strackt_move.evacuation import Phase
from strackt_move.exit_codes import ExitCode
from strackt_move.playbook_run import PlayRequest, PlayResult

# ------------------------------------------------------------------ the plan: server_facts, then evacuation_plan


def run_server_facts(capsys, args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            server_facts.main()
    return json.loads(capsys.readouterr().out)


def env_item(name: str, root: Path, database: dict[str, Any] | None) -> dict[str, Any]:
    """What env_info returns for an env (the part the plan reads)."""
    return {"environment": {"name": name, "root": str(root), "data_paths": [str(root / "data")], "memory_mb": 0,
                            "disk_headroom_mb": 1, "database": database}}


def plan_on_this_machine(capsys, tmp_path: Path, database_bytes: int) -> dict[str, Any]:
    """The playbook's module calls for one env whose PostgreSQL database runs on srv1, with this machine
    as srv1 and as the target srv2: server_facts on the source, server_facts on the target with the
    database on its data directory (extra_paths, as the playbook passes it), then evacuation_plan."""
    root = tmp_path / "srv" / "shop"
    (root / "data").mkdir(parents=True)
    (root / "data" / "f").write_bytes(b"x" * 4096)
    item = env_item("shop", root, {"engine": "postgresql", "server": "srv1", "name": "shop", "port": 5432})
    source = run_server_facts(capsys, {"env": "shop", "root": str(root), "data_paths": [str(root / "data")],
                                       "measure_data": True})
    source["item"] = item
    # pg_move_facts as it returns on both servers (no PostgreSQL here: its RETURN's shape)
    db_source = {"item": "shop", "database_exists": True, "database_size": database_bytes}
    db_target = {"item": ["shop", "srv2"], "running": False, "data_directory": str(tmp_path / "pg" / "15" / "main")}
    # the target's view of the same root (not there yet: on this one machine, another directory)
    troot = tmp_path / "target" / "srv" / "shop"
    target = run_server_facts(capsys, {
        "env": "shop", "root": str(troot), "data_paths": [str(troot / "data")],
        "need_data_bytes": {str(troot / "data"): source["data_bytes"][str(root / "data")]},
        "need_app_bytes": source["app_bytes"], "headroom_mb": 1,
        "extra_paths": [{"path": db_target["data_directory"], "need_bytes": database_bytes, "headroom_mb": 1,
                         "label": "the database of shop"}]})
    target["item"] = ["shop", "srv2"]
    plan, table = evacuation_plan.plan_evacuation({
        "server": "srv1", "targets": ["srv2"], "source_facts": [source], "target_facts": [target],
        "with_database": True, "database_facts": [db_source], "target_database_facts": [db_target]})
    return {"plan": plan, "table": table, "target": target}


def test_the_plan_counts_the_database_on_the_targets_data_directory(capsys, tmp_path: Path) -> None:
    result = plan_on_this_machine(capsys, tmp_path, 2 * MIB)
    plan = result["plan"]
    assert plan["complete"] and plan["with_database"]
    (placed,) = plan["placed"]
    assert (placed["env"], placed["target"], placed["with_database"], placed["database_bytes"]) == ("shop", "srv2", True, 2 * MIB)
    # tmp_path is one filesystem: the database's 2 MiB + 1 MiB headroom add to the files' need there
    (fs,) = result["target"]["filesystems"]
    assert fs["extra_bytes"] == 3 * MIB and fs["need_bytes"] == 4096 + 1 * MIB + 3 * MIB
    assert "2.0 MiB" in result["table"][2]


def test_the_plan_refuses_a_target_where_the_files_fit_but_not_the_database(capsys, tmp_path: Path) -> None:
    vfs = os.statvfs(tmp_path)
    free = vfs.f_bavail * vfs.f_frsize
    plan = plan_on_this_machine(capsys, tmp_path, free + 1)["plan"]
    assert not plan["complete"] and plan["placed"] == []
    (unplaced,) = plan["unplaced"]
    assert unplaced["env"] == "shop" and "(data, app, headroom and its database of" in unplaced["reasons"][0]


def test_the_plan_module_refuses_database_facts_that_do_not_match_the_rule() -> None:
    item = env_item("blog", Path("/srv/blog"), {"engine": "mariadb", "server": "srv1", "name": "blog"})
    params = {"server": "srv1", "targets": ["srv2"], "source_facts": [{"item": item, "data_bytes": {}}],
              "target_facts": [{"item": ["blog", "srv2"], "filesystems": [], "memory": {}}], "with_database": True,
              "database_facts": [{"item": "blog", "database_exists": True, "database_size": 1}],
              "target_database_facts": []}
    with pytest.raises(evacuation_plan.PlacementError, match="blog, whose database does not move"):
        evacuation_plan.plan_evacuation(params)
    plan, table = evacuation_plan.plan_evacuation({**params, "database_facts": []})
    assert plan["placed"][0]["database_stays"] and "stays on srv1" in table[-1]
    pg = env_item("shop", Path("/srv/shop"), {"engine": "postgresql", "server": "srv1", "name": "shop"})
    with pytest.raises(evacuation_plan.PlacementError, match="no pg_move_facts of shop's database on srv1"):
        evacuation_plan.plan_evacuation({**params, "source_facts": [{"item": pg, "data_bytes": {}}],
                                         "target_facts": [{"item": ["shop", "srv2"], "filesystems": [], "memory": {}}],
                                         "database_facts": []})


def test_a_plan_without_the_databases_names_the_services_left_on_the_server() -> None:
    # a plain evacuation: the env's databases and its Redis stay on srv1, and the plan says so
    shop = env_item("shop", Path("/srv/shop"), {"engine": "postgresql", "server": "srv1", "name": "shop"})
    drop = env_item("drop", Path("/srv/drop"), None)
    drop["environment"]["redis"] = {"server": "srv1", "port": 6379, "db": 0}
    wiki = env_item("wiki", Path("/srv/wiki"), {"engine": "mariadb", "server": "db1", "name": "wiki"})
    items = [shop, drop, wiki]
    plan, table = evacuation_plan.plan_evacuation({
        "server": "srv1", "targets": ["srv2"], "with_database": False, "database_facts": [],
        "target_database_facts": [],
        "source_facts": [{"item": i, "data_bytes": {}} for i in items],
        "target_facts": [{"item": [i["environment"]["name"], "srv2"], "filesystems": [], "memory": {"available_mb": 1}}
                         for i in items]})
    assert {p["env"]: p["left_behind"] for p in plan["placed"]} == {
        "shop": ["its PostgreSQL database shop (--with-database moves it along)"],
        "drop": ["its Redis (port 6379, db 0)"], "wiki": []}
    assert sorted(w.split(":")[0] for w in plan["warnings"]) == [
        "drop moves without its Redis (port 6379, db 0)",
        "shop moves without its PostgreSQL database shop (--with-database moves it along)"]
    assert table[-2:] == ["warning: " + w for w in plan["warnings"]]


# ------------------------------------------------------------------ the record and the moves' argv

def test_old_evacuation_records_load_without_the_database_fields() -> None:
    old = {"server": "srv1", "started_at": "2026-11-30T10:00:00Z", "targets": ["srv2"], "parallel": 1,
           "confirm": "plan", "moves": [{"env": "shop", "target": "srv2", "data_bytes": 1, "memory_mb": 0,
                                         "move_id": None}],
           "unplaced": [], "state": "running", "finished_at": None, "schema_version": 1}
    evac = Evacuation.from_dict(old)
    assert evac.with_database is False and evac.moves[0].with_database is False
    assert evac.moves[0].database_stays is False and evac.warnings == []
    again = Evacuation.from_dict(json.loads(json.dumps(Evacuation(**{**evac.__dict__, "with_database": True}).to_dict())))
    assert again.with_database is True


def test_the_start_of_a_move_with_its_database_asks_for_it() -> None:
    moves = [PlannedMove("shop", "srv2", with_database=True), PlannedMove("blog", "srv3", database_stays=True)]
    actions = next_actions(moves, {"shop": Phase.PENDING, "blog": Phase.PENDING}, set(), 2, lambda _e: True)
    assert [a.argv for a in actions] == [("start", "shop", "--target", "srv2", "--with-database"),
                                         ("start", "blog", "--target", "srv3")]
    # an interrupted preparation resumes from its record, which holds the wish
    actions = next_actions(moves, {"shop": Phase.PREPARING, "blog": Phase.PENDING}, set(), 2, lambda _e: True)
    assert actions[0].argv == ("resume", "shop")


def db_plan_script(placed: list[dict[str, Any]]):
    def script(request: PlayRequest, on_event, cancel) -> PlayResult:
        assert request.playbook == "evacuation_plan.yml" and request.extravars.get("with_database") is True
        plan = {"server": "srv1", "targets": ["srv2", "srv3"], "complete": True, "with_database": True,
                "placed": [{"data_bytes": MIB, "memory_mb": 64, "database_bytes": 0, "with_database": False,
                            "database_stays": False, **p} for p in placed], "unplaced": []}
        return PlayResult(rc=0, status="successful", artifact_data={"evacuation_plan": plan})
    return script


def test_plan_only_with_the_databases(world, capsys) -> None:  # noqa: F811
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = db_plan_script([
        {"env": "shop", "target": "srv2", "with_database": True, "database_bytes": 5 * MIB},
        {"env": "blog", "target": "srv3", "database_stays": True}])
    assert evacuate("--plan", "--with-database") == ExitCode.OK
    out = capsys.readouterr().out
    assert "shop  → srv2  (1.0 MiB data, 64 MiB memory, its database 5.0 MiB with it)" in out
    assert "blog  → srv3  (1.0 MiB data, 64 MiB memory, its database stays on srv1)" in out
    assert "warning: blog moves without its database" in out
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_the_evacuation_record_keeps_with_database_for_status_and_resume(world, capsys) -> None:  # noqa: F811
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = db_plan_script([
        {"env": "shop", "target": "srv2", "with_database": True, "database_bytes": 5 * MIB},
        {"env": "blog", "target": "srv3", "database_stays": True}])
    # the children are not run: the record and the argv are what this test is about
    monkeypatch_spawn = []

    def spawn(argv, log):
        monkeypatch_spawn.append(argv)
        return InProcessChild(1)  # failed: the evacuation leaves it to the operator and ends
    from strackt_move import evacuator as evacuator_module
    original = evacuator_module.spawn_cli
    evacuator_module.spawn_cli = lambda _settings: spawn
    try:
        assert evacuate("--with-database", "--yes", "--parallel", "2") == ExitCode.FAILED
    finally:
        evacuator_module.spawn_cli = original
    assert ("start", "shop", "--target", "srv2", "--with-database") in monkeypatch_spawn
    assert ("start", "blog", "--target", "srv3") in monkeypatch_spawn
    evac = EvacuationStore(settings.state_dir).load("srv1")
    assert evac is not None and evac.with_database
    assert [(m.env, m.with_database, m.database_bytes, m.database_stays) for m in evac.moves] == [
        ("shop", True, 5 * MIB, False), ("blog", False, 0, True)]
    capsys.readouterr()
    # status --server shows it
    assert cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), "status", "--server", "srv1"]) == 0
    out = capsys.readouterr().out
    assert "with the databases" in out and "+database" in out and "database stays on srv1" in out
    assert "warning: blog moves without its database" in out
    assert cli.run(["--state-dir", str(settings.state_dir), "-i", str(settings.inventory), "status", "--server", "srv1",
                    "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evacuation"]["with_database"] is True
    assert {r["env"]: r["with_database"] for r in data["moves"]} == {"shop": True, "blog": False}
    # --with-database cannot change an evacuation planned without it; continuing one planned with it keeps it
    evac.with_database = False
    EvacuationStore(settings.state_dir).save(evac)
    assert evacuate("--with-database", "--yes") == ExitCode.USAGE
    assert "planned without the databases" in capsys.readouterr().err


def test_with_database_but_no_database_to_move_is_an_error(world, capsys) -> None:  # noqa: F811
    settings, fake, spawned, evacuate = world
    fake.scripts["evacuation_plan"] = db_plan_script([{"env": "blog", "target": "srv3", "database_stays": True},
                                                      {"env": "wiki", "target": "srv2"}])
    assert evacuate("--with-database", "--yes") == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "no env of srv1 has a PostgreSQL database running on srv1" in err and "blog: not PostgreSQL" in err
    assert "without --with-database" in err
    assert spawned == [] and EvacuationStore(settings.state_dir).active() == []


def test_with_database_and_abort_is_an_error(world, capsys) -> None:  # noqa: F811
    settings, fake, spawned, evacuate = world
    assert evacuate("--abort", "--with-database") == ExitCode.USAGE
    assert "--with-database plans an evacuation" in capsys.readouterr().err
    assert fake.calls == [] and spawned == []


def test_the_evacuation_report_shows_the_databases(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from strackt_move.report.evacuation import build_evacuation
    from strackt_move.report.text import render_evacuation
    from strackt_move.store import RecordStore

    evac = Evacuation(server="srv1", started_at="2026-11-30T10:00:00Z", targets=["srv2"], parallel=1, confirm="plan",
                      moves=[PlannedMove("shop", "srv2", with_database=True), PlannedMove("blog", "srv2", database_stays=True)],
                      with_database=True)
    report, _moves = build_evacuation(evac, True, RecordStore(tmp_path), datetime.now(timezone.utc))
    assert report.with_database and [r.with_database for r in report.rows] == [True, False]
    lines = render_evacuation(report)
    assert any("database" in line and "outcome" in line for line in lines)
    assert any(line.startswith("shop") and "moved with it" in line for line in lines)
    assert any(line.startswith("blog") and "stays on srv1" in line for line in lines)
    assert "warning: " + evac.warnings[0] in lines
    assert report.to_dict()["warnings"] == evac.warnings


# ------------------------------------------------------------------ the playbook's expressions, templated

PLAN_PLAY = Path(__file__).resolve().parents[2] / "collections/ansible_collections/strackt/move/playbooks/evacuation_plan.yml"


def _template(expression: str, variables: dict[str, Any]) -> Any:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    trusted = {k: trust_as_template(v) if isinstance(v, str) and "{{" in v else v for k, v in variables.items()}
    return Templar(loader=DataLoader(), variables=trusted).template(trust_as_template(expression))


def _task(play: dict[str, Any], starts: str) -> dict[str, Any]:
    return next(t for t in play["tasks"] if t["name"].startswith(starts))


def test_the_playbook_picks_the_databases_on_the_server_and_passes_their_room_to_server_facts() -> None:
    import yaml

    play = yaml.safe_load(PLAN_PLAY.read_text())[0]
    defs = {"results": [
        {"environment": {"name": "shop", "database": {"engine": "postgresql", "server": "srv1", "name": "shop"}}},
        {"environment": {"name": "blog", "database": {"engine": "mariadb", "server": "srv1", "name": "blog"}}},
        {"environment": {"name": "wiki", "database": {"engine": "postgresql", "server": "db1", "name": "wiki"}}},
        {"environment": {"name": "drop", "database": None}}]}
    pick = _task(play, "Find the envs whose PostgreSQL")["ansible.builtin.set_fact"]["evacuation_db_env_names"]
    common = {"server": "srv1", "evacuation_defs": defs, "evacuation_with_database": play["vars"]["evacuation_with_database"]}
    assert _template(pick, {**common, "with_database": True}) == ["shop"]
    assert _template(pick, {**common, "with_database": "false"}) == []
    assert _template(pick, common) == []

    task = _task(play, "Look at every target")
    extra = task["strackt.move.server_facts"]["extra_paths"]
    measured = {"results": [{"item": {"environment": {"disk_headroom_mb": 64}}}] * 2}
    variables = {**task["vars"], "evacuation_env_names": ["shop", "drop"], "evacuation_source_facts": measured,
                 "evacuation_db_env_names": ["shop"],
                 "evacuation_db_source_facts": {"results": [{"item": "shop", "database_size": 5 * MIB}]},
                 "evacuation_db_target_facts": {"results": [
                     {"item": ["shop", "srv2"], "data_directory": "/var/lib/postgresql/15/main"},
                     {"item": ["shop", "srv3"], "unreachable": True}]}}
    assert _template(extra, {**variables, "item": ["shop", "srv2"]}) == [
        {"path": "/var/lib/postgresql/15/main", "need_bytes": 5 * MIB, "headroom_mb": 64, "label": "the database of shop"}]
    # unreachable there (evacuation_plan says why it cannot host), or no database that moves: nothing extra
    assert _template(extra, {**variables, "item": ["shop", "srv3"]}) == []
    assert _template(extra, {**variables, "item": ["drop", "srv2"]}) == []
    # without the databases the loops are empty and so is every extra_paths
    empty = {**variables, "evacuation_db_env_names": [], "evacuation_db_source_facts": {"results": []},
             "evacuation_db_target_facts": {"results": []}}
    assert _template(extra, {**empty, "item": ["shop", "srv2"]}) == []
