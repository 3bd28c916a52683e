"""Transfers (issue 12, items 6, 7, 10, 11, 13, 15): what the per-move key lets through, what the
passes carry, and a journal that cannot run. One move waits at the gate for the whole class (a
move costs a minute or more on two cores); each test changes the source and runs `sync`.

The servers of the testbed share the machine's kernel, so the inotify limits are the host's:
lowering them on srv1 would break every testbed on the machine. The watch limit is therefore
simulated on srv1 alone, by bind mounts inside its own mount namespace: a small
`/proc/sys/fs/inotify/max_user_watches` (what preflight reads) and an `inotifywait` that fails
the way the real one does at the limit (what the journal runs)."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.faults._lib import assert_unchanged, cli, snapshot, spawn, state_dir, stop_follower
from tests.testbed import Testbed
from tests.testbed.config import ENV_NAME

pytestmark = [pytest.mark.testbed, pytest.mark.extended]

SOURCE, TARGET = "srv1", "srv2"
DATA = f"/srv/{ENV_NAME}/data"
ODD = f"{DATA}/odd"
GUARD = "/usr/local/lib/strackt-move/rsync-guard.py"
LIMIT_MESSAGE = "Failed to watch {path}; upper limit on inotify watches reached!"

MAKE_ODD = f"""
set -e
mkdir -p {ODD}
mkfifo {ODD}/fifo
mknod {ODD}/null-dev c 1 3
printf '#!/bin/sh\\n' > {ODD}/suid
printf 'g' > {ODD}/sgid
printf 'plain' > {ODD}/plain
printf 'old' > {DATA}/replaced-by-rename
printf 'AAAA' > {DATA}/same-size
touch -d '2020-01-02 03:04:05.123456789' {DATA}/same-size
chown -R 1100:1100 {ODD} {DATA}/replaced-by-rename {DATA}/same-size
chmod 4755 {ODD}/suid; chmod 2750 {ODD}/sgid  # after chown, which clears them
"""

# special files and files with s-bits under a directory, one per line
FIND_ODD = "find {top} \\( ! -type f ! -type d ! -type l \\) -o \\( -type f -perm /6000 \\) 2>/dev/null | sort"


def row(request: pytest.FixtureRequest, fault: str, survived: bool, lost: int | None = None, note: str = "") -> None:
    request.node.user_properties.append(("row", {"fault": fault, "survived": survived, "lost": lost, "note": note}))


def record(bed: Testbed) -> dict[str, Any]:
    return json.loads((state_dir(bed) / "moves" / f"{ENV_NAME}.json").read_text())


def pass_results(bed: Testbed) -> list[dict[str, Any]]:
    """Every rsync_pass result the controller's runs saw (ok or failed), oldest first."""
    found = []
    for path in state_dir(bed).rglob("runs/*/*/artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if data.get("task_action") == "strackt.move.rsync_pass" and event.get("event") in (
                "runner_on_ok", "runner_on_failed"):
            found.append((event.get("created", ""), event["event"], data.get("res") or {}))
    return [dict(res, _event=kind) for _at, kind, res in sorted(found, key=lambda f: f[0])]


def key_ssh(bed: Testbed, move_id: str) -> str:
    key_dir = f"/root/.strackt-move/{move_id}"
    return (f"ssh -i {key_dir}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
            f"-o UserKnownHostsFile={key_dir}/known_hosts -o ConnectTimeout=5")


@pytest.fixture(scope="class")
def waiting(testbed: Testbed) -> Iterator[tuple[Testbed, str]]:
    """srv1's data with a fifo, a device node, a setuid and a setgid file; the move waiting at the gate."""
    testbed.reset()
    testbed.ssh(SOURCE, MAKE_ODD)
    started = cli(testbed, "start", ENV_NAME, "--target", TARGET)
    assert started.returncode == 4, started.stdout[-3000:] + started.stderr[-3000:]
    try:
        yield testbed, record(testbed)["move_id"]
    finally:
        testbed.ssh(SOURCE, "umount /usr/bin/inotifywait 2>/dev/null; umount /proc/sys/fs/inotify/max_user_watches "
                            f"2>/dev/null; rm -rf {ODD} {DATA}/big {DATA}/replaced-by-rename {DATA}/same-size "
                            "/run/strackt-fault-*", check=False)
        testbed.reset()


