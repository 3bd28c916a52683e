# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rsync pass between two servers: the command line, running it, and reading its output.

Runs on the source server (the rsync_pass and cutover_freeze modules), straight to the target
over ssh with the move's own key and a pinned known_hosts; never through the controller.
Stdlib only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess
import tempfile
import time

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.manifest import PARTIAL_DIR
from ansible_collections.strackt.move.plugins.module_utils.names import RELEASED_MARKER
from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import BACKUP_ROOT, BARRIER_REMOTE_COMMAND

# -a without -D: a move carries no device, fifo or socket (the target's guard refuses them too,
# module_utils/rsync_guard.py), and --chmod strips setuid/setgid bits from files whichever side
# sends (the guard adds the same on its side).
COMMON_FLAGS = ["--numeric-ids", "--chmod=Fug-s"]
RSYNC_FLAGS = ["-rlptgoHAXS"] + COMMON_FLAGS + ["--delete", "--itemize-changes", "--stats"]
# An incremental pass copies the paths the change journal names (module_utils/journal.py) with
# --files-from: not recursive, so it costs what changed, not the size of the directories they are
# in (a filtered recursive run scans each such directory on both sides: 0.6 s against 0.05 s for
# 100 files changed across 100 directories of 1,000). A listed path gone from the sending side
# is skipped (--ignore-missing-args). -I: every listed file goes through the delta transfer (the
# journal named it; rsync's size+mtime quick check would skip a same-size rewrite within the same
# mtime second). No -r: a listed directory is made, its content only when
# listed itself (-a left -r out with --files-from; -r spelled out would copy whole directories).
INCREMENTAL_FLAGS = ["-lptgoHAXSI"] + COMMON_FLAGS + ["--from0", "--ignore-missing-args", "--itemize-changes", "--stats"]
# What the journal saw deleted goes in a second run, only when there is any: recursive --delete
# reaching only the named paths (include rules from `change_rules`, then --exclude=*); it scans
# just the directories those paths are in (--delete-missing-args fails against a remote receiver
# in 3.2.7).
DELETION_FLAGS = ["-rlptgoHAXS"] + COMMON_FLAGS + ["--from0", "--delete", "--itemize-changes", "--stats"]
# An interrupted transfer leaves what arrived in this directory (next to the file, on the
# receiving side; the manifest ignores it); the next pass sends only the rest.
PARTIAL_FLAG = "--partial-dir=" + PARTIAL_DIR
# Seconds without any data moving before rsync gives up (passes outside the freeze have no
# wall-clock limit: a large file may take as long as it takes while it makes progress).
DEFAULT_IDLE_TIMEOUT = 60
# ssh for bulk data on a trusted LAN: AES-GCM where the CPU has AES instructions, no compression
SSH_CIPHERS = "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"

# rsync exit codes that are not failures for a pass
RC_OK = (0,)
RC_VANISHED = 24  # "some files vanished before they could be transferred": the source is live

# %i is YXcstpoguax: Y update type, X file type, then 9 attribute letters (rsync >= 3.1)
_ITEM_RE = re.compile(r"^(?:(?P<deleting>\*deleting)\s+|(?P<code>[<>ch.*][fdLDS][^ ]{9}) )(?P<name>.*)$")
_STATS = {
    "Number of files": "files_total",
    "Number of created files": "files_created",
    "Number of deleted files": "files_deleted",
    "Number of regular files transferred": "files_transferred",
    "Total file size": "bytes_total",
    "Total transferred file size": "bytes_changed",
    "Literal data": "literal_bytes",
    "Matched data": "matched_bytes",
    "Total bytes sent": "bytes_sent",
    "Total bytes received": "bytes_received",
}
_STAT_RE = re.compile(r"^(?P<key>[A-Z][A-Za-z ]+?):\s+(?P<num>[\d,.]+)")


# The options of every module that copies the env's data to the target (doc fragment
# strackt.move.transfer): rsync_pass always needs them, freeze for state frozen and thawed.
TRANSFER_OPTIONS = ("env_root", "data_paths", "target_address", "key_path", "known_hosts_path")


def transfer_argument_spec():
    """The argument spec of the transfer options (none required by itself: see TRANSFER_OPTIONS)."""
    return dict(
        env_root=dict(type="path"),
        data_paths=dict(type="list", elements="path"),
        target_address=dict(type="str"),
        key_path=dict(type="path", no_log=False),
        known_hosts_path=dict(type="path"),
    )


