"""The switch-over and the way back with apps that behave like real ones (issue 12): a client
writes throughout; each row ends with 0 acknowledged writes lost, 0 source files destroyed
(counted over both servers and the backup directory), and the env serving from one server."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults._lib import (active, cli, copy_inventory, edit_env, edit_vars, kill_when, lost_writes, on, serving,
                               spawn, state_dir, status, writer)
from tests.testbed import Testbed
from tests.testbed.config import ENV_DOMAIN, ENV_NAME
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

SOURCE, TARGET = "srv1", "srv2"
ROOT = f"/srv/{ENV_NAME}"
DATA = f"{ROOT}/data"
BACKUPS = f"{ROOT}/.strackt-backup"


def row(request: pytest.FixtureRequest, fault: str, survived: bool, lost: int | None = None, note: str = "") -> None:
    request.node.user_properties.append(("row", {"fault": fault, "survived": survived, "lost": lost, "note": note}))


def files(bed: Testbed, server: str, under: str = DATA) -> dict[str, str]:
    """{path relative to ``under``: sha256} of every regular file under ``under`` on ``server``."""
    out = bed.ssh(server, f"cd {under} 2>/dev/null && find . -type f ! -name '.strackt-*' -print0 | "
                          f"xargs -0r sha256sum", check=False).stdout
    return {line.split("  ", 1)[1][2:]: line.split("  ", 1)[0] for line in out.splitlines() if "  " in line}


def kept_files(bed: Testbed, server: str, move_backup: str) -> dict[str, str]:
    """{path relative to the data path: sha256} of what a move's passes kept (each pass has a
    directory of its own under the move's: <pass>/data/...)."""
    kept: dict[str, str] = {}
    for path, digest in files(bed, server, move_backup).items():
        _pass, _sep, rel = path.partition("/data/")
        kept[rel] = digest
    return kept


def destroyed(before: dict[str, str], bed: Testbed) -> list[str]:
    """Source files (path, content) of ``before`` found neither on either server nor in any
    backup directory of a move, on either server."""
    seen: set[tuple[str, str]] = set()
    for server in (SOURCE, TARGET):
        seen |= set(files(bed, server).items())
        listing = bed.ssh(server, f"ls {BACKUPS} 2>/dev/null; true", check=False).stdout.split()
        for move in listing:
            seen |= set(kept_files(bed, server, f"{BACKUPS}/{move}").items())
    return sorted(path for path, digest in before.items() if (path, digest) not in seen)


def record(bed: Testbed) -> dict[str, Any]:
    """The move in progress, else the newest archived one (its checks and backups printed)."""
    moves = state_dir(bed) / "moves"
    live = moves / f"{ENV_NAME}.json"
    if live.exists():
        rec = json.loads(live.read_text())
    else:
        archived = sorted(moves.rglob(f"{ENV_NAME}-*.json"), key=lambda p: p.stat().st_mtime)
        assert archived, f"no record of {ENV_NAME} in {moves}"
        rec = json.loads(archived[-1].read_text())
    print("record checks:", json.dumps(rec.get("checks")), "backups:", json.dumps(rec.get("backups")),
          "freeze:", json.dumps(rec.get("freeze")))
    return rec


def to_the_gate(bed: Testbed, inventory: Path | None = None) -> None:
    started = cli(bed, "start", ENV_NAME, "--target", TARGET, inventory=inventory)
    assert started.returncode == 4, started.stderr  # waiting at the gate


AFTER_BARRIER = f"until ls {DATA}/.strackt-barrier-* >/dev/null 2>&1; do sleep 0.05; done; "


# ---- rollback: never destroys a source file ----------------------------------------------------

