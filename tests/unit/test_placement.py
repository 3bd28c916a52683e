"""Placement of a server's envs onto targets by room (module_utils/placement.py)."""

from __future__ import annotations

import pytest

from ansible_collections.strackt.move.plugins.module_utils.placement import (
    DATABASE_ELSEWHERE,
    DATABASE_MOVES,
    DATABASE_STAYS,
    MIB,
    NO_DATABASE,
    Candidate,
    EnvNeed,
    PlacementError,
    database_fate,
    place,
    plan_table,
    services_left_on,
)


def facts(free_mib: float, need_mib: float, mem_mb: int = 4096, device: int = 1, present: bool = False) -> dict:
    return {"present": present, "memory": {"available_mb": mem_mb},
            "filesystems": [{"device": device, "free_bytes": int(free_mib * MIB), "need_bytes": int(need_mib * MIB)}]}


def cands(table: dict[tuple[str, str], dict]) -> list[Candidate]:
    return [Candidate.from_facts(env, target, f) for (env, target), f in table.items()]


def big_srv2_small_srv3(need_mib: dict[str, float]) -> list[Candidate]:
    """The testbed's targets: srv2 with GiBs free, srv3 with a 64 MiB /srv; each env needs ``need_mib``."""
    return cands({(env, target): facts(50_000, need) if target == "srv2" else facts(64, need, device=7)
                  for env, need in need_mib.items() for target in ("srv2", "srv3")})


def test_biggest_first_to_the_target_left_with_most_room() -> None:
    needs = [EnvNeed("small", 100, 10 * MIB), EnvNeed("big", 100, 500 * MIB)]
    plan = place("srv1", ["srv2", "srv3"], needs, cands({
        ("small", "srv2"): facts(1000, 20), ("small", "srv3"): facts(800, 20),
        ("big", "srv2"): facts(1000, 510), ("big", "srv3"): facts(800, 510),
    }))
    assert [(p.env, p.target) for p in plan.placed] == [("big", "srv2"), ("small", "srv3")]
    assert plan.complete and plan.placed[0].disk_free_after_bytes == 490 * MIB


def test_a_small_target_gets_what_fits_there_though_a_big_one_has_more_room() -> None:
    # the testbed's case: srv2 has GiBs free, srv3 a 64 MiB /srv that holds the small env only;
    # by "most room left" alone every env would pile onto srv2 and its copies with them
    needs = [EnvNeed("shop", 256, 30 * MIB), EnvNeed("notes", 256, 20 * MIB), EnvNeed("drop", 128, 2 * MIB)]
    plan = place("srv1", ["srv2", "srv3"], needs, big_srv2_small_srv3({"shop": 100, "notes": 90, "drop": 20}))
    assert [(p.env, p.target) for p in plan.placed] == [("shop", "srv2"), ("notes", "srv2"), ("drop", "srv3")]
    assert plan.complete and plan.placed[2].disk_free_after_bytes == 44 * MIB


def test_the_small_target_goes_to_the_env_that_fits_there_even_when_it_is_the_biggest() -> None:
    # drop has the most data but is the only env srv3 can hold: it must not take srv2 first
    needs = [EnvNeed("shop", 256, 1 * MIB), EnvNeed("notes", 256, 1 * MIB), EnvNeed("drop", 128, 5 * MIB)]
    plan = place("srv1", ["srv2", "srv3"], needs, big_srv2_small_srv3({"shop": 70, "notes": 70, "drop": 25}))
    assert sorted((p.env, p.target) for p in plan.placed) == [("drop", "srv3"), ("notes", "srv2"), ("shop", "srv2")]


