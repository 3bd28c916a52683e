"""Bad inputs (issue 7): each is refused with a message naming the problem and the next step,
a non-zero exit, and nothing changed on any server, in DNS, in the attachment registry or in
the move records (a snapshot before and after is compared)."""

from __future__ import annotations

import base64
import datetime
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from tests.faults._lib import (assert_unchanged, cli, copy_inventory, edit_env, edit_vars, playbook,
                               snapshot, state_dir)
from tests.testbed import Testbed
from tests.testbed.config import ENV_NAME, REPO_ROOT

pytestmark = pytest.mark.testbed

EXTRA_MIGRATION = REPO_ROOT / "tests" / "testbed" / "apps" / "shop_extra_migration" / "0002_order_customer.py"


@pytest.fixture(scope="module")
def bed(testbed: Testbed) -> Iterator[Testbed]:
    testbed.reset()
    yield testbed
    testbed.reset()


# ---- setups: each returns the inventory to use (None: the testbed's own) ------------------------

Setup = Callable[[Testbed, Path], "Path | None"]


def _inv(change: Callable[[Path], Any]) -> Setup:
    def setup(bed: Testbed, tmp: Path) -> Path:
        inv = copy_inventory(bed, tmp / "inventory")
        change(inv)
        return inv
    return setup


def _env_field(key: str, value: Any) -> Setup:
    return _inv(lambda inv: edit_env(inv, lambda e: e.__setitem__(key, value)))


def _env_drop(key: str) -> Setup:
    return _inv(lambda inv: edit_env(inv, lambda e: e.pop(key)))


def _main_var(key: str, value: Any) -> Setup:
    return _inv(lambda inv: edit_vars(inv, "main.yml", lambda d: d.__setitem__(key, value)))


def _dns_unreachable(bed: Testbed, tmp: Path) -> Path:
    nobody = bed.dns_server.rsplit(".", 1)[0] + ".250"  # on the testbed's subnet, nothing there
    return _main_var("strackt_dns_server", nobody)(bed, tmp)


def _main_drop(key: str) -> Setup:
    return _inv(lambda inv: edit_vars(inv, "main.yml", lambda d: d.pop(key)))


def _wrong_tsig(inv: Path) -> None:
    wrong = base64.b64encode(os.urandom(32)).decode()
    edit_vars(inv, "secrets.yml", lambda d: d.__setitem__("strackt_dns_tsig_secret", wrong))


def _host_without_address(inv: Path) -> None:
    hosts = inv / "hosts.yml"
    text = hosts.read_text()
    hosts.write_text(re.sub(r"(srv2:\n\s+)ansible_host: \S+", r"\1ansible_port: 22", text))


def _record(bed: Testbed, stage: str, target: str = "srv2", finish: str | None = None) -> mr.MoveRecord:
    """A genuine record (through the schema's own API) at ``stage``."""
    addrs = bed.addresses
    rec = mr.MoveRecord.new(ENV_NAME, "srv1", target, addrs["srv1"], addrs[target], "0" * 40, "0" * 40)
    for st in mr.PRE_SWITCH_STAGES:
        if st == "preflight":
            rec.complete("preflight")
            continue
        if mr.PRE_SWITCH_STAGES.index(st) > mr.PRE_SWITCH_STAGES.index(stage):
            break
        rec.transition(st)
        if st != stage:
            rec.complete(st)
    sd = str(state_dir(bed))
    ms.ensure_dirs(sd)
    if finish:
        rec.transition("rollback")
        rec.transition("rolled_back")
        rec.complete("rolled_back")
        ms.archive(sd, rec)
    else:
        ms.create(sd, rec)
    return rec


def _with_record(stage: str, target: str = "srv2", finish: str | None = None) -> Setup:
    def setup(bed: Testbed, tmp: Path) -> None:
        _record(bed, stage, target, finish)
        return None
    return setup


