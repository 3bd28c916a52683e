#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: server_facts
short_description: What a server holds of an environment and whether it has room for it
version_added: 0.1.0
description:
  - Reports whether the env is present on the server (its root, systemd unit or env file),
    the commit in its C(REVISION) file, the memory available, and the free space on each
    filesystem that holds (or will hold) the env's root and data paths.
  - For a path that does not exist yet, free space is measured at its nearest existing parent,
    which is the filesystem it will be created on.
  - With O(measure_data=true) it also adds up the size of the data paths (the source side),
    counts their directories, and names the special files (devices, fifos, sockets) and the
    files with a setuid or setgid bit in them, which a move does not carry (RV(not_carried)).
  - Reports the inotify limits the change journal runs under (RV(inotify)); with
    O(measure_data=true) its C(problem) says when the data paths have more directories than
    there are free watches (each directory needs one).
  - With O(need_data_bytes), O(headroom_mb) and O(memory_mb) it compares needs to what is there
    and lists each shortfall in RV(problems).
  - With O(head_start=true) (a target holding the env's retained copy, a move back) what the data
    paths and the app checkout already hold there counts as room; each needs only what it lacks of
    its need (never less than 0, and no path's surplus lowers another's). Nothing else of the copy
    is relied on.
  - With O(extra_paths) other things the server will hold count too (an evacuation's database
    on the filesystem of the server's PostgreSQL data directory), grouped by filesystem with the
    env's paths, so one filesystem's free space is never counted twice.
  - Never changes anything.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  root:
    description: The env's root directory.
    type: path
    required: true
  data_paths:
    description: The env's data paths (each under O(root)).
    type: list
    elements: path
    required: true
  measure_data:
    description: Add up the apparent size of every file under each existing data path.
    type: bool
    default: false
  need_data_bytes:
    description:
      - Bytes each data path will need (usually RV(data_bytes) measured on the source),
        keyed by data path. Paths not listed need 0.
    type: dict
    default: {}
  need_app_bytes:
    description:
      - Bytes the app checkout will need (usually RV(app_bytes) measured on the source), counted
        on the filesystem that holds O(root).
    type: int
    default: 0
  headroom_mb:
    description: Free space (MiB) required beyond the data on each filesystem used by the env.
    type: int
    default: 0
  memory_mb:
    description: Memory (MiB) the env needs; compared with C(MemAvailable). 0 skips the check.
    type: int
    default: 0
  head_start:
    description:
      - The server holds the env's retained copy (the caller checked the record says so); what its data
        paths and C(<root>/app) hold now is subtracted from O(need_data_bytes) and O(need_app_bytes), each
        up to its own need. The first pass of the move updates those files in place.
    type: bool
    default: false
  extra_paths:
    description:
      - Other paths that will need room on this server beside the env's own, each on the filesystem
        that holds it (or its nearest existing parent), added to what that filesystem needs.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where it will be written (e.g. the PostgreSQL data directory).
        type: path
        required: true
      need_bytes:
        description: Bytes it will take there.
        type: int
        required: true
      headroom_mb:
        description: Free space (MiB) it requires beyond O(extra_paths[].need_bytes).
        type: int
        default: 0
      label:
        description: What needs the room, for RV(problems) (e.g. C(the database shop)).
        type: str
        default: ""
"""

EXAMPLES = r"""
- name: Measure the data on the source
  strackt.move.server_facts:
    env: shop
    root: /srv/shop
    data_paths: [/srv/shop/data]
    measure_data: true
  register: source_facts

- name: Check the target has room
  strackt.move.server_facts:
    env: shop
    root: /srv/shop
    data_paths: [/srv/shop/data]
    need_data_bytes: "{{ source_facts.data_bytes }}"
    headroom_mb: 64
    memory_mb: 256
  register: target_facts
"""

RETURN = r"""
present:
  description: True when the env's root, unit file or env file exists on the server.
  returned: always
  type: bool
root_exists:
  description: Whether O(root) exists.
  returned: always
  type: bool
unit_exists:
  description:
    - Whether the env's unit is there - C(/etc/systemd/system/strackt-env-<env>.target), or the
      C(strackt-env-<env>.service) of an older deploy.
  returned: always
  type: bool
unit_file:
  description: The env's unit file found on the server, or null.
  returned: always
  type: str
env_file_exists:
  description: Whether C(/etc/strackt/envs/<env>.env) exists.
  returned: always
  type: bool
revision:
  description: Content of C(<root>/app/REVISION), or null when missing.
  returned: always
  type: str
data_bytes:
  description: Apparent size of each data path (0 when missing); only with O(measure_data).
  returned: always
  type: dict
  sample: {/srv/shop/data: 12345}
data_files:
  description: Number of files under the data paths; only with O(measure_data).
  returned: always
  type: int
app_bytes:
  description: Apparent size of C(<root>/app) (the checkout); only with O(measure_data), else 0.
  returned: always
  type: int
head_start_bytes:
  description:
    - With O(head_start), what each data path and C(<root>/app) already hold on the server (the disk
      their files occupy, each file at most its apparent size; a sparse file's hole is no room), keyed by
      path; empty otherwise.
  returned: always
  type: dict
memory:
  description: C(available_mb) and C(total_mb) from C(/proc/meminfo).
  returned: always
  type: dict
filesystems:
  description:
    - One entry per filesystem holding O(root) or a data path, with C(paths), C(measured_at)
      (the nearest existing parent), C(free_bytes), C(need_bytes), C(head_start_bytes) (what the
      retained copy there already holds of what is needed, with O(head_start)), C(extra_bytes) (of
      C(need_bytes), what O(extra_paths) on it need, headroom included) and C(device) (its device
      number, which the envs an evacuation plans onto one server share).
  returned: always
  type: list
  elements: dict
problems:
  description: Each shortfall of disk or memory, as a sentence naming what is short and by how much.
  returned: always
  type: list
  elements: str
data_dirs:
  description: Directories under the data paths (the data paths included); only with O(measure_data).
  returned: always
  type: int
not_carried:
  description:
    - What a move will not carry, only with O(measure_data) - C(special) (device, fifo and socket
      paths) and C(setuid) (files with a setuid or setgid bit, which arrive without it), the first
      20 of each, with C(special_count) and C(setuid_count); C(warning) is a sentence naming
      them, or null.
  returned: always
  type: dict
inotify:
  description:
    - C(max_user_watches), C(max_user_instances) (the sysctls under C(fs.inotify)), C(watches_in_use)
      (held by root's processes, which the journal runs as), C(watches_needed) (the data paths'
      directories plus 10 % and 100 to grow; 0 without O(measure_data)), C(raise_to) (a limit that
      would do) and C(problem) (a sentence naming the sysctl to raise, or null).
  returned: always
  type: dict
"""

import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Callable

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    ENV_FILE_DIR,
    UNIT_DIR,
    env_module,
)

MIB = 1024 * 1024


@dataclass
class Filesystem:
    device: int
    measured_at: str
    free_bytes: int
    paths: list[str] = field(default_factory=list)
    need_bytes: int = 0
    head_start_bytes: int = 0  # of what the env needs, what a retained copy there already holds
    extra_bytes: int = 0  # of need_bytes, what the extra paths on it need (their headroom included)
    extra_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExtraNeed:
    """Room something other than the env's files needs on the server (an evacuation's database)."""

    path: str
    need_bytes: int
    headroom_bytes: int = 0
    label: str = ""


def nearest_existing(path: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """The path itself or its nearest existing parent (where it would be created)."""
    current = posixpath.normpath(path)
    while not exists(current):
        parent = posixpath.dirname(current)
        if parent == current:
            break
        current = parent
    return current


@dataclass
class DataScan:
    """One walk of a data path: its size, files, directories, and what a move does not carry."""

    bytes: int = 0
    files: int = 0
    dirs: int = 0
    special: list[str] = field(default_factory=list)
    setuid: list[str] = field(default_factory=list)


def scan_tree(path: str, scan: DataScan | None = None) -> DataScan:
    """Size and file count as ``tree_size``; directories (the top included); special files and
    files with a setuid/setgid bit (paths). Symlinks are not followed."""
    scan = scan or DataScan()
    if not os.path.isdir(path) or os.path.islink(path):
        return scan
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        scan.dirs += 1
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue  # removed while we walked: the app keeps writing
            scan.bytes += st.st_size
            scan.files += 1
            if stat.S_ISREG(st.st_mode):
                if st.st_mode & 0o6000:
                    scan.setuid.append(full)
            elif not stat.S_ISLNK(st.st_mode):
                scan.special.append(full)
    return scan


def not_carried(scan: DataScan, limit: int = 20) -> dict:
    """What the move leaves behind or changes, and the warning that names it."""
    parts = []
    if scan.special:
        parts.append("%d special file(s) (devices, fifos, sockets) are not copied: %s"
                     % (len(scan.special), ", ".join(scan.special[:5]) + (" …" if len(scan.special) > 5 else "")))
    if scan.setuid:
        parts.append("%d file(s) with a setuid/setgid bit arrive without it: %s"
                     % (len(scan.setuid), ", ".join(scan.setuid[:5]) + (" …" if len(scan.setuid) > 5 else "")))
    return {
        "special": scan.special[:limit], "special_count": len(scan.special),
        "setuid": scan.setuid[:limit], "setuid_count": len(scan.setuid),
        "warning": ("in the data paths, " + "; ".join(parts) + " (a move carries neither: recreate them on the "
                    "target if the app needs them)") if parts else None,
    }


INOTIFY_SYSCTL = "/proc/sys/fs/inotify"


def inotify_watches_in_use(proc: str = "/proc", uid: int = 0) -> int:
    """inotify watches held by the processes of ``uid`` (the limit is per user)."""
    total = 0
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        base = os.path.join(proc, name)
        try:
            if os.stat(base).st_uid != uid:
                continue
            fds = os.listdir(os.path.join(base, "fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(base, "fd", fd)) != "anon_inode:inotify":
                    continue
                with open(os.path.join(base, "fdinfo", fd)) as handle:
                    total += sum(1 for line in handle if line.startswith("inotify wd:"))
            except OSError:
                continue
    return total


def inotify_facts(dirs: int | None, max_watches: int, max_instances: int, in_use: int) -> dict:
    """Whether the change journal can watch ``dirs`` directories; ``problem`` names the sysctl."""
    needed = dirs + dirs // 10 + 100 if dirs else 0
    free = max_watches - in_use
    raise_to = in_use + needed
    problem = None
    if dirs and needed > free:
        problem = ("the change journal needs an inotify watch per directory of the data paths: %d directories "
                   "(%d with room to grow), but only %d of fs.inotify.max_user_watches=%d are free (%d in use): "
                   "raise it on the source (sysctl -w fs.inotify.max_user_watches=%d, and in /etc/sysctl.d/ to keep "
                   "it), or set preflight_raise_inotify_limits: true"
                   % (dirs, needed, max(free, 0), max_watches, in_use, raise_to))
    return {"max_user_watches": max_watches, "max_user_instances": max_instances, "watches_in_use": in_use,
            "watches_needed": needed, "raise_to": max(raise_to, max_watches), "problem": problem}


def _read_int(path: str) -> int:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 0


def tree_size(path: str) -> tuple[int, int]:
    """Apparent size in bytes and number of files under path; symlinks are not followed."""
    total = 0
    count = 0
    if not os.path.lexists(path):
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
                count += 1
            except FileNotFoundError:
                continue  # removed while we walked: the app keeps writing
    return total, count


def held_bytes(path: str) -> int:
    """Bytes the files under path occupy on disk, each at most its apparent size: what a retained
    copy gives the first pass as room. A sparse file's hole is no room: rsync writes it out."""
    total = 0
    if not os.path.lexists(path):
        return 0
    for dirpath, _dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += min(st.st_blocks * 512, st.st_size)
    return total


def read_meminfo(text: str) -> dict[str, int]:
    """MiB values of MemAvailable and MemTotal from /proc/meminfo text."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _sep, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemAvailable", "MemTotal") and parts and parts[0].isdigit():
            values[key] = int(parts[0]) // 1024
    return {"available_mb": values.get("MemAvailable", 0), "total_mb": values.get("MemTotal", 0)}


def group_filesystems(
    root: str,
    data_paths: list[str],
    need_data_bytes: dict[str, int],
    headroom_bytes: int,
    probe: Callable[[str], tuple[int, int]],
    exists: Callable[[str], bool] = os.path.exists,
    need_app_bytes: int = 0,
    have_data_bytes: dict[str, int] | None = None,
    have_app_bytes: int = 0,
    extra: list[ExtraNeed] | None = None,
) -> list[Filesystem]:
    """Group root and data paths by the filesystem that holds them and add up what each needs.

    ``probe(path)`` returns (device, free bytes) of an existing path. Every filesystem used by the
    env needs the headroom once plus the data of the data paths on it; the one holding root also
    needs the app checkout. ``have_*``: what a retained copy already holds there (a move back); each
    path needs only what it lacks, and a path holding more than it needs earns nothing for another.
    ``extra``: other things to hold (with their own headroom, not the env's), on their filesystems.
    """
    have = have_data_bytes or {}
    filesystems: dict[int, Filesystem] = {}
    for path in [root] + list(data_paths):
        where = nearest_existing(path, exists)
        device, free = probe(where)
        fs = filesystems.get(device)
        if fs is None:
            fs = filesystems[device] = Filesystem(device=device, measured_at=where, free_bytes=free, need_bytes=headroom_bytes)
        fs.paths.append(path)
        needs = [(int(need_data_bytes.get(path, 0)), int(have.get(path, 0)))]
        if path == root:
            needs.append((need_app_bytes, have_app_bytes))
        for needed, held in needs:
            credit = min(max(held, 0), needed)
            fs.need_bytes += needed - credit
            fs.head_start_bytes += credit
    for item in extra or []:
        where = nearest_existing(item.path, exists)
        device, free = probe(where)
        fs = filesystems.get(device)
        if fs is None:  # a filesystem the env does not use: only the extra's own headroom
            fs = filesystems[device] = Filesystem(device=device, measured_at=where, free_bytes=free)
        fs.paths.append(item.path)
        fs.need_bytes += item.need_bytes + item.headroom_bytes
        fs.extra_bytes += item.need_bytes + item.headroom_bytes
        if item.label:
            fs.extra_labels.append(item.label)
    return list(filesystems.values())


def capacity_problems(filesystems: list[Filesystem], headroom_mb: int, memory: dict[str, int], memory_mb: int) -> list[str]:
    """A sentence per shortfall; empty when everything fits."""
    problems = []
    for fs in filesystems:
        if fs.free_bytes < fs.need_bytes:
            ahead = (" beyond the %.2f MiB the retained copy there already holds" % (fs.head_start_bytes / MIB)
                     if fs.head_start_bytes else "")
            env_bytes = fs.need_bytes - fs.extra_bytes
            env_part = ("data and app %.2f MiB%s + headroom %d MiB" % ((env_bytes - headroom_mb * MIB) / MIB, ahead, headroom_mb)
                        if env_bytes else "")
            extra_part = ("%s %.2f MiB with its headroom" % (" and ".join(fs.extra_labels) or "other paths", fs.extra_bytes / MIB)
                          if fs.extra_bytes else "")
            problems.append(
                "not enough disk for %s: %.2f MiB free on the filesystem at %s, %.2f MiB needed "
                "(%s); free space there or choose another target"
                % (", ".join(fs.paths), fs.free_bytes / MIB, fs.measured_at, fs.need_bytes / MIB,
                   " + ".join(part for part in (env_part, extra_part) if part))
            )
    if memory_mb and memory["available_mb"] < memory_mb:
        problems.append(
            "not enough memory: %d MiB available (MemAvailable), the env needs %d MiB (memory_mb); "
            "free memory there or choose another target" % (memory["available_mb"], memory_mb)
        )
    return problems


def _probe(path: str) -> tuple[int, int]:
    st = os.stat(path)
    vfs = os.statvfs(path)
    return st.st_dev, vfs.f_bavail * vfs.f_frsize


def main() -> None:
    module, env = env_module(
        dict(
            root=dict(type="path", required=True),
            data_paths=dict(type="list", elements="path", required=True),
            measure_data=dict(type="bool", default=False),
            need_data_bytes=dict(type="dict", default={}),
            need_app_bytes=dict(type="int", default=0),
            headroom_mb=dict(type="int", default=0),
            memory_mb=dict(type="int", default=0),
            head_start=dict(type="bool", default=False),
            extra_paths=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                need_bytes=dict(type="int", required=True),
                headroom_mb=dict(type="int", default=0),
                label=dict(type="str", default=""),
            )),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for name in ("headroom_mb", "memory_mb", "need_app_bytes"):
        if p[name] < 0:
            module.fail_json(msg="%s must be 0 or more, got %d" % (name, p[name]))
    try:
        need = {str(k): int(v) for k, v in p["need_data_bytes"].items()}
    except (TypeError, ValueError):
        module.fail_json(msg="need_data_bytes must map each data path to a whole number of bytes, got %r" % (p["need_data_bytes"],))
    extra = []
    for item in p["extra_paths"]:
        if item["need_bytes"] < 0 or item["headroom_mb"] < 0:
            module.fail_json(msg="extra_paths: need_bytes and headroom_mb must be 0 or more, got %r" % (item,))
        extra.append(ExtraNeed(posixpath.normpath(item["path"]), item["need_bytes"], item["headroom_mb"] * MIB,
                               item["label"]))
    root = posixpath.normpath(p["root"])
    data_paths = [posixpath.normpath(d) for d in p["data_paths"]]

    # the env's target (every process belongs to it); the single service of an older deploy
    unit_files = [posixpath.join(UNIT_DIR, "strackt-env-%s.%s" % (env, kind)) for kind in ("target", "service")]
    env_file = posixpath.join(ENV_FILE_DIR, "%s.env" % env)
    revision = None
    try:
        with open(posixpath.join(root, "app", "REVISION"), encoding="utf-8") as handle:
            revision = handle.read().strip() or None
    except OSError:
        pass

    data_bytes: dict[str, int] = {}
    data_files = 0
    app_bytes = 0
    scan = DataScan()
    if p["measure_data"]:
        app_bytes = tree_size(posixpath.join(root, "app"))[0]
        for path in data_paths:
            before = scan.bytes
            scan_tree(path, scan)
            data_bytes[path] = scan.bytes - before
        data_files = scan.files
    inotify = inotify_facts(scan.dirs if p["measure_data"] else None,
                            _read_int(posixpath.join(INOTIFY_SYSCTL, "max_user_watches")),
                            _read_int(posixpath.join(INOTIFY_SYSCTL, "max_user_instances")),
                            inotify_watches_in_use())

    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            memory = read_meminfo(handle.read())
    except OSError as exc:
        module.fail_json(msg="cannot read /proc/meminfo: %s" % exc)

    # a retained copy's files are updated by the first pass: the disk they occupy is room already
    head_start: dict[str, int] = {}
    app_dir = posixpath.join(root, "app")
    if p["head_start"]:
        for path in data_paths + [app_dir]:
            head_start[path] = held_bytes(path)
    try:
        filesystems = group_filesystems(root, data_paths, need, p["headroom_mb"] * MIB, _probe,
                                        need_app_bytes=p["need_app_bytes"],
                                        have_data_bytes={d: head_start.get(d, 0) for d in data_paths},
                                        have_app_bytes=head_start.get(app_dir, 0), extra=extra)
    except OSError as exc:
        module.fail_json(msg="cannot measure free space: %s" % exc)
    problems = capacity_problems(filesystems, p["headroom_mb"], memory, p["memory_mb"])

    root_exists = os.path.lexists(root)
    unit_file = next((path for path in unit_files if os.path.lexists(path)), None)
    unit_exists = unit_file is not None
    env_file_exists = os.path.lexists(env_file)
    module.exit_json(
        changed=False,
        present=root_exists or unit_exists or env_file_exists,
        root_exists=root_exists,
        unit_exists=unit_exists,
        unit_file=unit_file,
        env_file_exists=env_file_exists,
        revision=revision,
        data_bytes=data_bytes,
        data_files=data_files,
        data_dirs=scan.dirs,
        not_carried=not_carried(scan),
        inotify=inotify,
        app_bytes=app_bytes,
        head_start_bytes=head_start,
        memory=memory,
        filesystems=[
            dict(paths=fs.paths, measured_at=fs.measured_at, free_bytes=fs.free_bytes, need_bytes=fs.need_bytes,
                 head_start_bytes=fs.head_start_bytes, extra_bytes=fs.extra_bytes, device=fs.device)
            for fs in filesystems
        ],
        problems=problems,
    )


if __name__ == "__main__":
    main()