class RsyncError(Exception):
    def __init__(self, message, rc=None, stderr=""):
        Exception.__init__(self, message)
        self.rc = rc
        self.stderr = stderr


def _num(text):
    # LC_ALL=C is forced when rsync runs; still accept "1,234" and "1.234" grouping
    return int(re.sub(r"[,.]", "", text))


def parse_itemized(stdout):
    """The itemized changes: list of (code, name); code '*deleting' for deletions."""
    items = []
    for line in stdout.splitlines():
        m = _ITEM_RE.match(line)
        if not m:
            continue
        if m.group("deleting"):
            items.append(("*deleting", m.group("name")))
        else:
            code = m.group("code")
            # '.' update type with only spaces/dots = nothing changed (seen with -ii only)
            if code[0] == "." and set(code[2:]) <= set(". "):
                continue
            items.append((code, m.group("name")))
    return items


def parse_stats(stdout):
    """The --stats block as a dict of ints (keys from _STATS)."""
    stats = {}
    for line in stdout.splitlines():
        m = _STAT_RE.match(line.strip())
        if m and m.group("key") in _STATS:
            stats[_STATS[m.group("key")]] = _num(m.group("num"))
    return stats


def replaced_or_deleted(items):
    """How many of the itemized entries replaced or deleted an existing file or link on the
    receiving side: with --backup, what went to the backup directory."""
    count = 0
    for code, name in items:
        if code == "*deleting":
            count += not name.endswith("/")  # a directory's files are itemized one by one
        elif code[0] in "<>ch" and code[1] in "fL" and "+" not in code[2:]:
            count += 1
    return count


def summarize(stdout):
    """The figures a pass records: files_changed, bytes_changed, files_total, bytes_total."""
    stats = parse_stats(stdout)
    missing = [k for k in ("files_total", "bytes_total", "bytes_changed") if k not in stats]
    if missing:
        raise RsyncError("rsync printed no --stats figures (%s missing); output: %s"
                         % (", ".join(missing), stdout[-2000:]))
    items = parse_itemized(stdout)
    return {
        "files_changed": len(items),
        "bytes_changed": stats["bytes_changed"],
        "files_total": stats["files_total"],
        "bytes_total": stats["bytes_total"],
        "files_deleted": sum(1 for code, _name in items if code == "*deleting"),
        "bytes_sent": stats.get("bytes_sent", 0),
        "bytes_received": stats.get("bytes_received", 0),
        "literal_bytes": stats.get("literal_bytes", 0),
        "replaced_or_deleted": replaced_or_deleted(items),
    }


def ssh_command(key_path, known_hosts_path, port=22, connect_timeout=10, control_path=None):
    """The -e value: the move key only, the pinned host key only, never a prompt. With
    `control_path`, a master connection opened by `open_master` is used when it is there (an
    ssh handshake costs ~0.3 s, too much inside a freeze); else ssh connects as usual."""
    control = ["-o", "ControlMaster=no", "-o", "ControlPath=" + control_path] if control_path else []
    return " ".join(["ssh"] + control + [
        "-i", key_path, "-p", str(int(port)),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + known_hosts_path,
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=%d" % int(connect_timeout),
        # a link that dies mid-transfer ends the pass in ~30 s instead of hanging on TCP
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=6",
        "-o", "Compression=no",
        "-o", "Ciphers=" + SSH_CIPHERS,
    ])


def master_argv(key_path, known_hosts_path, remote_host, control_path, ssh_port=22, user="root", persist_s=300):
    """argv of ssh opening a master connection at `control_path` (backgrounded, ending by
    itself after `persist_s` idle seconds)."""
    return ssh_command(key_path, known_hosts_path, ssh_port).split() + [
        "-o", "ControlMaster=yes", "-o", "ControlPath=" + control_path,
        "-o", "ControlPersist=%d" % int(persist_s), "-N", "-f", "%s@%s" % (user, remote_host)]


def close_master_argv(control_path, remote_host, user="root"):
    return ["ssh", "-o", "ControlPath=" + control_path, "-O", "exit", "%s@%s" % (user, remote_host)]


def open_master(key_path, known_hosts_path, remote_host, control_path, ssh_port=22, user="root",
                persist_s=300):
    """Open an ssh master connection (multiplexing) to `remote_host` at `control_path`; it ends
    by itself after `persist_s` idle seconds, or with `close_master`. Returns True if it is up."""
    argv = master_argv(key_path, known_hosts_path, remote_host, control_path, ssh_port, user, persist_s)
    try:
        # no pipes: the backgrounded master would hold them open
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def close_master(control_path, remote_host, user="root"):
    subprocess.run(close_master_argv(control_path, remote_host, user),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=10, check=False)


