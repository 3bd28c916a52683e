# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who could still write an env's data: read from /proc, for the freeze.

Once the env's systemd target is stopped, nothing may write into its data paths before the final
pass, or that write is lost to the new server. The freeze asks two questions here:

- which processes still run as the env's user (a worker, a cron job, a shell the target does not
  own), and
- which processes have a file under the data paths open for writing, or mapped writable and
  shared (an mmap write makes no inotify event: the change journal would never see it).

Stdlib only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# open(2) access mode bits as /proc/<pid>/fdinfo shows them (octal "flags:")
_O_ACCMODE = 0o3
_O_WRONLY = 0o1
_O_RDWR = 0o2


@dataclass(frozen=True)
class Writer:
    pid: int
    command: str
    uid: int
    path: str
    how: str  # "runs as the env's user" | "open for writing" | "mapped writable"

    def describe(self) -> str:
        what = self.how if not self.path else "%s %s" % (self.how, self.path)
        return "pid %d (%s, uid %d) %s" % (self.pid, self.command, self.uid, what)


def _pids(proc):
    for name in os.listdir(proc):
        if name.isdigit():
            yield int(name)


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None  # the process ended meanwhile, or we may not look


def _uid(proc, pid):
    status = _read(os.path.join(proc, str(pid), "status"))
    for line in (status or "").splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return int(fields[2])  # the effective uid
    return None


def _zombie(proc, pid):
    """An ended process its parent has not reaped yet: it holds no file and writes nothing. A
    main thread that ended while other threads run shows the same state: not a zombie then."""
    state, threads = None, None
    for line in (_read(os.path.join(proc, str(pid), "status")) or "").splitlines():
        if line.startswith("State:"):
            state = line.split()[1:2]
        elif line.startswith("Threads:"):
            threads = line.split()[1:2]
    return state == ["Z"] and threads in (None, ["0"], ["1"])


def _command(proc, pid):
    return (_read(os.path.join(proc, str(pid), "comm")) or "?").strip()


def _under(path, roots):
    return any(path == root or path.startswith(root + "/") for root in roots)


def find(data_paths, uid=None, proc="/proc", own_pid=None):
    """Every reason the data under ``data_paths`` could still change: processes of ``uid`` (the
    env's user) that run, files under the data paths open for writing or mapped writable+shared.
    Processes that end while they are looked at are skipped."""
    roots = [os.path.normpath(p) for p in data_paths]
    own = os.getpid() if own_pid is None else own_pid
    found = []
    for pid in _pids(proc):
        if pid == own:
            continue
        base = os.path.join(proc, str(pid))
        puid = _uid(proc, pid)
        if puid is None or _zombie(proc, pid):
            continue
        if uid is not None and puid == uid:
            found.append(Writer(pid, _command(proc, pid), puid, "", "runs as the env's user"))
        try:
            fds = os.listdir(os.path.join(base, "fd"))
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(os.path.join(base, "fd", fd))
            except OSError:
                continue
            if not target.startswith("/") or not _under(target, roots):
                continue
            info = _read(os.path.join(base, "fdinfo", fd)) or ""
            for line in info.splitlines():
                if line.startswith("flags:"):
                    mode = int(line.split()[1], 8) & _O_ACCMODE
                    if mode in (_O_WRONLY, _O_RDWR):
                        found.append(Writer(pid, _command(proc, pid), puid, target, "open for writing"))
                    break
        for line in (_read(os.path.join(base, "maps")) or "").splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[1][1] == "w" and fields[1][3] == "s" and _under(fields[5], roots):
                found.append(Writer(pid, _command(proc, pid), puid, fields[5], "mapped writable"))
    return found
