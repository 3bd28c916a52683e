"""Unit tests import the collection as ansible_collections.strackt.move (no install needed)."""

import os
import sys

_COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "collections"))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server on a Unix socket (tests/unit/pg_cluster.py). Skipped, saying
    why, where there is no server or no psycopg; on CI (CI=true) that is a failure instead: there
    the Makefile installs both and these tests must run."""
    import pg_cluster as pgc

    try:
        import psycopg  # noqa: F401
    except ImportError:
        why = "psycopg is not installed: pip install -e '.[pg-store]' (make venv does)"
        if pgc.ON_CI:
            pytest.fail(why)
        pytest.skip(why)
    cluster = pgc.start_cluster()
    if isinstance(cluster, str):
        if pgc.ON_CI:
            pytest.fail(cluster)
        pytest.skip(cluster)
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster):
    """The cluster's DSN (with its password), its tables dropped first: every test starts empty and
    the store creates them again."""
    import psycopg

    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS strackt_move_records, strackt_move_history, strackt_retained, "
                     "strackt_evacuations, strackt_evacuation_history")
    return pg_cluster.dsn()


@pytest.fixture(autouse=True)
def _no_inherited_record_store(monkeypatch):
    """A STRACKT_RECORD_STORE of the shell running the tests may name a real database: no test gets
    it (the tests of the store set it themselves)."""
    monkeypatch.delenv("STRACKT_RECORD_STORE", raising=False)