def remote_rel(env_root, path):
    """Path of ``path`` relative to the env root (what the target's rsync guard takes)."""
    root = os.path.normpath(env_root)
    norm = os.path.normpath(path)
    if not norm.startswith(root + os.sep):
        raise ValueError("data path %s is not under the env root %s" % (path, env_root))
    return os.path.relpath(norm, root)


def backup_root(env_root, move_id):
    """Where a move keeps what its passes replace or delete: ``<root>/.strackt-backup/<move_id>``
    on the receiving side (the target's guard allows --backup-dir only under it)."""
    return os.path.join(os.path.normpath(env_root), BACKUP_ROOT, move_id)


def validate_changes(changes, data_paths):
    """``changes`` ({data path: {"copy": [...], "delete": [...]}}, paths relative to the data
    path) with normalised keys and lists; ValueError naming what is wrong."""
    known = dict((os.path.normpath(p), p) for p in data_paths)
    out = {}
    if not isinstance(changes, dict):
        raise ValueError("changes must map data paths to {copy: [...], delete: [...]}, got %r" % (changes,))
    for key, lists in changes.items():
        path = os.path.normpath(str(key))
        if path not in known:
            raise ValueError("changes names %r, which is not one of the data paths (%s)" % (key, ", ".join(data_paths)))
        if not isinstance(lists, dict) or set(lists) - {"copy", "delete"}:
            raise ValueError("changes[%r] must be {copy: [...], delete: [...]}, got %r" % (key, lists))
        entry = {"copy": [], "delete": []}
        for kind in ("copy", "delete"):
            names = lists.get(kind) or []
            if not isinstance(names, list):
                raise ValueError("changes[%r].%s must be a list of paths relative to the data path" % (key, kind))
            for name in names:
                parts = str(name).split("/")
                if not name or str(name).startswith("/") or ".." in parts or "\0" in str(name):
                    raise ValueError("changes[%r].%s: %r is not a path relative to the data path" % (key, kind, name))
                entry[kind].append(str(name).rstrip("/"))
        out[path] = entry
    return out


def changes_option(module):
    """A module's ``changes`` option (with its ``data_paths``) checked, or None when not given;
    the module fails naming what is wrong."""
    if module.params["changes"] is None:
        return None
    try:
        return validate_changes(module.params["changes"], module.params["data_paths"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))


def build_argv(local_path, remote_host, remote_path, key_path, known_hosts_path, direction="push",
               dry_run=False, ssh_port=22, user="root", rsync_path="rsync", files_from=None,
               rules_from=None, control_path=None, idle_timeout=None, partial=True, backup_dir=None,
               remote_command=None):
    """argv for one pass of one data path. push: local -> remote; pull: remote -> local.
    With `files_from` (NUL-terminated paths relative to the data path) only those are copied;
    with `rules_from` (NUL-terminated rules from `change_rules`) only what they name is deleted.
    `idle_timeout`: rsync's --timeout; `partial`: keep what an interrupted transfer got in
    PARTIAL_DIR; `backup_dir` (absolute, on the receiving side): every file replaced or deleted
    is kept there. `remote_command`: rsync's --rsync-path (BARRIER_REMOTE_COMMAND asks the
    target's guard for the freeze's barrier once this run succeeded)."""
    if direction not in ("push", "pull"):
        raise ValueError("direction must be push or pull")
    if files_from:
        argv = [rsync_path] + INCREMENTAL_FLAGS + ["--files-from=" + files_from]
    elif rules_from:
        argv = [rsync_path] + DELETION_FLAGS + ["--include-from=" + rules_from, "--exclude=*"]
    else:
        argv = [rsync_path] + RSYNC_FLAGS
    if partial:
        argv.append(PARTIAL_FLAG)
    if idle_timeout:
        argv.append("--timeout=%d" % max(1, int(idle_timeout)))
    if backup_dir:
        argv += ["--backup", "--backup-dir=" + backup_dir]
    if dry_run:
        argv.append("--dry-run")
    if remote_command:
        argv.append("--rsync-path=" + remote_command)
    argv += ["-e", ssh_command(key_path, known_hosts_path, ssh_port, control_path=control_path)]
    local = local_path.rstrip("/") + "/"
    remote = "%s@%s:%s/" % (user, remote_host, remote_path.rstrip("/"))
    argv += [local, remote] if direction == "push" else [remote, local]
    return argv


