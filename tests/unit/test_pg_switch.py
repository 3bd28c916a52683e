"""The switch's decisions, over a fake pair of servers: what it refuses (changing nothing), its
order, its commit point, and reruns after a crash at each step reaching the same end.

The real thing runs on the testbed (tests/integration/test_pg_move.py); here the SQL functions
of pg_move are replaced by a model of the two servers' replication state."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils import pg_switch
from ansible_collections.strackt.move.plugins.module_utils.pg_move import PgMoveError

NAMES = pg.names_for("shop-20261125T135235Z")


@dataclass
class Server:
    label: str
    lsn: int = 1000
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    login: bool = True
    sequences: dict[str, tuple[int, bool]] = field(default_factory=dict)
    sessions: list[str] = field(default_factory=list)
    schema: list[str] = field(default_factory=lambda: ["table public.shop_order"])
    not_ready: list[str] = field(default_factory=list)
    peer: "Server | None" = None

    def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        assert "pg_create_logical_replication_slot" in sql, sql
        self.slots[params[0]] = {"confirmed": self.lsn, "active": False}
        return [{}]

    def state(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in ("peer", "label")}


class Crash(Exception):
    pass


@pytest.fixture
def pair(monkeypatch):
    old = Server("old", sequences={"public.shop_order_id_seq": (105, True)})
    new = Server("new", sequences={"public.shop_order_id_seq": (1, False)})
    old.peer, new.peer = new, old
    old.slots[NAMES.forward] = {"confirmed": old.lsn, "active": True}
    new.subs[NAMES.forward] = {"origin": 0}

    def set_login(db, role, login):
        changed = db.login != login
        db.login = login
        return changed

    def drop_slot_if_inactive(db, name):
        if name in db.slots and not db.slots[name]["active"]:
            del db.slots[name]
            return True
        return False

    def terminate(db, name):
        if name in db.slots:
            db.slots[name]["active"] = False

    def create_subscription(db, name, connection, publication, copy_data):
        assert not copy_data and name not in db.subs and name not in db.peer.slots
        db.peer.slots[name] = {"confirmed": db.peer.lsn, "active": True}
        db.subs[name] = {"origin": 0}

    def drop_subscription(db, name):
        if name not in db.subs:
            return "absent"
        del db.subs[name]
        db.peer.slots.pop(name, None)
        return "dropped"

    functions = dict(
        subscription_exists=lambda db, name: name in db.subs,
        slot=lambda db, name: ({"confirmed_flush_lsn": pg.format_lsn(db.slots[name]["confirmed"]),
                                "active": db.slots[name]["active"]} if name in db.slots else None),
        set_login=set_login,
        role_state=lambda db, role: {"login": db.login, "replication": True},
        terminate_slot_users=terminate,
        drop_slot_if_inactive=drop_slot_if_inactive,
        other_sessions=lambda db: list(db.sessions),
        schema_fingerprint=lambda db: list(db.schema),
        tables_not_ready=lambda db, name: list(db.not_ready),
        current_lsn=lambda db: db.lsn,
        read_sequences=lambda db: [{"name": k, "last_value": v[0], "is_called": v[1]} for k, v in db.sequences.items()],
        write_sequences=lambda db, values: db.sequences.update({v["name"]: (v["last_value"], v["is_called"])
                                                                for v in values}),
        create_subscription=create_subscription,
        drop_subscription=drop_subscription,
        origin_progress=lambda db, name: db.subs[name]["origin"] or None,
    )
    for name, fn in functions.items():
        monkeypatch.setattr(pg, name, fn)
    monkeypatch.setattr(pg, "crash_point", lambda step: None)
    return old, new


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def sides(old, new):
    return pg_switch.Sides(old=old, new=new, old_name="srv1", new_name="srv2", database="shop")


def run_switch(old, new, **kwargs):
    clock = Clock()
    return pg_switch.switch(sides(old, new), NAMES, "conninfo", clock=clock, sleep=clock.sleep, **kwargs)


def switched_state(old, new):
    return old.state(), new.state()


def test_switch_copies_sequences_stops_forward_and_starts_the_way_back(pair):
    old, new = pair
    report = run_switch(old, new)
    assert report.state == "switched" and report.changed and not report.already
    assert new.sequences == old.sequences
    assert not old.login                                   # the forward path cannot come back
    assert NAMES.forward not in old.slots                  # its slot is gone: no WAL kept for it
    assert NAMES.back in old.subs and NAMES.back in new.slots
    assert list(report.timings) == ["prepare", "sessions", "checks", "wait_applied", "sequences", "stop_forward",
                                    "way_back", "drop_forward_slot"]
    again = run_switch(old, new)
    assert again.already and not again.changed and again.state == "switched"


@pytest.mark.parametrize("trouble,match", [
    (lambda old, new: old.sessions.append("shop@10.0.0.5 pid 7"), "1 session\\(s\\) still use shop on srv1"),
    (lambda old, new: old.schema.append("column public.shop_order.customer bigint"),
     "only on srv1: column public.shop_order.customer bigint"),
    (lambda old, new: new.not_ready.append("public.shop_order (d)"), "initial copy to srv2 has not finished"),
    (lambda old, new: old.slots[NAMES.forward].update(confirmed=old.lsn - 300), "300 bytes behind"),
    (lambda old, new: old.slots.pop(NAMES.forward), "no forward replication slot"),
])
def test_a_refused_switch_changes_nothing(pair, trouble, match):
    old, new = pair
    trouble(old, new)
    before = switched_state(old, new)
    with pytest.raises(PgMoveError, match=match) as caught:
        run_switch(old, new)
    assert not caught.value.changed
    assert switched_state(old, new) == before


def test_check_mode_waits_and_checks_but_changes_nothing(pair):
    old, new = pair
    before = switched_state(old, new)
    report = run_switch(old, new, check_only=True)
    assert report.checked_only and report.state == "not_switched"
    assert switched_state(old, new) == before


def test_the_wait_ends_as_soon_as_the_new_server_confirms(pair, monkeypatch):
    old, new = pair
    old.slots[NAMES.forward]["confirmed"] = old.lsn - 10
    probes = []
    real_slot = pg.slot

    def slot(db, name):
        probes.append(name)
        if len(probes) == 5:
            db.slots[name]["confirmed"] = db.lsn  # the subscriber's feedback arrives
        return real_slot(db, name)

    monkeypatch.setattr(pg, "slot", slot)
    assert run_switch(old, new).state == "switched"


@pytest.mark.parametrize("crash_at", ["switch:after_sequences", "switch:after_stop_forward", "switch:after_way_back"])
def test_a_crash_at_any_step_then_a_rerun_ends_switched(pair, monkeypatch, crash_at):
    old, new = pair

    def crash(step):
        if step == crash_at:
            raise Crash(step)

    monkeypatch.setattr(pg, "crash_point", crash)
    with pytest.raises(Crash):
        run_switch(old, new)
    monkeypatch.setattr(pg, "crash_point", lambda step: None)
    assert run_switch(old, new).state == "switched"
    assert not old.login and NAMES.forward not in old.slots
    assert NAMES.back in old.subs and NAMES.back in new.slots
    assert new.sequences == old.sequences


def test_a_rerun_after_a_crash_before_the_commit_point_resumes_the_forward_path_first(pair, monkeypatch):
    old, new = pair
    monkeypatch.setattr(pg, "crash_point", lambda step: (_ for _ in ()).throw(Crash()) if step ==
                        "switch:after_stop_forward" else None)
    with pytest.raises(Crash):
        run_switch(old, new)
    assert not old.login
    # the old server served again meanwhile (a failed freeze restarts the app): the forward
    # slot is still there, so the rerun waits for what was written since
    old.lsn += 500
    old.slots[NAMES.forward]["confirmed"] = old.lsn - 500
    with pytest.raises(PgMoveError, match="500 bytes behind") as caught:
        monkeypatch.setattr(pg, "crash_point", lambda step: None)
        run_switch(old, new)
    assert caught.value.changed and old.login             # LOGIN back: the new server catches up again
    old.slots[NAMES.forward]["confirmed"] = old.lsn
    assert run_switch(old, new).state == "switched"


def test_undo_before_the_app_ran_brings_back_the_forward_path(pair):
    old, new = pair
    run_switch(old, new)
    clock = Clock()
    report = pg_switch.undo(sides(old, new), NAMES, clock=clock, sleep=clock.sleep)
    assert report.state == "not_switched" and report.changed
    assert old.login and NAMES.forward in old.slots
    assert NAMES.back not in old.subs and NAMES.back not in new.slots
    assert pg_switch.undo(sides(old, new), NAMES, clock=clock, sleep=clock.sleep).already


def test_undo_refuses_once_the_new_server_sent_changes_back(pair):
    old, new = pair
    run_switch(old, new)
    old.subs[NAMES.back]["origin"] = 4242
    before = switched_state(old, new)
    with pytest.raises(PgMoveError, match="roll back after the switch"):
        pg_switch.undo(sides(old, new), NAMES)
    assert switched_state(old, new) == before


def test_back_brings_sequences_home_and_ends_the_way_back(pair):
    old, new = pair
    run_switch(old, new)
    new.sequences["public.shop_order_id_seq"] = (110, True)
    new.lsn += 200
    new.slots[NAMES.back]["confirmed"] = new.lsn
    clock = Clock()
    report = pg_switch.back(sides(old, new), NAMES, clock=clock, sleep=clock.sleep)
    assert report.state == "back" and report.changed
    assert old.sequences["public.shop_order_id_seq"] == (110, True)
    assert NAMES.back not in old.subs and NAMES.back not in new.slots
    assert pg_switch.back(sides(old, new), NAMES, clock=clock, sleep=clock.sleep).already


def test_back_waits_for_the_old_server_and_refuses_at_the_deadline(pair):
    old, new = pair
    run_switch(old, new)
    new.lsn += 200  # written on the new server, not yet applied on the old one
    before = switched_state(old, new)
    clock = Clock()
    with pytest.raises(PgMoveError, match="srv1 has not applied everything"):
        pg_switch.back(sides(old, new), NAMES, timeout_s=1.0, clock=clock, sleep=clock.sleep)
    assert switched_state(old, new) == before
    assert clock.now >= 1.0


def test_back_before_any_switch_is_a_no_op(pair):
    old, new = pair
    report = pg_switch.back(sides(old, new), NAMES)
    assert report.already and report.state == "not_switched" and not report.changed


def test_catch_up_waits_for_the_old_server_while_the_app_still_runs_and_changes_nothing(pair):
    """Before the rollback's hold: the new server's app still holds sessions (back would wait for
    them); catch_up only checks the schemas and waits until the old one applied what was written."""
    old, new = pair
    run_switch(old, new)
    new.sessions.append("shop@127.0.0.1 pid 9")  # the app on the new server, still serving
    new.lsn += 200
    clock = Clock()
    with pytest.raises(PgMoveError, match="srv1 has not applied everything"):
        pg_switch.catch_up(sides(old, new), NAMES, timeout_s=1.0, clock=clock, sleep=clock.sleep)
    new.slots[NAMES.back]["confirmed"] = new.lsn
    before = switched_state(old, new)
    report = pg_switch.catch_up(sides(old, new), NAMES, clock=clock, sleep=clock.sleep)
    assert not report.changed and report.checked_only and list(report.timings) == ["checks", "wait_applied"]
    assert switched_state(old, new) == before


def test_catch_up_before_any_switch_is_a_no_op(pair):
    old, new = pair
    report = pg_switch.catch_up(sides(old, new), NAMES)
    assert report.already and not report.changed