def test_the_envs_with_the_fewest_targets_are_placed_first() -> None:
    # srv2 holds two envs, srv3 only "a"; biggest first, "a" would take srv2 and leave "c" nowhere
    needs = [EnvNeed("a", 0, 30 * MIB), EnvNeed("b", 0, 20 * MIB), EnvNeed("c", 0, 10 * MIB)]
    table = {(env, "srv2"): facts(100, 45) for env in ("a", "b", "c")}
    table.update({("a", "srv3"): facts(50, 45), ("b", "srv3"): facts(10, 45), ("c", "srv3"): facts(10, 45)})
    plan = place("srv1", ["srv2", "srv3"], needs, cands(table))
    assert plan.complete, plan.unplaced
    assert [(p.env, p.target) for p in plan.placed] == [("b", "srv2"), ("c", "srv2"), ("a", "srv3")]


def test_what_one_env_takes_is_not_counted_again_for_the_next() -> None:
    # srv2 alone has room for either env, not for both; srv3 has room for the small one only
    needs = [EnvNeed("a", 0, 300 * MIB), EnvNeed("b", 0, 200 * MIB)]
    plan = place("srv1", ["srv2", "srv3"], needs, cands({
        ("a", "srv2"): facts(400, 310), ("a", "srv3"): facts(250, 310),
        ("b", "srv2"): facts(400, 210), ("b", "srv3"): facts(250, 210),
    }))
    assert [(p.env, p.target) for p in plan.placed] == [("a", "srv2"), ("b", "srv3")]


def test_memory_adds_up_on_a_target() -> None:
    needs = [EnvNeed("a", 300, 2 * MIB), EnvNeed("b", 300, 1 * MIB)]
    plan = place("srv1", ["srv2"], needs, cands({("a", "srv2"): facts(1000, 5, mem_mb=500),
                                                 ("b", "srv2"): facts(1000, 5, mem_mb=500)}))
    assert [p.env for p in plan.placed] == ["a"]
    assert plan.unplaced[0].env == "b"
    assert "200 MiB memory available after 300 MiB planned for other envs, b needs 300 MiB" in plan.unplaced[0].reasons[0]


def test_other_filesystems_of_a_target_are_not_shared() -> None:
    needs = [EnvNeed("a", 0, 300 * MIB), EnvNeed("b", 0, 200 * MIB)]
    plan = place("srv1", ["srv2"], needs, cands({("a", "srv2"): facts(400, 310, device=1),
                                                 ("b", "srv2"): facts(400, 210, device=2)}))
    assert [(p.env, p.target) for p in plan.placed] == [("a", "srv2"), ("b", "srv2")]


def test_each_refusal_names_the_target_and_the_cause() -> None:
    needs = [EnvNeed("shop", 256, 50 * MIB)]
    plan = place("srv1", ["srv2", "srv3", "srv4"], needs, [
        Candidate.from_facts("shop", "srv2", facts(1000, 60, present=True)),
        Candidate.from_facts("shop", "srv3", facts(40, 60)),
        Candidate.from_facts("shop", "srv4", {"unreachable": True, "msg": "ssh: connect to host 10.0.0.4\n timed out"}),
    ])
    assert not plan.complete and plan.placed == []
    srv2, srv3, srv4 = plan.unplaced[0].reasons
    assert srv2 == "srv2 already has a copy of shop (remove it there first)"
    assert srv3 == "srv3 has 40.0 MiB free, shop needs 60.0 MiB (data, app and headroom)"
    assert srv4 == "srv4 is unreachable (ssh: connect to host 10.0.0.4 timed out)"
    assert "shop: no room on any target: srv2 already has" in plan_table(plan)[-1]


def test_the_same_facts_give_the_same_plan_and_ties_go_by_count_then_name() -> None:
    needs = [EnvNeed(n, 0, MIB) for n in ("c", "a", "b")]
    table = {(n, t): facts(100, 0) for n in ("a", "b", "c") for t in ("srv3", "srv2")}
    plans = [place("srv1", ["srv3", "srv2"], needs, cands(table)) for _ in range(2)]
    assert plans[0].to_dict() == plans[1].to_dict()
    assert [(p.env, p.target) for p in plans[0].placed] == [("a", "srv2"), ("b", "srv3"), ("c", "srv2")]