@pytest.mark.extended
def test_a_rollback_after_the_switch_keeps_every_source_file(fresh_testbed: Testbed,
                                                             request: pytest.FixtureRequest) -> None:
    """After the switch the new server rewrites a file and deletes another; the stopped source
    gets a late write the journal never saw. The rollback pulls back only what the new server
    changed itself: the source's late file stays, and what the pull replaced or deleted on the
    source is kept in the backup directory, named in the record and the output."""
    bed = fresh_testbed
    fault = "rollback after the switch: every source file kept (backup named)"
    bed.ssh(SOURCE, f"printf old > {DATA}/shared.txt; printf bye > {DATA}/gone.txt; chown {ENV_NAME}: {DATA}/*.txt")
    client = writer(bed)
    try:
        to_the_gate(bed)
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        assert switched.returncode == 0, switched.stderr
        assert serving(bed) == TARGET
        bed.ssh(TARGET, f"printf new-on-target > {DATA}/shared.txt; rm {DATA}/gone.txt")
        bed.ssh(SOURCE, f"printf source-late > {DATA}/shared.txt; printf late > {DATA}/late-on-source.txt")
        before = files(bed, SOURCE)
        time.sleep(1)
        rolled = cli(bed, "rollback", ENV_NAME)
        assert rolled.returncode == 0, rolled.stderr
        time.sleep(2)
    finally:
        client.stop()
    out = rolled.stdout + rolled.stderr
    lost = lost_writes(bed, client)
    gone = destroyed(before, bed)
    rec = record(bed)
    backups = rec.get("backups") or []
    backup_dir = f"{BACKUPS}/{rec['move_id']}"
    kept = kept_files(bed, SOURCE, backup_dir)
    source_now = files(bed, SOURCE)
    served_by, moves = serving(bed), active(bed)
    ok = (lost == [] and gone == [] and served_by == SOURCE and not moves)
    row(request, fault, ok, len(lost), note=f"{len(kept)} source files in {SOURCE}:{backup_dir}")
    assert served_by == SOURCE and not moves, (served_by, moves)
    assert lost == [], lost
    assert gone == [], f"source files destroyed: {gone}"
    assert source_now.get("late-on-source.txt"), "the source's own late write was touched"
    assert "shared.txt" in kept and "gone.txt" in kept, kept  # replaced and deleted by the pull: kept
    assert "gone.txt" not in source_now  # the new server's deletion came back
    assert bed.ssh(SOURCE, f"cat {DATA}/shared.txt").stdout == "new-on-target"
    assert any(b["server"] == SOURCE and b["path"].startswith(backup_dir + "/") for b in backups), backups
    assert backup_dir in out, out[-3000:]


@pytest.mark.extended
def test_a_final_pass_failing_with_a_source_that_cannot_restart_pulls_nothing(
        fresh_testbed: Testbed, request: pytest.FixtureRequest) -> None:
    """The freeze gives up after stopping the env (a process of the env's user is left) and the
    env cannot start again on the source. The target never took traffic: the rollback the
    operator runs then pulls nothing from it."""
    bed = fresh_testbed
    fault = "freeze fails, source cannot restart: rollback pulls nothing"
    client = writer(bed)
    try:
        to_the_gate(bed)
        bed.ssh(TARGET, f"printf target-only > {DATA}/target-only.txt")
        on(bed, SOURCE, "strackt-fault-stray", f"exec setpriv --reuid={ENV_NAME} --regid={ENV_NAME} --init-groups sleep 600")
        bed.ssh(SOURCE, f"mkdir -p /etc/systemd/system/strackt-env-{ENV_NAME}-web.service.d; "
                        f"printf '[Service]\\nExecStartPre=/bin/false\\n' > "
                        f"/etc/systemd/system/strackt-env-{ENV_NAME}-web.service.d/broken.conf; systemctl daemon-reload")
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes")
        assert confirmed.returncode == 1, confirmed.stderr
        out = confirmed.stdout + confirmed.stderr
        assert "FAILED too" in out and "Nothing was switched" in out, out[-3000:]
        before = files(bed, SOURCE)
        bed.ssh(SOURCE, f"systemctl stop strackt-fault-stray; rm -r /etc/systemd/system/strackt-env-{ENV_NAME}-web.service.d; "
                        "systemctl daemon-reload")
        rolled = cli(bed, "rollback", ENV_NAME)
        assert rolled.returncode == 0, rolled.stderr
        time.sleep(2)
    finally:
        client.stop()
        bed.ssh(SOURCE, f"systemctl stop strackt-fault-stray; rm -rf /etc/systemd/system/strackt-env-{ENV_NAME}-web.service.d; "
                        "systemctl daemon-reload", check=False)
    lost = lost_writes(bed, client)
    after = files(bed, SOURCE)
    changed = sorted(path for path, digest in before.items() if after.get(path) != digest)
    rec = record(bed)
    ok = lost == [] and changed == [] and serving(bed) == SOURCE and not rec.get("backups")
    row(request, fault, ok, len(lost), note="every source file as it was, no backup needed")
    assert lost == [], lost
    assert changed == [], f"the rollback changed the source's data: {changed}"
    assert "target-only.txt" not in after
    assert not rec.get("backups") and "freeze" not in rec


