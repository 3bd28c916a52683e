"""Orchestration levers timed both ways in the same bench run, on the same data and servers.

manifest_compare: the verify stage's comparison of a source manifest, with the manifest handed to
the next task as a registered variable (``expected``: the way before issue 17) and as a file on
the control node (``save``/``expected_file``: what verify and the check after the switch-over do
now). Each way is one ansible-playbook of two tasks against one server; the interleaved runs'
medians are reported.

app_stop: the env's stop inside the freeze, ``graceful`` (systemd's stop of its target: the app's
own shutdown) and ``kill`` (SIGKILL to its services' cgroups first: an env's ``freeze_stop: kill``), each
timed on the server around the very commands the freeze runs, interleaved, under the caller's
client load; the env is started again and healthy between two stops.

The follower's lever (the sync lag while the move waits, with and without it) is measured inside
a move: run.py's ``move_under_load``.
"""

from __future__ import annotations

import posixpath
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.testbed import Testbed
from tests.testbed.config import REPO_ROOT

from .envs import BenchEnv
from .moves import wait_healthy

_MANIFEST_WAYS = {
    "as_argument": ("return_entries: true", 'expected: "{{ made.entries }}"'),
    "as_file": ("save: true\n        return_entries: false", 'expected_file: "{{ made.manifest_file }}"'),
}
_PLAY = """
- name: A manifest compared {way}
  hosts: {server}
  gather_facts: false
  tasks:
    - name: Make it
      strackt.move.manifest:
        root: "{root}"
        paths: {paths}
        {make}
      register: made
    - name: Compare with it
      strackt.move.manifest:
        root: "{root}"
        paths: {paths}
        {expected}
        changed_since_ns: 0  # whatever the env changed in between is settling: the work is the same
        return_entries: false
"""


def _root(env: BenchEnv) -> str:
    return posixpath.dirname(posixpath.commonpath(list(env.data_paths)).rstrip("/")) or "/"


def manifest_compare(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 2) -> dict[str, Any]:
    """Seconds of each way (median of ``repeats`` interleaved runs) and their ratio."""
    paths = "[" + ", ".join(f'"{p}"' for p in env.data_paths) + "]"
    times: dict[str, list[float]] = {way: [] for way in _MANIFEST_WAYS}
    with tempfile.TemporaryDirectory(prefix="strackt-bench-levers-") as tmp:
        plays = {}
        for way, (make, expected) in _MANIFEST_WAYS.items():
            plays[way] = Path(tmp) / f"{way}.yml"
            plays[way].write_text(_PLAY.format(way=way.replace("_", " "), server=server, root=_root(env),
                                               paths=paths, make=make, expected=expected))
        for _ in range(repeats):
            for way, play in plays.items():
                started = time.monotonic()
                ran = subprocess.run(["ansible-playbook", "-i", str(testbed.inventory_dir), str(play)],
                                     env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT,
                                     timeout=1800)
                if ran.returncode != 0:
                    raise RuntimeError(f"levers: the manifest compared {way} failed:\n{ran.stdout[-2000:]}")
                times[way].append(round(time.monotonic() - started, 2))
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["as_file_s"] / out["as_argument_s"], 3)
    return out


def _stop_commands(env: BenchEnv) -> dict[str, str]:
    """What the freeze does (module_utils/freeze.py ``stop_env``), in shell: kill reads the env's
    services' cgroups, queues the stop job, SIGKILLs what is in the cgroups until they are empty
    (bounded), then waits for the job."""
    unit = env.target_unit
    groups = (f"g=$(for u in $(systemctl list-units --plain --no-legend --state=active "
              f"'strackt-env-{env.name}-*.service' | awk '{{print $1}}'); do systemctl show -p ControlGroup --value $u; done); ")
    kill = (groups + f"systemctl stop --no-block {unit}; "
            "for i in $(seq 500); do p=$(for c in $g; do cat /sys/fs/cgroup$c/cgroup.procs 2>/dev/null; done); "
            "[ -n \"$p\" ] || break; kill -KILL $p 2>/dev/null; sleep 0.01; done; ")
    return {"graceful": f"systemctl stop {unit}", "kill": kill + f"systemctl stop {unit}"}


def app_stop(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of each way to stop the env on ``server`` (median of ``repeats`` interleaved
    stops), timed on the server itself; the env runs again afterwards."""
    times: dict[str, list[float]] = {way: [] for way in _stop_commands(env)}
    try:
        for _ in range(repeats):
            for way, command in _stop_commands(env).items():
                wait_healthy(testbed, server, env)
                out = testbed.ssh(server, f"a=$(date +%s.%N); {command}; b=$(date +%s.%N); echo $a $b").stdout.split()
                times[way].append(round(float(out[-1]) - float(out[-2]), 3))
                testbed.ssh(server, f"systemctl start {env.target_unit}")
    finally:
        testbed.ssh(server, f"systemctl start {env.target_unit}", check=False)
    wait_healthy(testbed, server, env)
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["kill_s"] / out["graceful_s"], 3) if out["graceful_s"] else None
    return out