def test_bad_questions_are_errors_not_plans() -> None:
    with pytest.raises(PlacementError, match="cannot be one of its targets"):
        place("srv1", ["srv1"], [], [])
    with pytest.raises(PlacementError, match="no facts for shop on srv2"):
        place("srv1", ["srv2"], [EnvNeed("shop", 0, 0)], [])
    with pytest.raises(PlacementError, match="not usable"):
        Candidate.from_facts("shop", "srv2", {"filesystems": [{"free_bytes": 1}]})


def test_table() -> None:
    plan = place("srv1", ["srv2"], [EnvNeed("shop", 256, 5 * MIB)], cands({("shop", "srv2"): facts(100, 10)}))
    assert plan_table(plan) == [
        "env   to    data     memory   tightest disk after",
        "----  ----  -------  -------  -------------------",
        "shop  srv2  5.0 MiB  256 MiB  90.0 MiB free",
    ]


# ------------------------------------------------------------------ with the databases (--with-database)

def db_facts(free_mib: float, files_mib: float, database_mib: float, same_disk: bool) -> dict:
    """server_facts on a target with the env's database as an extra path: on the files' filesystem, or on
    a filesystem of its own (device 9) with ``free_mib`` free too."""
    if same_disk:
        return {"memory": {"available_mb": 4096}, "filesystems": [
            {"device": 1, "free_bytes": int(free_mib * MIB), "need_bytes": int((files_mib + database_mib) * MIB),
             "extra_bytes": int(database_mib * MIB)}]}
    return {"memory": {"available_mb": 4096}, "filesystems": [
        {"device": 1, "free_bytes": int(free_mib * MIB), "need_bytes": int(files_mib * MIB), "extra_bytes": 0},
        {"device": 9, "free_bytes": int(free_mib * MIB), "need_bytes": int(database_mib * MIB),
         "extra_bytes": int(database_mib * MIB)}]}


def test_database_fate() -> None:
    pg = {"engine": "postgresql", "server": "srv1", "name": "shop"}
    assert database_fate(pg, "srv1") == DATABASE_MOVES
    assert database_fate({**pg, "engine": "mariadb"}, "srv1") == DATABASE_STAYS
    assert database_fate({**pg, "server": "db1"}, "srv1") == DATABASE_ELSEWHERE
    assert database_fate({**pg, "engine": "mariadb", "server": "db1"}, "srv1") == DATABASE_ELSEWHERE
    assert database_fate(None, "srv1") == NO_DATABASE


def test_an_env_goes_only_where_its_files_and_its_database_fit() -> None:
    # srv2's files fit, but not with the database (on its PostgreSQL data directory's own disk);
    # srv3 holds both: the env goes to srv3 though srv2 has more room for its files
    needs = [EnvNeed("shop", 256, 30 * MIB, database_bytes=200 * MIB, database=DATABASE_MOVES)]
    plan = place("srv1", ["srv2", "srv3"], needs, cands({
        ("shop", "srv2"): db_facts(150, 100, 264, same_disk=False),
        ("shop", "srv3"): db_facts(400, 100, 264, same_disk=True),
    }), with_database=True)
    assert [(p.env, p.target, p.with_database, p.database_bytes) for p in plan.placed] == [("shop", "srv3", True, 200 * MIB)]


def test_a_database_that_does_not_fit_where_the_files_do_is_named() -> None:
    needs = [EnvNeed("shop", 256, 30 * MIB, database_bytes=200 * MIB, database=DATABASE_MOVES)]
    candidates = cands({("shop", "srv2"): db_facts(150, 100, 264, same_disk=True)})
    plan = place("srv1", ["srv2"], needs, candidates, with_database=True)
    assert not plan.complete and plan.unplaced[0].env == "shop"
    (reason,) = plan.unplaced[0].reasons
    assert reason == ("srv2 has 150.0 MiB free, shop needs 364.0 MiB (data, app, headroom and its database of "
                      "200.0 MiB with headroom)")
    # without the database the same target holds the files: the database is what did not fit
    files_only = place("srv1", ["srv2"], [EnvNeed("shop", 256, 30 * MIB)], cands({("shop", "srv2"): facts(150, 100)}))
    assert files_only.complete
    # on a filesystem of its own the reason names that one, the files' filesystem fitting
    plan = place("srv1", ["srv2"], needs, cands({("shop", "srv2"): db_facts(150, 100, 264, same_disk=False)}),
                 with_database=True)
    assert "shop needs 264.0 MiB (data, app, headroom and its database" in plan.unplaced[0].reasons[0]


