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
import time

RSYNC_FLAGS = ["-aHAXS", "--numeric-ids", "--delete", "--itemize-changes", "--stats"]

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
    }


def ssh_command(key_path, known_hosts_path, port=22, connect_timeout=10):
    """The -e value: the move key only, the pinned host key only, never a prompt."""
    return " ".join([
        "ssh", "-i", key_path, "-p", str(int(port)),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + known_hosts_path,
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=%d" % int(connect_timeout),
    ])


def remote_rel(env_root, path):
    """Path of ``path`` relative to the env root (what rrsync on the target sees)."""
    root = os.path.normpath(env_root)
    norm = os.path.normpath(path)
    if not norm.startswith(root + os.sep):
        raise ValueError("data path %s is not under the env root %s" % (path, env_root))
    return os.path.relpath(norm, root)


def build_argv(local_path, remote_host, remote_path, key_path, known_hosts_path, direction="push",
               dry_run=False, ssh_port=22, user="root", rsync_path="rsync"):
    """argv for one pass of one data path. push: local -> remote; pull: remote -> local."""
    if direction not in ("push", "pull"):
        raise ValueError("direction must be push or pull")
    argv = [rsync_path] + RSYNC_FLAGS
    if dry_run:
        argv.append("--dry-run")
    argv += ["-e", ssh_command(key_path, known_hosts_path, ssh_port)]
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
             "files_deleted": 0, "bytes_sent": 0, "bytes_received": 0}
    for r in results:
        for k in total:
            total[k] += r.get(k, 0)
    return total


def run_pass(data_paths, env_root, remote_host, key_path, known_hosts_path, direction="push",
             dry_run=False, ssh_port=22, timeout=None):
    """One pass over all data paths. Returns the pass figures incl. duration_s and started_at_ns."""
    started_ns = time.time_ns()
    t0 = time.monotonic()
    results = []
    for path in data_paths:
        argv = build_argv(path, remote_host, remote_rel(env_root, path), key_path, known_hosts_path,
                          direction=direction, dry_run=dry_run, ssh_port=ssh_port)
        res, _duration = run(argv, timeout=timeout)
        results.append(res)
    out = merge(results)
    out["duration_s"] = round(time.monotonic() - t0, 3)
    out["started_at_ns"] = started_ns
    out["vanished"] = any(r["vanished"] for r in results)
    return out