# ---- the freeze: refusals before anything stops, writers, budget --------------------------------

@pytest.mark.extended
def test_a_writer_outside_the_env_or_a_file_held_open_aborts_the_freeze(fresh_testbed: Testbed,
                                                                        request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    client = writer(bed)
    cases = [
        ("a process of the env user outside its unit", "stray-writer",
         f"exec setpriv --reuid={ENV_NAME} --regid={ENV_NAME} --init-groups /bin/sh -c "
         f"'while true; do date > {DATA}/stray.txt; sleep 0.1; done'", "runs as the env's user"),
        ("a file held open for writing", "held-open",
         f"exec 3>>{DATA}/held.log; exec sleep 600", f"open for writing {DATA}/held.log"),
    ]
    results = []
    try:
        to_the_gate(bed)
        for what, unit, script, named in cases:
            on(bed, SOURCE, f"strackt-fault-{unit}", script)
            time.sleep(0.5)
            confirmed = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
            out = confirmed.stdout + confirmed.stderr
            move = status(bed)["moves"][0]
            results.append((what, confirmed.returncode == 1 and named in out and "Make it a process or schedule"
                            in out and (move["stage"], move["state"]) == ("awaiting_confirmation", "waiting")
                            and serving(bed) == SOURCE, out))
            bed.ssh(SOURCE, f"systemctl stop strackt-fault-{unit}")
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        time.sleep(2)
    finally:
        client.stop()
        for _what, unit, _script, _named in cases:
            bed.ssh(SOURCE, f"systemctl stop strackt-fault-{unit} 2>/dev/null; true", check=False)
    lost = lost_writes(bed, client)
    # requests held while the freeze was abandoned go to the source again: none may fail
    failed = [vars(r) for r in client.failed()]
    for what, ok, _out in results:
        row(request, f"{what} at the freeze: aborts naming it, move waits", ok and lost == [] and not failed,
            len(lost), f"{len(failed)} failed requests")
    for what, ok, out in results:
        assert ok, f"{what}: {out[-3000:]}"
    assert switched.returncode == 0, switched.stderr
    assert lost == [] and serving(bed) == TARGET
    assert failed == [], failed[:5]


@pytest.mark.extended
def test_a_final_pass_predicted_over_the_budget_switches_nothing(fresh_testbed: Testbed, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    fault = "final pass predicted over the freeze budget: nothing switched, move waits"
    inv = copy_inventory(bed, tmp_path / "inventory")
    edit_vars(inv, "main.yml", lambda d: d.__setitem__("cutover_freeze_budget_s", 0.002))
    client = writer(bed)
    try:
        to_the_gate(bed, inventory=inv)
        failed_before = client.summary()["failed"]
        confirmed = cli(bed, "confirm", ENV_NAME, "--yes", inventory=inv)
        time.sleep(1)
        failed_after = client.summary()["failed"]
    finally:
        client.stop()
    out = confirmed.stdout + confirmed.stderr
    lost = lost_writes(bed, client)
    move = status(bed)["moves"][0]
    ok = (confirmed.returncode == 1 and "nothing was stopped or switched" in out and failed_after == failed_before
          and (move["stage"], move["state"]) == ("awaiting_confirmation", "waiting") and serving(bed) == SOURCE)
    row(request, fault, ok and lost == [], len(lost), note=f"{failed_after - failed_before} requests failed")
    assert ok, out[-3000:]
    assert lost == [], lost


# ---- the data check after the switch: paths, not clocks ------------------------------------------

# inotify reports a file's events to the directory it was opened through: written through a
# hard link outside the data path (then unlinked), the mmap write leaves no record in the journal
# of the data path (a plain mmap write inside it does show, as CLOSE_WRITE at munmap)
MMAP = (
    "import mmap, os, sys\n"
    "alias = '/root/strackt-fault-alias'\n"
    "os.link(sys.argv[1], alias)\n"
    "fd = os.open(alias, os.O_RDWR)\n"
    "m = mmap.mmap(fd, 0)\n"
    "m[0:8] = b'MMAPPED!'\n"
    "m.flush()\n"
    "m.close()\n"
    "os.close(fd)\n"
    "os.unlink(alias)\n"
)


@pytest.mark.extended
def test_an_mmap_write_the_journal_cannot_see_is_repaired_forward(fresh_testbed: Testbed,
                                                                  request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    fault = "mmap write the journal cannot see: repaired forward, reported"
    bed.ssh(SOURCE, f"head -c 4096 /dev/zero > {DATA}/mapped.bin; chown {ENV_NAME}: {DATA}/mapped.bin")
    client = writer(bed)
    try:
        to_the_gate(bed)
        bed.ssh(SOURCE, f"python3 -c {shlex.quote(MMAP)} {DATA}/mapped.bin")
        assert bed.ssh(SOURCE, f"head -c 8 {DATA}/mapped.bin").stdout == "MMAPPED!"
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        time.sleep(2)
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    checks = [c for c in record(bed).get("checks") or [] if c["name"] == "data_check"]
    repaired = checks[-1]["details"]["repaired"] if checks else []
    on_target = bed.ssh(TARGET, f"head -c 8 {DATA}/mapped.bin").stdout
    ok = switched.returncode == 0 and serving(bed) == TARGET and on_target == "MMAPPED!" and lost == []
    row(request, fault, ok, len(lost), note=f"repaired: {repaired} (written through a hard link outside the data path)")
    assert switched.returncode == 0, switched.stderr
    assert on_target == "MMAPPED!" and "data/mapped.bin" in repaired, (on_target, checks)
    assert lost == [], lost


@pytest.mark.extended
def test_an_app_deleting_and_renaming_right_after_the_switch_is_no_difference(fresh_testbed: Testbed,
                                                                              request: pytest.FixtureRequest) -> None:
    """Session rotation, cache culling, a spool: the new server renames over, deletes and renames
    files the moment it takes traffic, before the data check runs. No rollback; the source keeps
    its copies."""
    bed = fresh_testbed
    fault = "app deletes/renames files right after the switch: no rollback"
    bed.ssh(SOURCE, f"mkdir -p {DATA}/sessions {DATA}/cache; for f in s1 s2 s3; do echo $f > {DATA}/sessions/$f; done; "
                    f"echo c > {DATA}/cache/old; chown -R {ENV_NAME}: {DATA}")
    client = writer(bed)
    try:
        to_the_gate(bed)
        before = files(bed, SOURCE)
        on(bed, TARGET, "strackt-fault-app",
           AFTER_BARRIER + f"cd {DATA}; echo new > sessions/s1.tmp; mv sessions/s1.tmp sessions/s1; "
                           f"mv sessions/s2 sessions/s2.rotated; rm sessions/s3 cache/old; rmdir cache")
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        time.sleep(2)
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    gone = destroyed(before, bed)
    checks = [c for c in record(bed).get("checks") or [] if c["name"] == "data_check"]
    ok = switched.returncode == 0 and serving(bed) == TARGET and lost == [] and gone == []
    row(request, fault, ok, len(lost), note=checks[-1]["summary"] if checks else "no data check recorded")
    assert switched.returncode == 0, switched.stderr
    assert lost == [] and gone == [], (lost, gone)
    assert bed.ssh(TARGET, f"cat {DATA}/sessions/s1").stdout.strip() == "new"  # the new server's own, kept


@pytest.mark.extended
@pytest.mark.parametrize("skew", [-30, 30])
def test_the_targets_clock_skewed_changes_nothing(fresh_testbed: Testbed, request: pytest.FixtureRequest,
                                                  skew: int) -> None:
    """The testbed's servers share one kernel clock: the skew is simulated on the times of the
    files the new server writes right after the switch (new files and rewrites of old ones)."""
    bed = fresh_testbed
    fault = f"target clock skewed {skew:+d} s (simulated on its files' times): no rollback"
    bed.ssh(SOURCE, f"echo old > {DATA}/skewed.txt; chown {ENV_NAME}: {DATA}/skewed.txt")
    client = writer(bed)
    try:
        to_the_gate(bed)
        on(bed, TARGET, "strackt-fault-skew",
           AFTER_BARRIER + f"cd {DATA}; t=$(( $(date +%s) + ({skew}) )); for i in 1 2 3 4 5; do "
                           f"echo $i > new-$i.txt; touch -d @$t new-$i.txt; done; echo rewritten > skewed.txt; "
                           f"touch -d @$t skewed.txt")
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        time.sleep(2)
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    ok = switched.returncode == 0 and serving(bed) == TARGET and lost == []
    row(request, fault, ok, len(lost))
    assert switched.returncode == 0, switched.stderr
    assert lost == [], lost
    assert bed.ssh(TARGET, f"cat {DATA}/skewed.txt").stdout.strip() == "rewritten"


# ---- the target before the switch: closed ---------------------------------------------------------

def post_write(address: str, label: str) -> int:
    """POST a write straight to ``address`` (a stale cache, a hosts file); its HTTP status."""
    import urllib.error
    import urllib.parse
    import urllib.request
    body = urllib.parse.urlencode({"note": label, "content": f"content of {label}"}).encode()
    req = urllib.request.Request(f"http://{address}/write", data=body, headers={"Host": ENV_DOMAIN})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.mark.extended
def test_a_client_writing_to_the_target_before_the_switch_is_refused(fresh_testbed: Testbed,
                                                                     request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    fault = "client writing to the target before the switch: refused (site closed)"
    client = writer(bed)
    try:
        to_the_gate(bed)
        early = [post_write(bed.addresses[TARGET], f"early-{i}") for i in range(10)]
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        after = post_write(bed.addresses[TARGET], "after-the-switch")
        time.sleep(2)
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    acknowledged_early = sum(1 for code in early if code == 200)
    ok = acknowledged_early == 0 and switched.returncode == 0 and after == 200 and lost == []
    row(request, fault, ok, len(lost), note=f"{acknowledged_early} of {len(early)} early writes acknowledged "
                                              f"(answers {sorted(set(early))}); after the switch: {after}")
    assert acknowledged_early == 0, early
    assert switched.returncode == 0, switched.stderr
    assert after == 200 and lost == [], (after, lost)


# ---- resume after the DNS update ------------------------------------------------------------------

def test_sigkill_right_after_the_dns_update_then_resume_finishes(fresh_testbed: Testbed,
                                                                 request: pytest.FixtureRequest) -> None:
    bed = fresh_testbed
    fault = "controller SIGKILLed right after the DNS update, then resume"
    client = writer(bed)
    try:
        to_the_gate(bed)
        kill_when(spawn(bed, "confirm", ENV_NAME, "--yes", "--no-finish"),
                  "[cutover] Point the env's domains at the target", delay=2.0)
        at_kill = query_a(bed.dns_server, ENV_DOMAIN)[0]
        resumed = cli(bed, "resume", ENV_NAME)
        time.sleep(2)
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    # the switch-over is complete: switched (the old server forwards until resolvers' caches of its
    # address may have expired and stale traffic stopped; resume does not wait for that) or done
    moves = active(bed)
    stage = moves[0]["stage"] if moves else "done"
    served_by = serving(bed)
    ok = resumed.returncode == 0 and served_by == TARGET and lost == [] and stage in ("switched", "done")
    row(request, fault, ok, len(lost), note=f"DNS at the kill: {at_kill}; after resume: {stage}")
    assert at_kill == [bed.addresses[TARGET]], "the kill came before the DNS update; the row tests nothing"
    assert resumed.returncode == 0, resumed.stderr
    assert lost == [], lost
    assert served_by == TARGET and stage in ("switched", "done"), (served_by, stage, resumed.stdout[-2000:])


# ---- every process of the env stops in the freeze ---------------------------------------------------

# A worker of the env: writes a numbered file into the data path every 0.1 s (written aside, then
# renamed: a file that exists is complete), numbering on from what it finds.
WORKER = (f"mkdir -p {DATA}/worker; cd {DATA}/worker; i=$(ls | wc -l); "
          f"while :; do i=$((i+1)); echo $i > .$i.tmp; mv .$i.tmp $i; sleep 0.1; done")


@pytest.mark.extended
def test_a_worker_of_the_env_writing_through_the_switch_over(fresh_testbed: Testbed,
                                                             request: pytest.FixtureRequest) -> None:
    """The env has a worker process (its own unit, PartOf the env's target) that keeps writing into
    the data path. The freeze stops it with the web process before the final pass: every file it
    wrote on the source is on the target, it writes nothing on the source afterwards, the data
    check finds no difference (no rollback), and it runs on the new server after the release."""
    bed = fresh_testbed
    fault = "a worker of the env writing into the data path through the switch-over"
    worker_unit = f"strackt-env-{ENV_NAME}-worker.service"
    edit_env(bed.inventory_dir, lambda env: env["processes"].update(worker=WORKER))
    client = writer(bed)
    try:
        bed.playbook("deploy.yml", "-e", f"env={ENV_NAME}")
        time.sleep(1)
        assert bed.ssh(SOURCE, f"systemctl is-active {worker_unit}", check=False).stdout.strip() == "active"
        to_the_gate(bed)
        switched = cli(bed, "confirm", ENV_NAME, "--yes", "--no-finish")
        on_source = files(bed, SOURCE, f"{DATA}/worker")
        time.sleep(1.5)
        on_source_later = files(bed, SOURCE, f"{DATA}/worker")
        on_target = files(bed, TARGET, f"{DATA}/worker")
        source_worker = bed.ssh(SOURCE, f"systemctl is-active {worker_unit}", check=False).stdout.strip()
        target_worker = bed.ssh(TARGET, f"systemctl is-active {worker_unit}", check=False).stdout.strip()
    finally:
        client.stop()
    lost = lost_writes(bed, client)
    missing = sorted(path for path, digest in on_source.items() if on_target.get(path) != digest)
    checks = [c for c in record(bed).get("checks") or [] if c["name"] == "data_check"]
    ok = (switched.returncode == 0 and serving(bed) == TARGET and lost == [] and missing == []
          and on_source_later == on_source and source_worker != "active" and target_worker == "active")
    row(request, fault, ok, len(lost), note=f"{len(on_source)} worker files carried; "
        + (checks[-1]["summary"] if checks else "no data check recorded"))
    try:
        assert switched.returncode == 0, switched.stdout[-3000:] + switched.stderr
        assert lost == [] and missing == [], (lost, missing)
        assert len(on_source) > 10, f"the worker wrote only {len(on_source)} files: the row tests nothing"
        assert source_worker != "active" and on_source_later == on_source, "the worker ran on after the freeze"
        assert target_worker == "active" and len(on_target) > len(on_source), "the worker does not run on the target"
    finally:
        # put srv1 back as up left it: the env without the worker (deploy removes its unit)
        bed.reset()
        bed.playbook("deploy.yml", "-e", f"env={ENV_NAME}")
        bed.ssh(SOURCE, f"rm -rf {DATA}/worker")