def test_the_databases_count_once_per_filesystem_across_envs() -> None:
    # two envs each fit srv2 alone; their databases share srv2's data directory disk, which holds one
    needs = [EnvNeed(e, 0, 10 * MIB, database_bytes=100 * MIB, database=DATABASE_MOVES) for e in ("a", "b")]
    table = {(e, t): db_facts(300 if t == "srv2" else 1000, 20, 164, same_disk=False) for e in ("a", "b")
             for t in ("srv2", "srv3")}
    plan = place("srv1", ["srv2", "srv3"], needs, cands(table), with_database=True)
    assert sorted(p.target for p in plan.placed) == ["srv2", "srv3"]
    plan = place("srv1", ["srv2"], needs, cands({k: v for k, v in table.items() if k[1] == "srv2"}), with_database=True)
    assert len(plan.placed) == 1 and "after 164.0 MiB planned for other envs" in plan.unplaced[0].reasons[0]


def test_a_database_that_cannot_move_stays_with_a_warning_not_a_refusal() -> None:
    needs = [EnvNeed("shop", 0, 10 * MIB, database_bytes=50 * MIB, database=DATABASE_MOVES),
             EnvNeed("blog", 0, 5 * MIB, database=DATABASE_STAYS, left_behind=("its MariaDB database blog",)),
             EnvNeed("wiki", 0, 1 * MIB, database=DATABASE_ELSEWHERE)]
    plan = place("srv1", ["srv2"], needs, cands({(n.env, "srv2"): facts(1000, 100) for n in needs}), with_database=True)
    assert plan.complete
    by_env = {p.env: p for p in plan.placed}
    assert (by_env["shop"].with_database, by_env["blog"].with_database, by_env["wiki"].with_database) == (True, False, False)
    assert by_env["blog"].database_stays and not by_env["wiki"].database_stays
    assert plan.warnings == ["blog moves without its MariaDB database blog: it stays on srv1, so srv1 cannot be "
                             "switched off yet (the env reaches back to it)"]
    lines = plan_table(plan)
    assert lines[0].split() == ["env", "to", "data", "database", "memory", "tightest", "disk", "after"]
    assert "50.0 MiB" in lines[2] and "stays on srv1" in next(line for line in lines if line.startswith("blog"))
    assert lines[-1] == "warning: " + plan.warnings[0]
    data = plan.to_dict()
    assert data["with_database"] is True and data["warnings"] == plan.warnings
    assert {p["env"]: p["with_database"] for p in data["placed"]} == {"shop": True, "blog": False, "wiki": False}


def test_without_the_databases_the_plan_is_as_before() -> None:
    plan = place("srv1", ["srv2"], [EnvNeed("shop", 0, MIB)], cands({("shop", "srv2"): facts(1000, 100)}))
    assert plan_table(plan)[0].split() == ["env", "to", "data", "memory", "tightest", "disk", "after"]
    assert plan.warnings == [] and plan.to_dict()["with_database"] is False
    with pytest.raises(PlacementError, match="only planned with the databases"):
        place("srv1", ["srv2"], [EnvNeed("shop", 0, MIB, database=DATABASE_MOVES)],
              cands({("shop", "srv2"): facts(1000, 100)}))


def test_a_target_whose_postgresql_cannot_be_read_cannot_host_the_database() -> None:
    c = Candidate.from_facts("shop", "srv2", facts(1000, 10), {"failed": True, "msg": "cannot connect to PostgreSQL"})
    assert not c.reachable and "its PostgreSQL facts could not be read: cannot connect" in c.unreachable_reason