def _switched(bed: Testbed, tmp: Path) -> None:
    """A move srv1 -> srv2 at `switched` (srv1 still forwards stale traffic, by its record), and a
    copy of shop retained on srv3 by an earlier move, due: retire has a copy it could remove, were
    the move finished. Nothing may go: neither that copy, nor the record, nor srv1's env."""
    rec = _record(bed, "verify")
    rec.complete("verify")
    rec.wait("verified")
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.complete("switched")
    sd = str(state_dir(bed))
    ms.save(sd, rec)
    retained_at = clock.utcnow() - datetime.timedelta(days=8)
    copies = mr.RetainedCopies(ENV_NAME)
    copies.keep(mr.RetainedCopy(server="srv3", move_id="shop-20261120T100000Z", root="/srv/shop",
                                paths=["/srv/shop/app", "/srv/shop/data"], retained_at=clock.format_ts(retained_at),
                                until=clock.format_ts(retained_at + datetime.timedelta(days=7))))
    ms.save_retained(sd, copies)
    return None


def _corrupt(bed: Testbed, tmp: Path) -> None:
    ms.ensure_dirs(str(state_dir(bed)))
    Path(ms.record_path(str(state_dir(bed)), ENV_NAME)).write_text('{"schema_version": 1, "move_id": "shop-2026')
    return None


def _hand_edited(bed: Testbed, tmp: Path) -> None:
    rec = _record(bed, "deploy")
    path = Path(ms.record_path(str(state_dir(bed)), ENV_NAME))
    data = json.loads(path.read_text())
    data["target"] = "srv3"  # checksum left as it was
    path.write_text(json.dumps(data))
    assert rec.target == "srv2"
    return None


def _pending_migration(bed: Testbed, tmp: Path) -> None:
    bed.ssh("srv1", "cat > /srv/shop/app/shop/migrations/0002_order_customer.py", input=EXTRA_MIGRATION.read_text())
    return None


def _undo_migration(bed: Testbed) -> None:
    bed.ssh("srv1", "rm -f /srv/shop/app/shop/migrations/0002_order_customer.py; "
                    "rm -rf /srv/shop/app/shop/migrations/__pycache__/0002_*")


@dataclass
class Case:
    id: str
    args: tuple[str, ...]
    rc: int
    message: str                      # regex the output must match (names the problem)
    setup: Setup | None = None
    via: str = "cli"                  # cli | playbook
    teardown: Callable[[Testbed], None] | None = None
    hold_lock: bool = False
    next_step: bool = True            # the CLI's "next:" line
    extra: dict[str, Any] = field(default_factory=dict)


START = ("start", ENV_NAME, "--target")
BAD_NAME = r"is not an env name"
BAD_HOST = r"is not an inventory host name"

