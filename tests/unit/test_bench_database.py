"""The benchmark's --with-database: the option, which database it moves, the lag before the
freeze taken from the move record's passes, and the summary and table of the database figures."""

from __future__ import annotations

import pytest

from tests.bench import envs, options, report
from tests.bench.database import lag_before_freeze
from tests.testbed.config import TestbedConfig

CFG = TestbedConfig(4)


def test_with_database_is_off_unless_asked() -> None:
    assert options.parse([], known_envs=("shop",)).with_database is False
    assert options.parse(["--with-database", "--quick"], known_envs=("shop",)).with_database is True


def test_the_database_is_the_envs_own() -> None:
    db = envs.database("shop", "srv1", "srv2", CFG)
    assert (db.name, db.server, db.new_server) == ("shop", "srv1", "srv2")


def test_an_env_without_a_database_is_refused() -> None:
    with pytest.raises(ValueError, match="drop.*no PostgreSQL database.*--with-database needs one"):
        envs.database("drop", "srv1", "srv2", CFG)


def test_the_lag_before_the_freeze_is_the_last_pass_before_the_final_one() -> None:
    passes = [{"kind": "initial", "database_lag_bytes": 400, "database_lag_s": 0.03},
              {"kind": "catchup", "database_lag_bytes": 120, "database_lag_s": 0.01},
              {"kind": "final", "database_lag_bytes": 0, "database_lag_s": 0.0}]
    assert lag_before_freeze(passes) == {"bytes": 120, "seconds": 0.01, "max_bytes": 400, "max_seconds": 0.03}


def test_no_lag_recorded_is_none_not_zero() -> None:
    assert lag_before_freeze([{"kind": "initial"}])["bytes"] is None


def _run(lost_rows: int = 0, equal: bool = True) -> dict:
    return {"database": {"freeze_database_s": 0.3, "lost_rows": lost_rows, "lost_files": 0, "tables_equal": equal,
                         "tables": 12, "lag_before_freeze": {"bytes": 120, "seconds": 0.01, "max_bytes": 400,
                                                             "max_seconds": 0.03}}}


def test_the_database_figures_are_held_to_their_targets() -> None:
    good = {"database": report.database_summary([_run()])}
    assert report.met(good) == {"database.lost_rows": True, "database.lost_files": True, "database.tables_equal": True}
    table = report.table(good)
    assert "replication lag before the freeze, bytes (last pass, max) | 120 (max 400)" in table
    bad = {"database": report.database_summary([_run(), _run(lost_rows=2, equal=False)])}
    assert report.met(bad)["database.lost_rows"] is False
    assert report.met(bad)["database.tables_equal"] is False