def run(argv, timeout=None):
    """Run one rsync; return (summary dict, duration_s, rc). Raises RsyncError on failure."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              timeout=timeout, check=False, universal_newlines=True)
    except OSError as exc:
        raise RsyncError("cannot run %s: %s (is rsync installed?)" % (argv[0], exc))
    except subprocess.TimeoutExpired:
        raise RsyncError("rsync did not finish within %s s" % timeout)
    duration = time.monotonic() - started
    if proc.returncode not in RC_OK and proc.returncode != RC_VANISHED:
        raise RsyncError("rsync exited %d: %s" % (proc.returncode, proc.stderr.strip() or proc.stdout[-2000:]),
                         rc=proc.returncode, stderr=proc.stderr)
    result = summarize(proc.stdout)
    result["rc"] = proc.returncode
    result["vanished"] = proc.returncode == RC_VANISHED
    return result, duration


def merge(results):
    """Sum the figures of several data paths into one pass."""
    total = {"files_changed": 0, "bytes_changed": 0, "files_total": 0, "bytes_total": 0,
             "files_deleted": 0, "bytes_sent": 0, "bytes_received": 0, "literal_bytes": 0,
             "replaced_or_deleted": 0}
    for r in results:
        for k in total:
            total[k] += r.get(k, 0)
    return total


def pass_dir_name(started_ns):
    """The name of a pass's own backup directory: when it started, UTC to the microsecond."""
    seconds, ns = divmod(int(started_ns), 10 ** 9)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + ".%06dZ" % (ns // 1000)


def run_pass(data_paths, env_root, remote_host, key_path, known_hosts_path, direction="push",
             dry_run=False, ssh_port=22, timeout=None, changes=None, started_ns=None, t0=None,
             control_path=None, idle_timeout=None, backup_to=None, barrier=False):
    """One pass over all data paths. Returns the pass figures incl. duration_s and started_at_ns.

    `changes` ({data_path: {"copy": [...], "delete": [...]}}, paths relative to the data path:
    from the change journal or a caller's list) makes it incremental: only the named paths, and a
    data path without changes is not contacted at all. `timeout`: wall-clock limit of each rsync
    (the freeze's budget); `idle_timeout`: rsync's own --timeout. `backup_to` (``backup_root``):
    every file the pass replaces or deletes on the receiving side is kept under it, in a directory
    of this pass's own, ``<backup_to>/<pass started, UTC>/<data path relative to the root>``; the
    figures then hold ``backup_dir`` (the pass's directory) and ``backed_up``. `barrier` (a push):
    the pass's last rsync run asks the target's guard to write the freeze's barrier once it
    succeeded; the figures' ``barrier`` says whether one did (a pass with nothing to copy runs
    none)."""
    if barrier and (direction != "push" or dry_run):
        raise ValueError("only a real push leaves the barrier on the target")
    started_ns = started_ns or time.time_ns()
    t0 = t0 or time.monotonic()
    if backup_to:
        # a pass of its own: a pass run again (a rollback run again after a partial pull) would
        # otherwise replace the first pass's backup of a file - the only copy of its original -
        # with what that pass had put in its place
        backup_to = os.path.join(backup_to, pass_dir_name(started_ns))
    runs = []  # (data path, its path on the other side, argv options): all known before the first runs
    list_files = []
    try:
        for path in data_paths:
            rel = remote_rel(env_root, path)
            if changes is None:
                runs.append((path, rel, {}))
                continue
            listed = changes.get(os.path.normpath(path)) or {}
            # copies first, then deletions (once the copies are in); a kind with nothing is not run
            for kind, lines in (("files_from", listed.get("copy") or []),
                                ("rules_from", change_rules([], listed.get("delete") or []))):
                if not lines:
                    continue
                fd, list_file = tempfile.mkstemp(prefix="strackt-changes-")
                list_files.append(list_file)
                with os.fdopen(fd, "wb") as f:
                    f.write(b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in lines))
                runs.append((path, rel, {kind: list_file}))
        results = []
        for number, (path, rel, lists) in enumerate(runs, 1):
            last = number == len(runs)
            argv = build_argv(path, remote_host, rel, key_path, known_hosts_path, direction=direction,
                              dry_run=dry_run, ssh_port=ssh_port, control_path=control_path,
                              idle_timeout=idle_timeout,
                              backup_dir=os.path.join(backup_to, rel) if backup_to else None,
                              remote_command=BARRIER_REMOTE_COMMAND if barrier and last else None, **lists)
            results.append(run(argv, timeout=timeout)[0])
    finally:
        for list_file in list_files:
            os.unlink(list_file)
    out = merge(results)
    out["duration_s"] = round(time.monotonic() - t0, 3)
    out["started_at_ns"] = started_ns
    out["started_at"] = clock.ts_from_ns(started_ns)  # the record's format; started_at_ns is exact
    out["vanished"] = any(r["vanished"] for r in results)
    if barrier:
        out["barrier"] = bool(runs)
    if backup_to:
        out["backup_dir"] = backup_to
        out["backed_up"] = out["replaced_or_deleted"]
    return out