def test_a_failed_fact_module_under_failed_when_false_cannot_host() -> None:
    # the playbook registers the target facts with failed_when: false, which sets failed to false
    failed = {"failed": False, "failed_when_result": False, "msg": "cannot measure free space: boom"}
    c = Candidate.from_facts("shop", "srv2", failed)
    assert not c.reachable and c.unreachable_reason == "cannot measure free space: boom"
    db_failed = {"failed": False, "msg": "cannot connect to PostgreSQL: password authentication failed"}
    c = Candidate.from_facts("shop", "srv2", facts(1000, 10), db_failed)
    assert not c.reachable and "password authentication failed" in c.unreachable_reason
    assert Candidate.from_facts("shop", "srv2", facts(1000, 10), {"data_directory": "/var/lib/postgresql"}).reachable


def test_a_database_with_move_to_goes_only_there() -> None:
    # the database move sends a database to the move's target only: database.move_to must be that target
    need = EnvNeed("shop", 0, MIB, database_bytes=MIB, database=DATABASE_MOVES, database_to="srv3")
    both = cands({("shop", "srv2"): facts(50_000, 10), ("shop", "srv3"): facts(100, 10)})
    plan = place("srv1", ["srv2", "srv3"], [need], both, with_database=True)
    assert [(p.env, p.target) for p in plan.placed] == [("shop", "srv3")]
    plan = place("srv1", ["srv2"], [need], both[:1], with_database=True)
    assert plan.unplaced[0].reasons == ("srv2 is not where shop's database goes (database.move_to: srv3)",)
    # files only (the database stays or is elsewhere): move_to says nothing
    plan = place("srv1", ["srv2"], [EnvNeed("shop", 0, MIB, database=DATABASE_ELSEWHERE, database_to="srv3")],
                 both[:1], with_database=True)
    assert plan.complete


def test_what_the_env_connects_to_on_the_server_is_named_when_it_stays() -> None:
    # a plain evacuation leaves every database and Redis of the server where it is; with the
    # databases, only a PostgreSQL database on the server goes along
    pg = {"database": {"engine": "postgresql", "server": "srv1", "name": "shop"}}
    assert services_left_on(pg, "srv1", with_database=False) == (
        "its PostgreSQL database shop (--with-database moves it along)",)
    assert services_left_on(pg, "srv1", with_database=True) == ()
    assert services_left_on({"database": {"engine": "mariadb", "server": "srv1", "name": "notes"},
                             "redis": {"server": "srv1", "port": 6380, "db": 2}}, "srv1", with_database=True) == (
        "its MariaDB database notes", "its Redis (port 6380, db 2)")
    assert services_left_on({"database": {"engine": "mariadb", "server": "db1", "name": "notes"},
                             "redis": {"server": "cache1", "port": 6379, "db": 0}}, "srv1", with_database=False) == ()
    assert services_left_on({"database": None, "redis": None}, "srv1", with_database=False) == ()


def test_a_plan_without_the_databases_warns_of_what_stays_on_the_server() -> None:
    left = ("its PostgreSQL database shop (--with-database moves it along)", "its Redis (port 6379, db 0)")
    needs = [EnvNeed("shop", 0, MIB, left_behind=left), EnvNeed("wiki", 0, MIB)]
    plan = place("srv1", ["srv2"], needs, cands({(n.env, "srv2"): facts(1000, 100) for n in needs}))
    assert plan.complete and {p.env: p.left_behind for p in plan.placed} == {"shop": left, "wiki": ()}
    assert plan.warnings == ["shop moves without its PostgreSQL database shop (--with-database moves it along) and "
                             "its Redis (port 6379, db 0): they stay on srv1, so srv1 cannot be switched off yet "
                             "(the env reaches back to them)"]
    assert plan_table(plan)[-1] == "warning: " + plan.warnings[0]
    assert plan.to_dict()["placed"][0]["left_behind"] == list(left)
