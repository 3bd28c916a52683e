"""`strackt-move evacuate` on the testbed: srv1 runs three envs (shop on PostgreSQL, notes on
MariaDB with a worker and a timer, drop on Redis), srv2 has room for all, srv3 only 64 MiB on
/srv. The plan from the real servers, the refusals that change nothing, and the evacuation of
srv1 to srv2 and srv3 with two preparations at once under one client per env, its driver
SIGKILLed mid-way and continued, a second driver refused meanwhile.

srv3's 64 MiB hold none of the envs as the testbed defines them (each asks 64 MiB of headroom
on top of its data and code). The evacuation tests give drop a headroom of 16 MiB in their own
copy of the inventory, so srv3 has room for drop only: the plan must put drop there and the
other two on srv2."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.strackt.move.plugins.module_utils import clock

from tests.faults._lib import cli, copy_inventory, edit_vars, read_until, spawn
from tests.faults.test_any_app_moves import DOMAINS, client_of, unit_states
from tests.testbed import Testbed, inventory
from tests.testbed.config import DROP_NAME, ENV_NAME, NOTES_NAME, REPO_ROOT
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

ENVS = (ENV_NAME, NOTES_NAME, DROP_NAME)
SMALL_HEADROOM_MB = 16
PLACED = {ENV_NAME: "srv2", NOTES_NAME: "srv2", DROP_NAME: "srv3"}
CUTOVER_DEFAULTS = REPO_ROOT / "collections/ansible_collections/strackt/move/roles/cutover/defaults/main.yml"


def _state(bed: Testbed) -> dict[str, object]:
    evacs = bed.cfg.state_dir / "moves" / "evacuations"
    return {"evacuations": sorted(p.name for p in evacs.glob("*.json")) if evacs.is_dir() else [],
            "moves": json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]}


def drop_fits_on_srv3(bed: Testbed, dest: Path) -> Path:
    """A copy of the testbed's inventory (its own attachment registry) in which drop asks only
    SMALL_HEADROOM_MB of headroom: srv3's /srv has room for it, not for shop or notes."""
    inv = copy_inventory(bed, dest)
    edit_vars(inv, "environments.yml",
              lambda d: d["strackt_environments"][DROP_NAME].__setitem__("disk_headroom_mb", SMALL_HEADROOM_MB))
    return inv


def planned(out: str) -> dict[str, str]:
    """env -> target from the plan the evacuation prints (`  shop   → srv2  (...)`)."""
    return dict(re.findall(r"^\s+([a-z][a-z0-9-]*)\s+→ (srv\d+)\s", out, re.M))


def freeze_budget_s(inv: Path) -> float:
    """A single move's freeze budget: the inventory's cutover_freeze_budget_s, else the role's default."""
    main = yaml.safe_load((inv / "group_vars" / "all" / "main.yml").read_text()) or {}
    if "cutover_freeze_budget_s" in main:
        return float(main["cutover_freeze_budget_s"])
    return float(yaml.safe_load(CUTOVER_DEFAULTS.read_text())["cutover_freeze_budget_s"])


def seconds(start: str, end: str) -> float:
    return clock.seconds_since(start, clock.parse_ts(end))


def test_plans_and_refusals_change_nothing(fresh_testbed: Testbed, tmp_path: Path) -> None:
    bed = fresh_testbed
    before = _state(bed)

    as_defined = cli(bed, "evacuate", "srv1", "--plan")
    assert as_defined.returncode == 0, as_defined.stderr
    assert planned(as_defined.stdout) == {env: "srv2" for env in ENVS}, as_defined.stdout  # srv3 fits none

    # the plan with drop's small headroom (drop on srv3) is the evacuation test's: its status and
    # its moves' targets show it, so it is not planned a second time here

    nothing = cli(bed, "evacuate", "srv2", "--yes")
    assert nothing.returncode == 3 and "no env is attached to srv2" in nothing.stderr

    no_room = cli(bed, "evacuate", "srv1", "--to", "srv3", "--yes")
    assert no_room.returncode == 3, no_room.stderr
    for env in ENVS:
        assert f"{env} (srv3 has" in no_room.stderr, no_room.stderr
    assert "nothing was changed" in no_room.stderr

    itself = cli(bed, "evacuate", "srv1", "--to", "srv1,srv2", "--yes")
    assert itself.returncode == 2 and "srv1 cannot be evacuated to itself" in itself.stderr

    unknown = cli(bed, "evacuate", "srv1", "--to", "srv9", "--yes")
    assert unknown.returncode == 3 and "srv9 are not servers of the inventory" in unknown.stderr

    assert _state(bed) == before
    for server in ("srv2", "srv3"):
        for env in ENVS:
            assert bed.ssh(server, f"test -e /srv/{env}", check=False).returncode != 0, f"{server} got {env}"