def _rule(parts, suffix=""):
    """An anchored rule naming exactly `parts`. rsync reads a backslash as an escape only in a
    pattern with a wildcard in it: escape only then (always with a /*** suffix)."""
    raw = "/" + "/".join(parts)
    if "*" in suffix or any(c in raw for c in "*?["):
        raw = "/" + "/".join(re.sub(r"([*?\[\\])", r"\\\1", p) for p in parts)
    return raw + suffix


def change_rules(copy, delete):
    """--include-from rules (then --exclude=*) that let one recursive --delete pass reach
    exactly the named paths (relative): the directories leading to each, each path itself (a
    directory named to `copy` without its contents: those are named on their own), and
    everything under a path named to `delete` (so a deleted directory goes as a whole)."""
    rules = []
    seen = set()

    def add(rule):
        if rule not in seen:
            seen.add(rule)
            rules.append(rule)

    for rel, whole in [(r, False) for r in copy] + [(r, True) for r in delete]:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            add(_rule(parts[:i], "/"))
        add(_rule(parts))
        if whole:
            add(_rule(parts, "/***"))
    return rules


def journaled_pass(journal, data_paths, env_root, remote_host, key_path, known_hosts_path,
                   dry_run=False, ssh_port=22, timeout=None, control_path=None, idle_timeout=None):
    """A push pass that copies only what the change journal recorded since the last successful
    pass, or everything when the journal cannot vouch for that. Adds `mode` (full|incremental)
    and `journal` (why) to the figures.

    A pass that fails leaves the journal as it was: the next one reads again from the offset
    the last successful pass committed (what this one copied is copied again, a partial file
    goes on from where it stopped). Only a journal that failed itself is forgotten."""
    # one pass at a time against the journal: the follower may be between a plan and its commit
    with journal.pass_lock():
        return _journaled_pass(journal, data_paths, env_root, remote_host, key_path, known_hosts_path, dry_run,
                               ssh_port, timeout, control_path, idle_timeout)


def _journaled_pass(journal, data_paths, env_root, remote_host, key_path, known_hosts_path, dry_run, ssh_port,
                    timeout, control_path, idle_timeout):
    # checked under the lock: the freeze's final pass and its marker come before any pass after it
    released = os.path.join(os.path.dirname(journal.dir), RELEASED_MARKER) if getattr(journal, "dir", None) else None
    if released and os.path.exists(released):
        raise RsyncError("the switch-over handed the traffic to the target already (%s): no pass pushes the "
                         "source over it any more" % released)
    started_ns = time.time_ns()
    t0 = time.monotonic()
    try:
        plan = journal.plan()
    except Exception as exc:  # no journal (inotify limits, no inotifywait): a full pass is always right
        try:
            journal.forget()
        except OSError:
            pass
        plan = {"mode": "full", "reason": "journal unavailable: %s" % exc, "token": None}
    changes = plan.get("changes") if plan["mode"] == "incremental" else None
    out = run_pass(data_paths, env_root, remote_host, key_path, known_hosts_path, direction="push",
                   dry_run=dry_run, ssh_port=ssh_port, timeout=timeout, changes=changes,
                   started_ns=started_ns, t0=t0, control_path=control_path, idle_timeout=idle_timeout)
    if not dry_run and plan["token"]:
        try:
            journal.committed(plan["token"])
        except Exception as exc:  # the pass itself is fine; the next one is full
            journal.forget()
            plan["reason"] += "; the next pass is full (%s)" % exc
    out["mode"] = plan["mode"]
    out["journal"] = plan["reason"]
    return out
