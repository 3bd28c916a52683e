"""Pure logic of the database move: names, SCRAM verifiers, LSNs, pg_hba lines, schema dumps,
markers, the opt-in, preflight's refusals and schema drift."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest

from ansible_collections.strackt.move.plugins.module_utils import pg_files, pg_preflight
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils.pg_move import PgMoveError

MOVE = "shop-20261125T135235Z"


# ---- names -------------------------------------------------------------------------------


def test_names_are_lower_case_identifiers_with_a_suffix_per_direction():
    names = pg.names_for(MOVE)
    assert names.base == "strackt_shop_20261125t135235z"
    assert (names.role, names.publication) == (names.base, names.base)
    assert names.forward == names.base + "_fwd" and names.back == names.base + "_back"
    assert names.hba_marker == "# strackt-move db " + MOVE
    assert names.owns(names.forward) and names.owns(names.back) and names.owns(names.base)
    assert not names.owns("strackt_shop_20261125t135235z_other")


def test_long_move_ids_stay_within_postgres_name_limit_and_distinct():
    a = pg.names_for("e" * 31 + "-20261125T135235Z" + "x" * 40)
    b = pg.names_for("e" * 31 + "-20261125T135235Z" + "y" * 40)
    assert len(a.back) <= 63 and len(b.back) <= 63
    assert a.base != b.base


@pytest.mark.parametrize("bad", ["", "../x", "a b", "a;drop", None, 5, "-x"])
def test_bad_move_ids_are_refused(bad):
    with pytest.raises(PgMoveError, match="move_id"):
        pg.names_for(bad)


def test_conninfo_quotes_values():
    text = pg.conninfo("10.0.0.1", 5432, "shop", "r", "p'w\\d", "app")
    assert "password='p\\'w\\\\d'" in text
    assert text.startswith("host='10.0.0.1' port='5432' dbname='shop' user='r'")
    assert "application_name='app'" in text


@pytest.mark.parametrize("bad", ["short", "has a blank in it!!", "é" * 20, None])
def test_bad_passwords_are_refused(bad):
    with pytest.raises(PgMoveError, match="16 to 200 printable ASCII"):
        pg.check_password(bad)


# ---- SCRAM ---------------------------------------------------------------------------------
# RFC 7677's example exchange (user "user", password "pencil"): the verifier computed here must
# accept the client's proof and produce the server signature the RFC shows.

RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_AUTH = ("n=user,r=rOprNGfwEbeRWgbNEkqO,"
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").encode()
RFC_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_verifier_matches_rfc7677():
    verifier = pg.scram_verifier("pencil", RFC_SALT, 4096)
    head, keys = verifier.split("$", 1)[1].split("$")
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    client_signature = hmac.new(stored_key, RFC_AUTH, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC_PROOF, client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert base64.b64encode(hmac.new(server_key, RFC_AUTH, hashlib.sha256).digest()).decode() == RFC_SERVER_SIGNATURE


def test_scram_matches_its_own_password_only():
    verifier = pg.scram_verifier("a-move-password-123")
    assert pg.scram_matches("a-move-password-123", verifier)
    assert not pg.scram_matches("another-password-123", verifier)
    assert not pg.scram_matches("a-move-password-123", None)
    assert not pg.scram_matches("a-move-password-123", "md5abcdef")
    assert pg.scram_verifier("x" * 16) != pg.scram_verifier("x" * 16)  # a fresh salt each time


# ---- LSNs ----------------------------------------------------------------------------------


def test_lsn_round_trip_and_order():
    assert pg.parse_lsn("0/196CFE8") == 0x196CFE8
    assert pg.parse_lsn("1/0") == 1 << 32
    assert pg.parse_lsn("1/0") > pg.parse_lsn("0/FFFFFFFF")
    assert pg.format_lsn(pg.parse_lsn("A/1B2C")) == "A/1B2C"
    assert pg.parse_lsn(None) is None


# ---- pg_hba.conf -------------------------------------------------------------------------

HBA = """# PostgreSQL Client Authentication Configuration File
#
local   all             postgres                                peer
host    all             all             127.0.0.1/32            scram-sha-256
host shop shop 10.77.0.12/32 scram-sha-256 # strackt-move shop
"""


def test_hba_rule_goes_first_once_and_comes_out_exactly():
    names = pg.names_for(MOVE)
    rule = pg_files.hba_rule("shop", names.role, "10.77.0.12", names.hba_marker)
    assert rule == "host shop %s 10.77.0.12/32 scram-sha-256 # strackt-move db %s" % (names.role, MOVE)
    text, changed = pg_files.add_hba_rule(HBA, rule)
    assert changed
    lines = text.splitlines()
    assert lines[2] == rule and lines[3].startswith("local")
    assert pg_files.add_hba_rule(text, rule) == (text, False)
    assert pg_files.hba_moves(text) == [MOVE]
    back, removed = pg_files.remove_hba_rules(text, names.hba_marker)
    assert removed == [rule]
    assert back == HBA  # the env's own rule (# strackt-move shop) stays
    assert pg_files.remove_hba_rules(HBA, names.hba_marker) == (HBA, [])


def test_hba_rule_of_another_move_is_not_removed():
    other = pg.names_for("shop-20261001T000000Z")
    rule = pg_files.hba_rule("shop", other.role, "10.0.0.9", other.hba_marker)
    text, _ = pg_files.add_hba_rule(HBA, rule)
    assert pg_files.remove_hba_rules(text, pg.names_for(MOVE).hba_marker)[1] == []


def test_hba_rule_ipv6_and_bad_address():
    assert " ::1/128 " in pg_files.hba_rule("shop", "r", "::1", "# m")
    with pytest.raises(PgMoveError, match="not an IP address"):
        pg_files.hba_rule("shop", "r", "srv2.example.com", "# m")


# ---- schema dump ---------------------------------------------------------------------------

DUMP = """CREATE TABLE public.shop_order (id bigint NOT NULL);
ALTER TABLE public.shop_order OWNER TO shop;
ALTER SEQUENCE public.shop_order_id_seq OWNER TO shop;
GRANT SELECT ON TABLE public.shop_order TO strackt_shop_20261125t135235z;
GRANT SELECT ON TABLE public.shop_order TO reporting, "Odd Role";
GRANT USAGE ON SCHEMA public TO strackt_shop_20261125t135235z;
REVOKE ALL ON TABLE public.x FROM PUBLIC;
"""


def test_filter_dump_drops_only_the_moves_own_grants():
    out = pg_files.filter_dump(DUMP, "strackt_shop_20261125t135235z")
    assert "strackt_shop" not in out
    assert "TO reporting" in out and "OWNER TO shop" in out


def test_dump_roles_lists_owners_and_grantees():
    roles = pg_files.dump_roles(pg_files.filter_dump(DUMP, "strackt_shop_20261125t135235z"))
    assert roles == {"shop", "reporting", "Odd Role"}


# ---- markers -------------------------------------------------------------------------------


def test_markers_prove_which_database_a_move_created(tmp_path):
    marker_dir = str(tmp_path / "markers")
    marker = pg_files.load_marker(MOVE, "shop", 5432, marker_dir)
    assert marker["oid"] is None and marker["roles"] == []
    marker["roles"] = ["shop"]
    pg_files.save_marker(marker, marker_dir)
    marker = pg_files.load_marker(MOVE, "shop", 5432, marker_dir)
    marker["oid"] = 16400
    pg_files.save_marker(marker, marker_dir)
    assert oct(os.stat(pg_files.marker_path(MOVE, marker_dir)).st_mode & 0o777) == "0o600"
    markers = pg_files.read_markers(marker_dir)
    assert markers == [{"move_id": MOVE, "database": "shop", "port": 5432, "oid": 16400, "roles": ["shop"]}]
    assert pg_files.created_by(markers, "shop", 16400, 5432) == MOVE
    assert pg_files.created_by(markers, "shop", 16401, 5432) is None   # dropped and made again by someone
    assert pg_files.created_by(markers, "shop", 16400, 5433) is None
    (tmp_path / "markers" / "broken.json").write_text("{not json")
    assert len(pg_files.read_markers(marker_dir)) == 1
    assert pg_files.remove_marker(MOVE, marker_dir) and not pg_files.remove_marker(MOVE, marker_dir)
    assert pg_files.read_markers(str(tmp_path / "none")) == []


# ---- opt-in --------------------------------------------------------------------------------

DB = {"engine": "postgresql", "server": "srv1", "name": "shop", "user": "shop", "port": 5432}


def test_database_stays_unless_asked():
    assert pg_preflight.database_plan(DB, "srv1", "srv2") == pg_preflight.DatabasePlan(False, None)
    assert pg_preflight.database_plan(dict(DB, move=True), "srv1", "srv2", move_database=False).move is False
    assert pg_preflight.database_plan(None, "srv1", "srv2") == pg_preflight.DatabasePlan(False, None)


def test_database_goes_to_the_target():
    assert pg_preflight.database_plan(dict(DB, move=True), "srv1", "srv2") == pg_preflight.DatabasePlan(True, "srv2")
    assert pg_preflight.database_plan(DB, "srv1", "srv2", move_database=True).new_server == "srv2"
    assert pg_preflight.database_plan(dict(DB, move=True, move_to="srv2"), "srv1", "srv2").new_server == "srv2"


@pytest.mark.parametrize("database,env_server,target,match", [
    (dict(DB, move="yes"), "srv1", "srv2", "true or false"),
    (None, "srv1", "srv2", "no PostgreSQL database"),
    (dict(DB, engine="mysql"), "srv1", "srv2", "no PostgreSQL database"),
    (dict(DB, server="db1"), "srv1", "srv2", r"runs on db1, not on the server the env runs on \(srv1\)"),
    (dict(DB, move_to="srv3"), "srv1", "srv2", r"move_to \(srv3\) differs from the target \(srv2\)"),
    (DB, "srv1", "srv1", "already lives on srv1"),
])
def test_database_plan_refuses_what_cannot_move_saying_what_to_do(database, env_server, target, match):
    with pytest.raises(PgMoveError, match=match):
        pg_preflight.database_plan(database, env_server, target,
                                   move_database=None if match == "true or false" else True)


def test_the_plan_module_names_the_env_and_changes_nothing():
    from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed
    from ansible_collections.strackt.move.plugins.modules import pg_move_plan
    params = dict(env="shop", database=DB, env_server="srv1", target="srv2", move_database=None)
    assert pg_move_plan.work(params, False) == dict(changed=False, move=False, server=None)
    assert pg_move_plan.work(dict(params, move_database=True), False)["server"] == "srv2"
    with pytest.raises(TaskFailed, match=r"^shop: the database cannot move with this move - .*Nothing was changed"):
        pg_move_plan.work(dict(params, database=dict(DB, move=True, move_to="srv3")), False)


# ---- preflight -----------------------------------------------------------------------------

def source_facts(**changes):
    facts = dict(running=True, major=15, wal_level="logical", database_exists=True, database_size=8 * pg.MIB,
                 free_replication_slots=10, free_wal_senders=10, tables_without_identity=[], unlogged_tables=[],
                 materialized_views=[], large_objects=0, listen_addresses="*", installed_majors=[15],
                 objects=dict(slots=[], subscriptions=[], publications=[], roles=[], hba_moves=[], orphan_sync_slots=[]),
                 disk={"measured_at": "/var/lib/postgresql/15/main", "free_bytes": 10 << 30})
    facts.update(changes)
    return facts


def new_facts(**changes):
    facts = dict(running=False, major=None, installed_majors=[15], database_exists=False, created_by_move=None,
                 objects=dict(slots=[], subscriptions=[], publications=[], roles=[], hba_moves=[], orphan_sync_slots=[]),
                 disk={"measured_at": "/var/lib/postgresql/15/main", "free_bytes": 10 << 30})
    facts.update(changes)
    return facts


def refusals(source=None, new=None, **kwargs):
    return pg_preflight.preflight(source or source_facts(), new or new_facts(), source_name="srv1", new_name="srv2",
                                  database="shop", move_id=kwargs.pop("move_id", MOVE),
                                  new_address=kwargs.pop("new_address", "10.77.0.12"), **kwargs)


def test_a_movable_database_has_no_refusal():
    assert refusals() == ([], [])


def test_running_new_server_that_fits_has_no_refusal():
    new = new_facts(running=True, major=15, wal_level="logical", listen_addresses="localhost,10.77.0.12",
                    free_replication_slots=10)
    assert refusals(new=new) == ([], [])


@pytest.mark.parametrize("source,new,expect", [
    (source_facts(wal_level="replica"), None, ["wal_level=replica", "ALTER SYSTEM SET wal_level = logical", "restart"]),
    (None, new_facts(running=True, major=16, wal_level="logical", listen_addresses="*", free_replication_slots=5),
     ["srv2 runs PostgreSQL 16", "srv1 runs 15"]),
    (source_facts(tables_without_identity=["public.log", "public.audit"]), None,
     ["public.log, public.audit", "REPLICA IDENTITY FULL", "primary key"]),
    (source_facts(unlogged_tables=["public.cache"]), None, ["public.cache", "SET LOGGED"]),
    (source_facts(large_objects=3), None, ["3 large objects", "bytea"]),
    (None, new_facts(disk={"measured_at": "/var/lib/postgresql", "free_bytes": 4 * pg.MIB}),
     ["not enough disk for shop on srv2", "4.0 MiB free at /var/lib/postgresql", "264.0 MiB needed"]),
    (source_facts(objects=dict(slots=[{"name": "strackt_shop_20261001t000000z_fwd"}], subscriptions=[],
                               publications=["strackt_shop_20261001t000000z"], roles=[], hba_moves=[],
                               orphan_sync_slots=[])), None,
     ["srv1 holds replication objects of another move", "slot strackt_shop_20261001t000000z_fwd",
      "publication strackt_shop_20261001t000000z", "pg_move_cleanup", "keeps WAL"]),
    (None, new_facts(objects=dict(slots=[], subscriptions=[], publications=[], roles=["strackt_old"],
                                  hba_moves=["shop-old"], orphan_sync_slots=["pg_16400_sync_16385_7"])),
     ["srv2 holds", "role strackt_old", "pg_hba rule of move shop-old", "table-sync slot pg_16400_sync_16385_7"]),
    (None, new_facts(running=True, major=15, wal_level="replica", listen_addresses="*", free_replication_slots=5),
     ["srv2 has wal_level=replica", "the way back"]),
    (None, new_facts(running=True, major=15, wal_level="logical", listen_addresses="localhost", free_replication_slots=5),
     ["listens on 'localhost' only", "listen_addresses = 'localhost,10.77.0.12'"]),
    (None, new_facts(database_exists=True, created_by_move=None), ["already has a database shop"]),
    (source_facts(free_replication_slots=0), None, ["no free replication slot"]),
])
def test_each_refusal_says_what_is_wrong_and_what_to_do(source, new, expect):
    found, _warnings = refusals(source, new)
    assert len(found) == 1, found
    for text in expect:
        assert text in found[0], (text, found[0])


def test_all_refusals_are_reported_at_once():
    found, _ = refusals(source_facts(wal_level="replica", large_objects=1, unlogged_tables=["public.u"]),
                        new_facts(disk={"measured_at": "/", "free_bytes": 0}))
    assert len(found) == 4


def test_the_moves_own_objects_are_not_leftovers_on_resume():
    names = pg.names_for(MOVE)
    objects = dict(slots=[{"name": names.forward}], subscriptions=[], publications=[names.publication],
                   roles=[names.role], hba_moves=[MOVE], orphan_sync_slots=[])
    new = new_facts(database_exists=True, created_by_move=MOVE, objects=dict(objects, slots=[], subscriptions=[
        {"name": names.forward}]))
    assert refusals(source_facts(objects=objects), new) == ([], [])
    found, _ = refusals(source_facts(objects=objects), new, move_id="shop-20990101T000000Z")
    assert len(found) == 3  # both servers' leftovers and the database it did not create


def test_source_down_or_database_missing_stops_early():
    assert "not running on srv1" in refusals(source_facts(running=False))[0][0]
    assert "database shop does not exist on srv1" in refusals(source_facts(database_exists=False))[0][0]


def test_warnings_do_not_refuse():
    found, warnings = refusals(source_facts(materialized_views=["public.mv"]), new_facts(installed_majors=[]))
    assert found == []
    assert any("public.mv" in w for w in warnings) and any("installs it" in w for w in warnings)


def test_name_lists_are_bounded():
    text = pg.name_list(["t%d" % i for i in range(30)])
    assert text.endswith("and 10 more") and "t19" in text and "t20" not in text


# ---- schema drift --------------------------------------------------------------------------


def test_schema_differences_name_each_side():
    old = ["table public.a", "column public.a.x integer", "column public.a.y text"]
    new = ["table public.a", "column public.a.x integer"]
    assert pg.schema_differences(old, new, "srv1", "srv2") == ["only on srv1: column public.a.y text"]
    assert pg.schema_differences(new, old, "srv1", "srv2") == ["only on srv2: column public.a.y text"]
    assert pg.schema_differences(old, list(reversed(old)), "a", "b") == []


def test_sequence_mismatches():
    want = [{"name": "s", "last_value": 5, "is_called": True}]
    assert pg.sequence_mismatches(want, [{"name": "s", "last_value": 5, "is_called": True}]) == []
    assert "s:" in pg.sequence_mismatches(want, [{"name": "s", "last_value": 5, "is_called": False}])[0]
    assert pg.sequence_mismatches(want, []) != []


def test_crash_point_only_where_asked(monkeypatch):
    killed = []
    monkeypatch.setattr(pg.os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setenv(pg.CRASH_ENV, "a:b, c:d")
    pg.crash_point("x:y")
    assert killed == []
    pg.crash_point("c:d")
    assert killed == [pg.signal.SIGKILL]


def test_facts_json_round_trip_is_plain_data():
    # what preflight gets back through Ansible: lists and dicts only
    assert json.loads(json.dumps(source_facts())) == source_facts()


# ---- facts helpers -------------------------------------------------------------------------


def test_installed_majors_are_those_with_a_server_binary(tmp_path):
    from ansible_collections.strackt.move.plugins.modules import pg_move_facts

    for major, binary in (("15", True), ("16", False), ("13", True), ("common", True)):
        (tmp_path / major / "bin").mkdir(parents=True)
        if binary:
            (tmp_path / major / "bin" / "postgres").write_text("")
    assert pg_move_facts.installed_majors(str(tmp_path)) == [13, 15]
    assert pg_move_facts.installed_majors(str(tmp_path / "missing")) == []


def test_free_disk_is_measured_where_the_data_directory_will_be(tmp_path):
    from ansible_collections.strackt.move.plugins.modules import pg_move_facts

    disk = pg_move_facts.free_disk(str(tmp_path / "15" / "main"))
    assert disk["measured_at"] == str(tmp_path) and disk["free_bytes"] > 0