def test_evacuating_srv1_under_load_survives_a_sigkill_and_refuses_a_second_driver(
        fresh_testbed: Testbed, tmp_path: Path) -> None:
    bed = fresh_testbed
    inv = drop_fits_on_srv3(bed, tmp_path / "inventory")
    budget = freeze_budget_s(inv)
    definitions = inventory.all_environments(bed.cfg)
    units = {env: [f"strackt-env-{env}-{process}.service" for process in definitions[env]["processes"]]
             + [f"strackt-env-{env}-{job}.timer" for job in definitions[env].get("schedule") or {}]
             for env in ENVS}
    clients = {env: client_of(bed, env, 1).start() for env in ENVS}
    first = None
    try:
        began = time.monotonic()
        first = spawn(bed, "evacuate", "srv1", "--parallel", "2", "--yes", inventory=inv)
        read_until(first, "] start: strackt-move start ")
        second = cli(bed, "evacuate", "srv1", "--yes", inventory=inv)
        assert second.returncode == 5 and "evacuation of srv1 is driven by" in second.stderr, second.stderr
        read_until(first, "] == [4/5] sync")
        first.send_signal(signal.SIGKILL)  # the evacuation dies; its child moves go on by themselves
        first.wait(timeout=30)

        status = cli(bed, "status", "--server", "srv1", "--json")
        assert status.returncode == 0, status.stderr
        assert {m["env"]: m["target"] for m in json.loads(status.stdout)["moves"]} == PLACED

        again = cli(bed, "evacuate", "srv1", inventory=inv, timeout=3600)  # continues: the plan was confirmed
        took = time.monotonic() - began
        assert again.returncode == 0, again.stdout[-6000:] + again.stderr
        assert "continuing the evacuation of srv1" in again.stdout, again.stdout[-3000:]
        # srv1 keeps shop's PostgreSQL, notes' MariaDB and drop's Redis: never called empty
        assert "is empty" not in again.stdout
        stays = re.search(r"srv1 still runs what (.+) connects? to: do not switch it off yet", again.stdout)
        assert stays and sorted(stays.group(1).split(", ")) == sorted(PLACED), again.stdout[-3000:]
        time.sleep(2)
    finally:
        for client in clients.values():
            client.stop()
        if first is not None and first.poll() is None:
            first.kill()
        logs = bed.cfg.state_dir / "moves" / "evacuations" / "srv1-logs"
        if logs.is_dir():  # each move's whole output, kept past the testbed's reset
            shutil.copytree(logs, tmp_path / "evacuation-logs", dirs_exist_ok=True)

    failed = {env: c.failed() for env, c in clients.items()}
    lost = {env: c.settled_lost_writes() for env, c in clients.items()}
    done = {m["env"]: m for m in _state(bed)["moves"] if m["stage"] == "done"}  # type: ignore[union-attr]
    history = list((bed.cfg.state_dir / "moves" / "evacuations" / "history").glob("srv1-*.json"))

    # the figures (a report, not a bound): the evacuation's wall time against its moves' own work
    # one after another (each move's stages, gate waits left out; measured while the others ran,
    # so more than each would take alone)
    work = {env: sum(t["duration_s"] or 0 for t in m["stage_timings"] if t["stage"] != "awaiting_confirmation")
            for env, m in done.items()}
    print(f"\nevacuation of srv1 ({', '.join(f'{e} -> {t}' for e, t in PLACED.items())}), --parallel 2, "
          f"SIGKILLed once: {took:.0f} s in all; the moves' own work one after another: {sum(work.values()):.0f} s")
    for env, m in done.items():
        freeze = m["freeze"] or {}
        print(f"  {env}: {work[env]:.0f} s of stages, start -> done {seconds(m['started_at'], m['updated_at']):.0f} s, "
              f"freeze {freeze.get('freeze_s')} s (budget {budget:g} s), {clients[env].summary()}")

    assert failed == {env: [] for env in ENVS}, {e: [(r.kind, r.status, r.error) for r in f[:5]] for e, f in failed.items()}
    assert lost == {env: [] for env in ENVS}, {e: v[:5] for e, v in lost.items()}
    for env, client in clients.items():
        assert client.summary()["writes_acknowledged"] >= 10, (env, client.summary())

    # every env moved where the plan said, and is served from there only
    assert {env: m["target"] for env, m in done.items()} == PLACED
    for env, target in PLACED.items():
        assert query_a(bed.dns_server, DOMAINS[env])[0] == [bed.addresses[target]], env
        assert set(unit_states(bed, target, units[env])) == {"active"}, (env, target)
        for other in set(bed.addresses) - {target}:
            assert "active" not in unit_states(bed, other, units[env]), (env, other)
        last = [r.server for r in clients[env].requests if r.server][-3:]
        assert last and set(last) == {target}, (env, last)

    # each freeze within a single move's budget, and never two at once
    spans = []
    for env, m in done.items():
        freeze = m["freeze"]
        assert freeze is not None and freeze["freeze_s"] is not None, env
        assert freeze["freeze_s"] <= budget, (env, freeze)
        spans.append((freeze["held_at_ns"], freeze["released_at_ns"], env))
    spans.sort()
    for (_, released, env), (held, _, later) in zip(spans, spans[1:]):
        assert released <= held, f"the freezes of {env} and {later} overlapped"

    assert _state(bed)["evacuations"] == []
    assert len(history) == 1 and json.loads(history[0].read_text())["state"] == "done"

    # its report: a row per env from the same records, the clients' figures given as a load file
    load = tmp_path / "load.json"
    load.write_text(json.dumps({env: {"failed_requests": len(failed[env]), "lost_writes": len(lost[env])}
                                for env in ENVS}))
    page = tmp_path / "evacuation-report.html"
    report = cli(bed, "report", "--evacuation", "srv1", "--load", str(load), "--html", str(page), "--json")
    assert report.returncode == 0, report.stderr
    evac = json.loads(report.stdout)["evacuation"]
    assert (evac["state"], evac["active"], evac["freezes_overlap"]) == ("done", False, False)
    rows = {r["env"]: r for r in evac["rows"]}
    assert {env: (r["target"], r["outcome"], r["failed_requests"], r["lost_writes"]) for env, r in rows.items()} \
        == {env: (target, "done", 0, 0) for env, target in PLACED.items()}
    for env, m in done.items():
        assert rows[env]["move_id"] == m["move_id"] and rows[env]["freeze_s"] == m["freeze"]["freeze_s"], env
        assert rows[env]["prepare_s"] > 0 and rows[env]["cutover_s"] > 0, rows[env]
    assert page.is_file() and page.read_text().count('<tr class="outcome-done">') == len(ENVS)
