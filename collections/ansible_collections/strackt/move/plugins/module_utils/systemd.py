# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemctl and transient units (systemd-run), as the modules on the servers use them.

``Systemd`` runs its commands through a ``Runner`` (``argv -> (rc, stdout, stderr)``): a module
passes ``AnsibleModule.run_command``, everything else the subprocess one here, a unit test a fake.
Stdlib only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Callable, Iterable

Runner = Callable[[list], "tuple[int, str, str]"]
ACTIVE_STATES = ("active", "activating", "reloading")
TIMED_OUT = 124  # coreutils timeout's exit code when it ended the command
# systemd refuses a transient unit whose name is still loaded: a stopped one stays so until its
# garbage collection runs, which can come after ``systemctl stop`` returned
STILL_LOADED = "already loaded"
UNLOAD_WAIT_S = 10.0


class SystemdError(RuntimeError):
    """A systemctl or systemd-run command failed; the message names it and why."""


def subprocess_runner(argv: list) -> tuple[int, str, str]:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr


def parse_list_units(text: str) -> dict[str, str]:
    """``systemctl list-units --plain --no-legend`` output -> {unit: active state}."""
    units = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            units[parts[0]] = parts[2]
    return units


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show -p A -p B`` output -> {A: value, B: value}."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def transient_argv(unit: str, command: Iterable[str], description: str, systemd_run: str = "systemd-run",
                   socket_properties: Iterable[str] = (), properties: Iterable[str] = (),
                   on_active_s: float | None = None) -> list:
    """systemd-run argv for a transient unit that is collected once it ends. With
    ``socket_properties`` it is socket-activated; with ``on_active_s`` a timer starts it then."""
    argv = [systemd_run, "--unit=" + unit, "--collect", "--quiet", "--description=" + description]
    argv += ["--property=" + p for p in properties]
    argv += ["--socket-property=" + p for p in socket_properties]
    if on_active_s is not None:
        argv.append("--on-active=%d" % max(1, int(round(on_active_s))))
    return argv + list(command)


class Systemd:
    def __init__(self, run: Runner = subprocess_runner, systemctl: str = "systemctl",
                 systemd_run: str = "systemd-run", timeout: str = "timeout",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.run = run
        self.sleep = sleep
        self.systemctl_bin = systemctl
        self.systemd_run_bin = systemd_run
        self.timeout_bin = timeout

    def systemctl(self, *args: str, check: bool = False) -> tuple[int, str]:
        argv = [self.systemctl_bin] + list(args)
        rc, out, err = self.run(argv)
        if check and rc != 0:
            raise SystemdError("%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return rc, out

    def is_active(self, unit: str) -> bool:
        _rc, out = self.systemctl("is-active", unit)
        return out.strip() in ACTIVE_STATES

    def start(self, unit: str, check: bool = True) -> tuple[int, str]:
        return self.systemctl("start", unit, check=check)

    def stop(self, *units: str, check: bool = True) -> tuple[int, str]:
        return self.systemctl("stop", *units, check=check)

    def stop_within(self, unit: str, timeout_s: float) -> tuple[int, str]:
        """``systemctl stop`` of ``unit``, waiting for its stop job (not polling for it) at most
        ``timeout_s``: rc TIMED_OUT when it did not end by then (the job itself goes on)."""
        seconds = "%.3f" % max(0.001, timeout_s)
        rc, out, err = self.run([self.timeout_bin, seconds, self.systemctl_bin, "stop", unit])
        return rc, out or err

    def enable(self, unit: str) -> tuple[int, str]:
        return self.systemctl("enable", unit)

    def disable(self, unit: str) -> tuple[int, str]:
        return self.systemctl("disable", unit)

    def reset_failed(self, *units: str) -> tuple[int, str]:
        return self.systemctl("reset-failed", *units)

    def _wait_unloaded(self, unit: str, timeout_s: float = UNLOAD_WAIT_S) -> bool:
        """Wait (bounded) until a stopped ``unit`` is unloaded; False at once if it runs."""
        waited, nap = 0.0, 0.05
        while waited < timeout_s:
            props = self.show(unit, "LoadState", "ActiveState")
            if props.get("ActiveState") in ACTIVE_STATES:
                return False
            if props.get("LoadState") == "not-found":
                return True
            self.sleep(nap)
            waited += nap
            nap = min(nap * 2, 1.0)
        return False

    def show(self, unit: str, *props: str) -> dict[str, str]:
        args = ["show"]
        for prop in props:
            args += ["-p", prop]
        return parse_show(self.systemctl(*(args + [unit]))[1])

    def units(self, prefix: str, types: Iterable[str] = ("socket", "service")) -> dict[str, bool]:
        """{unit: active} of the loaded units named ``<prefix>-<number>.<type>``."""
        _rc, out = self.systemctl("list-units", "--all", "--plain", "--no-legend",
                                  "--type=" + ",".join(types), prefix + "-*")
        pattern = re.compile(re.escape(prefix) + r"-[0-9]+\.(%s)$" % "|".join(re.escape(t) for t in types))
        return {unit: state == "active" for unit, state in parse_list_units(out).items() if pattern.match(unit)}

    def run_transient(self, unit: str, command: Iterable[str], description: str, check: bool = True,
                      **kwargs: object) -> int:
        """Start a transient unit (see ``transient_argv``); returns systemd-run's exit code."""
        argv = transient_argv(unit, command, description, systemd_run=self.systemd_run_bin, **kwargs)
        rc, out, err = self.run(argv)
        if rc != 0 and STILL_LOADED in (err or out) and self._wait_unloaded(unit):
            rc, out, err = self.run(argv)
        if check and rc != 0:
            raise SystemdError("cannot start %s: %s" % (unit, (err or out).strip()))
        return rc


def kill_cgroup(group: str, wait_s: float = 5.0) -> list[int]:
    """SIGKILL every process left in the cgroup ``group`` (systemd's path), until none is left or
    ``wait_s``; returns the PIDs still there."""
    if not group:
        return []
    deadline = time.monotonic() + wait_s
    while True:
        pids = cgroup_pids(group)
        if not pids or time.monotonic() >= deadline:
            return pids
        for pid in pids:
            if pid <= 0:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


#: where a cgroup of systemd's tree is: cgroup v2, or v1/hybrid (the unified and systemd's own hierarchy)
CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")


def cgroup_pids(group: str, roots: tuple[str, ...] = CGROUP_ROOTS) -> list[int]:
    """PIDs in the cgroup ``group`` (systemd's ControlGroup path); [] when it is gone."""
    for root in roots:
        try:
            with open(root + group + "/cgroup.procs") as f:
                # a process outside this PID namespace is listed as 0 (seen in nspawn's unified
                # hierarchy); kill(0) would signal the caller's own process group
                return [pid for pid in (int(line) for line in f if line.strip()) if pid > 0]
        except (OSError, ValueError):
            continue
    return []
