"""Faults with a client writing throughout (issue 7). Each ends with the move completed or the
source serving, and 0 acknowledged writes lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import base64
import os
import pytest

from tests.faults._lib import (active, cli, copy_inventory, edit_vars, kill_when, lost_writes, serving, spawn, state_dir,
                               status, writer)
from tests.testbed import Testbed
from tests.testbed.config import ENV_DOMAIN, ENV_NAME
from tests.testbed.dns import query_a
from tests.testbed.network import set_link

pytestmark = pytest.mark.testbed

TARGET = "srv2"


def row(request: pytest.FixtureRequest, fault: str, survived: bool, lost: int | None = None, note: str = "") -> None:
    request.node.user_properties.append(("row", {"fault": fault, "survived": survived, "lost": lost, "note": note}))


def _keys_left(bed: Testbed) -> str:
    return "".join(bed.ssh(s, "grep strackt-move: /root/.ssh/authorized_keys; ls -A /root/.strackt-move 2>/dev/null; true").stdout
                   for s in ("srv1", TARGET)).strip()


# (stage, what the controller prints while that stage runs) — killed 0.5 s after the line shows
KILL_POINTS = [
    ("preflight", "[preflight] Create the move record"),
    ("provision", "[provision] Create the env's user"),
    ("deploy", "[deploy] Check out the commit"),
    ("sync", "[sync] Copy the data to the target (pass 1)"),
    ("verify", "[verify] Make the manifest of the data on the source"),
]


def _drive(bed: Testbed) -> tuple[str, ...]:
    """`resume` when a record exists, else `start` again (killed before preflight wrote one)."""
    return ("resume", ENV_NAME) if active(bed) else ("start", ENV_NAME, "--target", TARGET)


def test_sigkill_at_every_stage_then_resume(fresh_testbed: Testbed, request: pytest.FixtureRequest) -> None:
    """SIGKILL the controller in each stage in turn (one move); `resume` continues every time.
    (The killed controller's ansible-playbook may run on; the next command ends it first.)"""
    bed = fresh_testbed
    client = writer(bed)
    tried: list[str] = []
    finished = False
    try:
        for stage, marker in KILL_POINTS:
            tried.append(stage)
            kill_when(spawn(bed, *_drive(bed)), marker)
            moves = active(bed)
            assert stage == "preflight" or moves, "the record is gone"
            if moves:
                assert moves[0]["next"].startswith(f"strackt-move resume {ENV_NAME}"), moves
        resumed = cli(bed, *_drive(bed))
        assert resumed.returncode == 4, resumed.stderr  # at the gate

        tried.append("waiting")  # a sync pass while the move waits at the gate
        kill_when(spawn(bed, "sync", ENV_NAME), "Copy the data to the target")
        again = cli(bed, "resume", ENV_NAME)
        assert again.returncode == 4, again.stderr
        assert status(bed)["moves"][0]["state"] == "waiting"

        tried.append("cutover (freeze)")
        kill_when(spawn(bed, "confirm", ENV_NAME, "--yes"), "[cutover] Freeze on the source", delay=1.0)
        move = status(bed)["moves"][0]
        assert move["stage"] in ("cutover", "switched"), move

        tried.append("after the switch (finish)")
        kill_when(spawn(bed, "resume", ENV_NAME), "== finish", delay=1.0)
        if active(bed):
            done = cli(bed, "resume", ENV_NAME)
            assert done.returncode == 0, done.stderr
            assert f"done: {ENV_NAME} runs on {TARGET}" in done.stdout
        time.sleep(2)
        finished = serving(bed) == TARGET and not active(bed)
    finally:
        client.stop()
        lost = lost_writes(bed, client) if client.acknowledged_writes() else None
        for i, stage in enumerate(tried):
            ok = finished if i == len(tried) - 1 else True
            row(request, f"controller SIGKILLed in {stage}, then resume", ok and lost == [],
                len(lost) if lost is not None else None)
    assert lost == [], lost
    assert finished
    hist = json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]
    assert any(m["stage"] == "done" for m in hist)
    assert _keys_left(bed) == ""


def test_dns_refusing_the_switch_rolls_back_automatically(fresh_testbed: Testbed, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    request.node.user_properties.append(("fault", "DNS refuses the update at the switch-over (wrong key): automatic rollback"))
    bed = fresh_testbed
    client = writer(bed)
    survived, lost, took = False, None, None
    try:
        assert cli(bed, "start", ENV_NAME, "--target", TARGET).returncode == 4
        inv = copy_inventory(bed, tmp_path / "inventory")
        wrong = base64.b64encode(os.urandom(32)).decode()
        edit_vars(inv, "secrets.yml", lambda d: d.__setitem__("strackt_dns_tsig_secret", wrong))
        began = time.monotonic()
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", inventory=inv)
        took = time.monotonic() - began
        assert confirmed.returncode == 1, confirmed.stderr
        assert "rolled back automatically" in confirmed.stderr, confirmed.stderr
        assert "TSIG" in confirmed.stderr or "NOTAUTH" in confirmed.stderr, confirmed.stderr
        time.sleep(2)
    finally:
        client.stop()
    assert query_a(bed.dns_server, ENV_DOMAIN)[0] == [bed.addresses["srv1"]]
    assert serving(bed) == "srv1"
    lost = lost_writes(bed, client)
    assert lost == [], lost
    assert active(bed) == []
    assert _keys_left(bed) == ""
    hist = json.loads(cli(bed, "list", "--all", "--json").stdout)["moves"]
    assert any(m["stage"] == "rolled_back" for m in hist)
    survived = True
    row(request, "DNS refuses the update at the switch-over (wrong key): automatic rollback",
        survived, len(lost), note=f"confirm -> source serving in {took:.0f} s")
    assert took is not None and took < 120


def test_target_link_cut_mid_sync_pauses_and_continues(fresh_testbed: Testbed, request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    veth = bed.cfg.server(TARGET).host_veth
    client = writer(bed)
    loop = None
    try:
        assert cli(bed, "start", ENV_NAME, "--target", TARGET).returncode == 4
        loop = spawn(bed, "sync", ENV_NAME, "--loop", "--interval", "3", "--backoff-max", "5")
        assert loop.stdout is not None
        for line in loop.stdout:
            if "[sync-loop]" in line or "Copy the data" in line:
                break
        set_link(veth, False)
        try:
            deadline = time.monotonic() + 120
            warnings: list[str] = []
            while time.monotonic() < deadline:
                move = status(bed)["moves"][0]
                warnings = [w for w in move.get("warnings", []) if "pass failed" in w]
                if warnings:
                    break
                time.sleep(2)
            assert warnings, move
            assert (move["stage"], move["state"]) == ("awaiting_confirmation", "waiting")
            assert serving(bed) == "srv1"  # the source is unaffected
        finally:
            set_link(veth, True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            move = status(bed)["moves"][0]
            if any("recovered" in w for w in move.get("warnings", [])):
                break
            time.sleep(2)
        assert any("recovered" in w for w in move.get("warnings", [])), move
        done = cli(bed, "confirm", ENV_NAME, "--yes")
        assert done.returncode == 0, done.stderr
        time.sleep(2)
    finally:
        client.stop()
        set_link(veth, True)
        if loop is not None and loop.poll() is None:
            loop.terminate()
            loop.wait(timeout=60)
    lost = lost_writes(bed, client)
    row(request, "target's link cut mid-sync, then back", lost == [] and serving(bed) == TARGET, len(lost))
    assert lost == []
    assert serving(bed) == TARGET