CASES = [
    # names that would escape a path or a shell
    Case("env ../", ("start", "../../etc", "--target", "srv2"), 2, BAD_NAME),
    Case("env with space", ("start", "shop x", "--target", "srv2"), 2, BAD_NAME),
    Case("env with quotes", ("start", "shop\"'", "--target", "srv2"), 2, BAD_NAME),
    Case("env with $()", ("start", "$(touch /tmp/strackt-pwned)", "--target", "srv2"), 2, BAD_NAME),
    Case("env with newline", ("start", "shop\nsrv3", "--target", "srv2"), 2, BAD_NAME),
    Case("target ../", (*START, "../srv2"), 2, BAD_HOST),
    Case("target with space", (*START, "srv2 srv3"), 2, BAD_HOST),
    Case("target with quotes", (*START, "srv2'\""), 2, BAD_HOST),
    Case("target with $()", (*START, "$(reboot)"), 2, BAD_HOST),
    Case("target with newline", (*START, "srv2\nsrv3"), 2, BAD_HOST),
    Case("status env ../", ("status", "../moves/shop"), 2, BAD_NAME),
    Case("playbook env with $()", ("cutover.yml", "-e", "env=$(id) confirm=true"), 2,
         r"invalid env|not a valid|is not valid|unknown env", via="playbook", next_step=False),
    Case("playbook env ../", ("rollback.yml", "-e", "env=../../etc"), 2,
         r"invalid env|not a valid|is not valid|unknown env", via="playbook", next_step=False),
    # unknown things
    Case("unknown env", ("start", "nosuch", "--target", "srv2"), 3, r"unknown env 'nosuch'"),
    Case("unknown target", (*START, "srv9"), 3, r"target srv9 is not a server of the inventory"),
    Case("target = source", (*START, "srv1"), 3, r"target srv1 is the server shop already runs on"),
    Case("inventory missing", (*START, "srv2"), 2, r"inventory .* does not exist",
         setup=lambda bed, tmp: tmp / "no-such-inventory"),
    # the env definition
    Case("data path outside root", (*START, "srv2"), 3, r"data_paths.*(under|inside).*root",
         setup=_env_field("data_paths", ["/etc"])),
    Case("data path with ../", (*START, "srv2"), 3, r"data_paths.*(\.\.|normalised|normalized)",
         setup=_env_field("data_paths", ["/srv/shop/../../etc"])),
    Case("root with space", (*START, "srv2"), 3, r"root",
         setup=_env_field("root", "/srv/shop x")),
    Case("root is a system dir", (*START, "srv2"), 3, r"root",
         setup=_env_field("root", "/etc")),
    Case("port not a number", (*START, "srv2"), 3, r"shop\.port: must be a whole number",
         setup=_env_field("port", "eighty")),
    # the stack-neutral fields (issue 13)
    Case("unknown stack", (*START, "srv2"), 3, r"shop\.stack: 'spring' is not a known stack: use one of django",
         setup=_env_field("stack", "spring")),
    Case("no web process", (*START, "srv2"), 3, r"shop\.processes\.web: is missing: give the command of the web process",
         setup=_env_field("processes", {"worker": "python3 -m shop.worker"})),
    Case("migrations_check not a command", (*START, "srv2"), 3, r"shop\.migrations_check: must be a command line",
         setup=_env_field("migrations_check", ["manage.py", "migrate", "--check"])),
    Case("secret not defined", (*START, "srv2"), 3,
         r"shop\.secrets\[0\]: secret 'SHOP_SECRETKEY' is not defined: add it to strackt_env_secrets\.shop",
         setup=_env_field("secrets", ["SHOP_SECRETKEY"])),
    Case("schedule interval not a time span", (*START, "srv2"), 3, r"shop\.schedule\.cleanup\.every: .* is not an interval",
         setup=_env_field("schedule", {"cleanup": {"command": "true", "every": "30 seconds; reboot"}})),
    Case("old framework/app_port definition", (*START, "srv2"), 3,
         r"shop uses the old definition \(framework/app_port\).*rewrite it",
         setup=_env_field("framework", "django")),
    Case("uid out of range", (*START, "srv2"), 3, r"uid",
         setup=_env_field("uid", 0)),
    Case("env field missing", (*START, "srv2"), 3, r"user",
         setup=_env_drop("user")),
    Case("domain with $()", (*START, "srv2"), 3, r"domains",
         setup=_env_field("domains", ["$(id).example.test"])),
    # the inventory's variables and the DNS server
    Case("dns zone missing", (*START, "srv2"), 3, r"strackt_dns_zone",
         setup=_main_drop("strackt_dns_zone")),
    Case("host without address", (*START, "srv2"), 3, r"target server srv2 .*is unreachable",
         setup=_inv(_host_without_address)),
    Case("wrong TSIG key", (*START, "srv2"), 3, r"TSIG|NOTAUTH|BADSIG|signature",
         setup=_inv(_wrong_tsig)),
    Case("DNS server unreachable", (*START, "srv2"), 3, r"10\.77\.\d+\.250|DNS server",
         setup=_dns_unreachable),
    # the servers' state
    Case("no room (srv3)", (*START, "srv3"), 3, r"target srv3 has no room for shop"),
    Case("pending migrations", (*START, "srv2"), 3, r"migrations waiting to run on srv1: Planned operations:, shop\.0002_order_customer",
         setup=_pending_migration, teardown=_undo_migration),
    # the moves' state
    Case("move already running (other target)", (*START, "srv3"), 7,
         r"already in progress .*it cannot also go to srv3", setup=_with_record("deploy")),
    Case("move driven by another controller", (*START, "srv2"), 5, r"being driven by", hold_lock=True),
    Case("confirm without a move", ("confirm", ENV_NAME, "--yes"), 6, r"no move of shop is in progress"),
    Case("confirm before verify", ("confirm", ENV_NAME, "--yes"), 7, r"not verified",
         setup=_with_record("sync")),
    Case("rollback of a finished move", ("rollback", ENV_NAME), 6,
         r"no move of shop is in progress \(last move .* ended rolled_back\)",
         setup=_with_record("provision", finish="rolled_back")),
    Case("resume of a finished move", ("resume", ENV_NAME), 6, r"no move of shop is in progress",
         setup=_with_record("provision", finish="rolled_back")),
    Case("retire while the move is switched (old server forwarding)", ("retire", ENV_NAME, "--yes"), 7,
         r"a move of shop is in progress \(.*stage switched.*srv1 still forwards stale traffic to srv2\).*nothing was "
         r"removed.*next: finish it first \(`strackt-move finish shop`", setup=_switched),
    Case("retire the forwarding server while the move is switched", ("retire", ENV_NAME, "--server", "srv1", "--yes"),
         7, r"stage switched.*srv1 still forwards stale traffic.*nothing was removed", setup=_switched),
    Case("playbook retire while the move is switched", ("retire.yml", "-e", "env=shop", "-e", "confirm=true"), 2,
         r"stage switched: the old server still forwards stale traffic to the new one.*finish it first",
         setup=_switched, via="playbook", next_step=False),
    Case("corrupted state file", ("resume", ENV_NAME), 1, r"cannot be trusted", setup=_corrupt),
    Case("corrupted state file (start)", (*START, "srv2"), 1, r"cannot be trusted", setup=_corrupt),
    Case("hand-edited state file", ("confirm", ENV_NAME, "--yes"), 1, r"cannot be trusted.*checksum",
         setup=_hand_edited),
    Case("hand-edited state file (rollback)", ("rollback", ENV_NAME), 1, r"cannot be trusted", setup=_hand_edited),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(bed: Testbed, tmp_path: Path, case: Case,
                                                  request: pytest.FixtureRequest) -> None:
    request.node.user_properties.append(("fault", f"bad input: {case.id}"))
    shutil.rmtree(state_dir(bed), ignore_errors=True)
    inventory = case.setup(bed, tmp_path) if case.setup else None
    extra = (inventory,) if isinstance(inventory, Path) and inventory.exists() else ()
    before = snapshot(bed, extra_files=tuple(p / "group_vars/all/environments.yml" for p in extra))
    lock_fd = None
    if case.hold_lock:  # another controller holds the move
        locks = state_dir(bed) / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(locks / f"{ENV_NAME}.controller.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        os.write(lock_fd, json.dumps({"pid": os.getpid(), "role": "controller", "command": "start shop --target srv2",
                                      "since": "now"}).encode())
    try:
        if case.via == "cli":
            result = cli(bed, *case.args, inventory=inventory)
            output = result.stderr
        else:
            result = playbook(bed, *case.args, inventory=inventory)
            output = result.stdout + result.stderr
        flat = " ".join(output.split())
        assert result.returncode != 0, output
        if case.via == "cli":
            assert result.returncode == case.rc, output
        assert re.search(case.message, flat, re.S), f"message does not name the problem ({case.message!r}):\n{output[-3000:]}"
        if case.next_step:
            assert "next:" in output, output
        assert_unchanged(before, snapshot(bed, extra_files=tuple(p / "group_vars/all/environments.yml" for p in extra)))
        assert not Path("/tmp/strackt-pwned").exists()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
        if case.teardown:
            case.teardown(bed)
    request.node.user_properties.append(("survived", True))