class TestTransfers:
    def test_special_and_setuid_files_do_not_arrive_and_preflight_names_them(self, waiting, request) -> None:
        bed, _move = waiting
        on_source = bed.ssh(SOURCE, FIND_ODD.format(top=ODD)).stdout.split()
        assert on_source == [f"{ODD}/fifo", f"{ODD}/null-dev", f"{ODD}/sgid", f"{ODD}/suid"]
        on_target = bed.ssh(TARGET, FIND_ODD.format(top=ODD)).stdout.split()
        arrived = bed.ssh(TARGET, f"cd {ODD} && stat -c '%n %a %F' *").stdout.splitlines()
        warnings = " ".join(record(bed)["warnings"])
        ok = (on_target == [] and sorted(arrived) == ["plain 644 regular file", "sgid 750 regular file",
                                                      "suid 755 regular file"]
              and "2 special file(s)" in warnings and f"{ODD}/fifo" in warnings and f"{ODD}/suid" in warnings
              and "setuid/setgid bit arrive without it" in warnings)
        row(request, "device node, fifo, setuid file in the source data: not carried as such, named by preflight",
            ok, note="; ".join(arrived))
        assert on_target == [], on_target
        assert sorted(arrived) == ["plain 644 regular file", "sgid 750 regular file", "suid 755 regular file"]
        assert ok, warnings

    def test_the_key_refuses_other_paths_backup_dirs_elsewhere_and_commands(self, waiting, request) -> None:
        bed, move = waiting
        ssh = key_ssh(bed, move)
        target = f"root@{bed.addresses[TARGET]}"
        line = next(ln for ln in bed.ssh(TARGET, "cat /root/.ssh/authorized_keys").stdout.splitlines()
                    if ln.endswith("strackt-move:" + move))
        assert f'command="{GUARD} /srv/{ENV_NAME} {move} data"' in line
        assert bed.ssh(TARGET, f"stat -c '%a %U' {GUARD}").stdout.split() == ["755", "root"]
        tries = {
            "code outside the data": f"rsync -rlpt -e {shlex.quote(ssh)} {target}:app/ /tmp/stolen-app/",
            "the root itself": f"rsync -rlpt -e {shlex.quote(ssh)} {target}:. /tmp/stolen-root/",
            "--backup-dir elsewhere": f"rsync -rlpt --backup --backup-dir=/srv/{ENV_NAME}/app -e {shlex.quote(ssh)} "
                                      f"{ODD}/ {target}:data/odd/",
            "a shell command": f"{ssh} {target} cat /etc/shadow",
        }
        seen = {}
        for what, command in tries.items():
            done = bed.ssh(SOURCE, command, check=False)
            seen[what] = (done.returncode, done.stderr.strip()[-300:], "root:" in done.stdout)
        stolen = bed.ssh(SOURCE, "ls /tmp/stolen-app /tmp/stolen-root 2>/dev/null; rm -rf /tmp/stolen-*",
                         check=False).stdout.split()
        ok = all(rc != 0 and "refused" in err and not shadow for rc, err, shadow in seen.values()) and not stolen
        row(request, "move key: path outside the data, --backup-dir elsewhere, shell command: refused", ok,
            note="; ".join(f"{w}: rc {v[0]}" for w, v in seen.items()))
        assert ok, json.dumps(seen, indent=1)

    def test_a_pull_of_a_target_holding_specials_and_setuid_files_brings_none_back(self, waiting, request) -> None:
        bed, move = waiting
        bed.ssh(TARGET, f"mkdir -p {DATA}/planted && cd {DATA}/planted && mkfifo fifo && mknod null-dev c 1 3 && "
                        "printf x > suid && chmod 4755 suid && printf y > plain")
        ssh = key_ssh(bed, move)
        target = f"root@{bed.addresses[TARGET]}"
        try:
            # our own flags, then a client that asks for devices (-D): the guard's options win
            ours = bed.ssh(SOURCE, f"rsync -rlptgoHAXS --numeric-ids --chmod=Fug-s -e {shlex.quote(ssh)} "
                                   f"{target}:data/planted/ /tmp/pulled-ours/", check=False)
            theirs = bed.ssh(SOURCE, f"timeout 30 rsync -rlptgoD --timeout=20 -e {shlex.quote(ssh)} "
                                     f"{target}:data/planted/ /tmp/pulled-D/", check=False)
            got = bed.ssh(SOURCE, FIND_ODD.format(top="/tmp/pulled-ours /tmp/pulled-D")).stdout.split()
            plain = bed.ssh(SOURCE, "cat /tmp/pulled-ours/plain", check=False).stdout
        finally:
            bed.ssh(SOURCE, "rm -rf /tmp/pulled-ours /tmp/pulled-D", check=False)
            bed.ssh(TARGET, f"rm -rf {DATA}/planted", check=False)
        ok = ours.returncode == 0 and plain == "y" and got == []
        row(request, "pull from a target holding a device, a fifo, a setuid file: none comes back", ok,
            note=f"our client rc {ours.returncode}, a -D client rc {theirs.returncode}")
        assert ours.returncode == 0, ours.stderr
        assert got == [] and plain == "y"

    def test_a_rename_over_a_file_then_deleted_and_a_same_size_rewrite_arrive(self, waiting, request) -> None:
        """Items 6 and 7, in one pass: `mv new replaced-by-rename; rm replaced-by-rename`, and a
        file rewritten with the same size, its mtime put back to the ns."""
        bed, _move = waiting
        bed.ssh(SOURCE, f"cd {DATA} && printf new > tmp-new && mv tmp-new replaced-by-rename && rm replaced-by-rename && "
                        "cp -p same-size /run/strackt-fault-ref && printf BBBB > same-size && "
                        "touch -r /run/strackt-fault-ref same-size")
        assert bed.ssh(SOURCE, f"stat -c '%s %Y' {DATA}/same-size").stdout == \
            bed.ssh(TARGET, f"stat -c '%s %Y' {DATA}/same-size").stdout
        synced = cli(bed, "sync", ENV_NAME)
        assert synced.returncode in (0, 4), synced.stdout[-3000:]
        last = pass_results(bed)[-1]
        left = bed.ssh(TARGET, f"test -e {DATA}/replaced-by-rename && echo still-there || echo gone").stdout.strip()
        content = bed.ssh(TARGET, f"cat {DATA}/same-size").stdout
        row(request, "a file replaced by rename, then deleted, within one pass interval: deleted on the target",
            left == "gone", note=f"pass {last.get('mode')}")
        row(request, "a same-size rewrite keeping its mtime: arrives", content == "BBBB", note=f"pass {last.get('mode')}")
        assert last.get("mode") == "incremental", last
        assert left == "gone"
        assert content == "BBBB"

    def test_an_interrupted_2gb_copy_goes_on_from_where_it_stopped(self, waiting, request) -> None:
        """Item 11: the rsync copying a 2 GiB file is killed mid-way; the next pass sends the rest."""
        bed, _move = waiting
        size = 2 * 1024 ** 3
        # the pass killed mid-way must be sync's: the follower would start copying the file first
        stop_follower(bed, SOURCE)
        bed.ssh(SOURCE, f"head -c {size} /dev/urandom > {DATA}/big && chown 1100:1100 {DATA}/big", timeout=300)
        first = spawn(bed, "sync", ENV_NAME)
        arrived = 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            out = bed.ssh(TARGET, f"stat -c %s {DATA}/.big.* 2>/dev/null | head -1", check=False).stdout.strip()
            arrived = int(out or 0)
            if arrived > size // 4:
                break
            time.sleep(0.2)
        assert first.poll() is None and arrived > size // 4, f"the copy was never seen under way ({arrived} bytes)"
        # the pass's rsync client on the source, by its pid
        pid = bed.ssh(SOURCE, f"pgrep -f '^rsync .* {DATA}/ root@' | head -1").stdout.strip()
        assert pid.isdigit(), pid
        bed.ssh(SOURCE, f"kill -9 {pid}")
        out, _ = first.communicate(timeout=300)
        assert first.returncode not in (0, 4), out[-3000:]
        time.sleep(1)
        kept = int(bed.ssh(TARGET, f"stat -c %s {DATA}/.strackt-partial/big", check=False).stdout.strip() or 0)
        again = cli(bed, "sync", ENV_NAME, timeout=900)
        assert again.returncode in (0, 4), again.stdout[-3000:]
        last = pass_results(bed)[-1]
        same = (bed.ssh(SOURCE, f"sha256sum < {DATA}/big", timeout=300).stdout ==
                bed.ssh(TARGET, f"sha256sum < {DATA}/big", timeout=300).stdout)
        partial_left = bed.ssh(TARGET, f"ls -A {DATA}/.strackt-partial 2>/dev/null; true").stdout.strip()
        sent = last.get("literal_bytes", size)
        ok = same and kept > size // 4 and sent <= size - kept + 64 * 1024 ** 2 and not partial_left
        row(request, "2 GiB file, its copy killed mid-way: the next pass completes it, sending only the rest", ok,
            note=f"kept {kept / 1024 ** 2:.0f} MiB, then sent {sent / 1024 ** 2:.0f} MiB literal "
                 f"({last.get('bytes_sent', 0) / 1024 ** 2:.0f} MiB on the wire) of {size / 1024 ** 2:.0f} MiB, "
                 f"pass {last.get('mode')}")
        assert kept > size // 4, kept
        assert same
        assert sent <= size - kept + 64 * 1024 ** 2, last
        assert not partial_left

    def test_a_journal_that_cannot_start_falls_back_to_a_full_pass_at_once(self, waiting, request) -> None:
        """Item 10: the watch limit reached after preflight (inotifywait fails as at the limit) and the
        journal must start again (its unit gone, as after a reboot): the pass says why, is full, and
        does not wait 30 s for a barrier that cannot come."""
        bed, move = waiting
        # the journal's restart must be sync's pass's: the follower's heartbeat would try it first
        stop_follower(bed, SOURCE)
        fake = "#!/bin/sh\necho '" + LIMIT_MESSAGE.format(path=DATA) + "' >&2\nexit 1\n"
        bed.ssh(SOURCE, "cat > /run/strackt-fault-inotifywait && chmod 755 /run/strackt-fault-inotifywait && "
                        "mount --bind /run/strackt-fault-inotifywait /usr/bin/inotifywait && "
                        f"systemctl stop 'strackt-journal-{move}*.service'", input=fake)
        try:
            synced = cli(bed, "sync", ENV_NAME)
        finally:
            bed.ssh(SOURCE, "umount /usr/bin/inotifywait", check=False)
        assert synced.returncode in (0, 4), synced.stdout[-3000:]
        last = pass_results(bed)[-1]
        reason = last.get("journal", "")
        ok = (last.get("mode") == "full" and "upper limit on inotify watches reached" in reason
              and last["duration_s"] < 10)
        row(request, "journal cannot start after preflight (watch limit, simulated on srv1): full pass at once, says why",
            ok, note=f"{last.get('duration_s')} s: {reason[:120]}")
        assert ok, last


def test_preflight_refuses_when_the_source_has_too_few_inotify_watches(fresh_testbed: Testbed, request) -> None:
    """Item 10: srv1's max_user_watches seen as 50 (bind mount on srv1 only): refused, naming the
    sysctl, nothing changed."""
    bed = fresh_testbed
    bed.ssh(SOURCE, "echo 50 > /run/strackt-fault-watches && "
                    "mount --bind /run/strackt-fault-watches /proc/sys/fs/inotify/max_user_watches")
    try:
        before = snapshot(bed)
        refused = cli(bed, "start", ENV_NAME, "--target", TARGET)
        after = snapshot(bed)
    finally:
        bed.ssh(SOURCE, "umount /proc/sys/fs/inotify/max_user_watches; rm -f /run/strackt-fault-watches", check=False)
    said = refused.stdout + refused.stderr
    ok = (refused.returncode == 3 and "fs.inotify.max_user_watches=50" in said
          and "preflight_raise_inotify_limits" in said)
    row(request, "too few inotify watches on the source: preflight refuses naming the sysctl", ok)
    assert ok, said[-3000:]
    assert_unchanged(before, after)
