"""Orchestration levers timed both ways in the same bench run, on the same data and servers.

manifest_compare: the verify stage's comparison of a source manifest, with the manifest handed to
the next task as a registered variable (``expected``: the way before issue 17) and as a file on
the control node (``save``/``expected_file``: what verify and the check after the switch-over do
now). Each way is one ansible-playbook of two tasks against one server; the interleaved runs'
medians are reported.

app_stop: the env's stop inside the freeze, ``graceful`` (systemd's stop of its target: the app's
own shutdown) and ``kill`` (SIGKILL to its services' cgroups first: an env's ``freeze_stop: kill``,
its cgroups read before the hold; ``kill_lookup_inside``: read inside it, as before), each timed on
the server around the very commands the freeze runs, interleaved, under the caller's client load;
the env is started again and healthy between two stops.

provision_directories: provision's directories (root, app, data, env files', Caddy's), one
ansible.builtin.file run per directory as before and one strackt.move.env_directories run now, each
one ansible-playbook against the source (where they exist: nothing changes), interleaved.

barrier: the freeze's barrier after its final pass, as a push of its own (the way before: one more
ssh session, guard and rsync inside the freeze) and carried by the final pass's last rsync run (the
target's guard writes it once that run succeeded). Timed on the source at the gate, with the
move's own key, guard and master connection, around the very rsync commands the freeze runs (one
file copied, then the barrier), interleaved.

proxy_files: provision's Caddy files (the global Caddyfile, the env's site, the closed marker), one
module run per file as before (copy, copy, file) and one strackt.move.server_files run now, each one
ansible-playbook against the source with the contents it has (nothing changes), interleaved.

stage_runs: the start-up of a stage's run, ``start``'s five stages as one ansible-playbook each (the
way before) and as one chained run (``strackt_move.stages.chain_from``: each stage's playbook after a
marker play), through the controller's own runner backend and its shared ssh masters. Each stage
is a stand-in of the same shape as the real ones' opening: a play on the control node that names
the target, then a play on the target with one module run; what differs is only the runs.

The follower's lever (the sync lag while the move waits, with and without it) is measured inside
a move: run.py's ``move_under_load``.
"""

from __future__ import annotations

import posixpath
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.strackt.move.plugins.module_utils import rsync as rs

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


def _timed_plays(testbed: Testbed, plays: dict[str, Path], repeats: int, what: str,
                 unchanged: bool = False) -> dict[str, list[float]]:
    """Wall seconds of one ansible-playbook of each play, ``repeats`` interleaved rounds; a play
    that fails (or, ``unchanged``, changes anything) stops the bench naming it."""
    times: dict[str, list[float]] = {way: [] for way in plays}
    for _ in range(repeats):
        for way, play in plays.items():
            started = time.monotonic()
            ran = subprocess.run(["ansible-playbook", "-i", str(testbed.inventory_dir), str(play)],
                                 env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT,
                                 timeout=1800)
            if ran.returncode != 0 or (unchanged and "changed=0" not in ran.stdout.split("PLAY RECAP")[-1]):
                raise RuntimeError(f"levers: {what} {way} failed{' or changed something' if unchanged else ''}:\n"
                                   f"{ran.stdout[-2000:]}")
            times[way].append(round(time.monotonic() - started, 2))
    return times


def manifest_compare(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 2) -> dict[str, Any]:
    """Seconds of each way (median of ``repeats`` interleaved runs) and their ratio."""
    paths = "[" + ", ".join(f'"{p}"' for p in env.data_paths) + "]"
    with tempfile.TemporaryDirectory(prefix="strackt-bench-levers-") as tmp:
        plays = {}
        for way, (make, expected) in _MANIFEST_WAYS.items():
            plays[way] = Path(tmp) / f"{way}.yml"
            plays[way].write_text(_PLAY.format(way=way.replace("_", " "), server=server, root=_root(env),
                                               paths=paths, make=make, expected=expected))
        times = _timed_plays(testbed, plays, repeats, "the manifest compared")
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["as_file_s"] / out["as_argument_s"], 3)
    return out


_DIRECTORIES_PLAYS = {
    # provision before: one ansible.builtin.file run per directory (each loop item a module run)
    "file_loops": """
    - name: Root and app directories
      ansible.builtin.file: {{path: "{{{{ item }}}}", state: directory, owner: root, group: root, mode: "0755"}}
      loop: ["{root}", "{root}/app"]
    - name: Data directories
      ansible.builtin.file: {{path: "{{{{ item }}}}", state: directory, owner: "{uid}", group: "{uid}", mode: "0750"}}
      loop: {data}
    - name: Env file directory
      ansible.builtin.file: {{path: /etc/strackt/envs, state: directory, owner: root, group: root, mode: "0755"}}
    - name: Caddy's directories
      ansible.builtin.file: {{path: "{{{{ item }}}}", state: directory, owner: root, group: root, mode: "0755"}}
      loop: [/etc/caddy/sites, /var/lib/strackt-move/closed]
""",
    # provision now: one strackt.move.env_directories run
    "one_call": """
    - name: The env's directories
      strackt.move.env_directories:
        directories: [{{path: "{root}"}}, {{path: "{root}/app"}}, {data_entries},
                      {{path: /etc/strackt/envs}}, {{path: /etc/caddy/sites}}, {{path: /var/lib/strackt-move/closed}}]
""",
}


def provision_directories(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of provision's directories each way on ``server`` (where they exist: each run sets
    owners and modes and changes nothing), one ansible-playbook each, median of ``repeats``
    interleaved runs."""
    data = "[" + ", ".join(f'"{p}"' for p in env.data_paths) + "]"
    entries = ", ".join(f'{{path: "{p}", owner: "{env.uid}", group: "{env.gid}", mode: "0750"}}' for p in env.data_paths)
    with tempfile.TemporaryDirectory(prefix="strackt-bench-levers-") as tmp:
        plays = {}
        for way, tasks in _DIRECTORIES_PLAYS.items():
            plays[way] = Path(tmp) / f"{way}.yml"
            plays[way].write_text(f"- name: Provision's directories, {way.replace('_', ' ')}\n  hosts: {server}\n"
                                  "  gather_facts: false\n  tasks:" + tasks.format(root=env.root, uid=env.uid, data=data,
                                                                                   data_entries=entries))
        times = _timed_plays(testbed, plays, repeats, "provision's directories by", unchanged=True)
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["one_call_s"] / out["file_loops_s"], 3) if out["file_loops_s"] else None
    return out


_PROXY_FILES_PLAYS = {
    # provision before: a template (rendered here, then copied) per Caddy file, a file task for the marker
    "per_file": """
    - name: The global Caddyfile
      ansible.builtin.copy: {{dest: /etc/caddy/Caddyfile, content: "{{{{ caddyfile }}}}", owner: root, group: root, mode: "0644"}}
    - name: The env's site
      ansible.builtin.copy: {{dest: "{site}", content: "{{{{ site }}}}", owner: root, group: root, mode: "0644"}}
    - name: The site open here
      ansible.builtin.file: {{path: "{closed}", state: absent}}
""",
    # provision now: one strackt.move.server_files run
    "one_call": """
    - name: Caddy's files
      strackt.move.server_files:
        files:
          - {{path: "{closed}", state: absent}}
          - {{path: /etc/caddy/Caddyfile, content: "{{{{ caddyfile }}}}"}}
          - {{path: "{site}", content: "{{{{ site }}}}"}}
""",
}


def proxy_files(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of provision's Caddy files each way on ``server`` (the env's home: its files are in
    place and its site open, so nothing changes), one ansible-playbook each, median of ``repeats``
    interleaved runs."""
    site, closed = f"/etc/caddy/sites/{env.name}.caddy", env.closed_file
    with tempfile.TemporaryDirectory(prefix="strackt-bench-levers-") as tmp:
        contents = Path(tmp) / "contents.yml"
        contents.write_text(yaml.safe_dump({"caddyfile": testbed.ssh(server, "cat /etc/caddy/Caddyfile").stdout,
                                            "site": testbed.ssh(server, f"cat {site}").stdout}))
        plays = {}
        for way, tasks in _PROXY_FILES_PLAYS.items():
            plays[way] = Path(tmp) / f"{way}.yml"
            plays[way].write_text(f"- name: Provision's Caddy files, {way.replace('_', ' ')}\n  hosts: {server}\n"
                                  f"  gather_facts: false\n  vars_files: [{contents}]\n  tasks:"
                                  + tasks.format(site=site, closed=closed))
        times = _timed_plays(testbed, plays, repeats, "provision's Caddy files by", unchanged=True)
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["one_call_s"] / out["per_file_s"], 3) if out["per_file_s"] else None
    return out


_STAGE_PLAY = """
- name: Find the target ({stage})
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Target it
      ansible.builtin.add_host: {{name: "{server}", groups: lever_target}}
      changed_when: false
- name: Work on the target ({stage})
  hosts: lever_target
  gather_facts: false
  tasks:
    - name: Reach it
      ansible.builtin.ping:
"""


def stage_runs(testbed: Testbed, server: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of ``start``'s five stage stand-ins run one ansible-playbook each and as one chained
    run, through the controller's runner backend (one command's ssh masters, as ``start``), median
    of ``repeats`` interleaved rounds."""
    from strackt_move import stages
    from strackt_move.playbook_run import AnsibleRunnerBackend, PlayRequest
    from strackt_move.settings import Settings

    times: dict[str, list[float]] = {"per_stage": [], "chained": []}
    with tempfile.TemporaryDirectory(prefix="strackt-bench-levers-") as tmp:
        plays = {}
        for stage in stages.MOVE_STAGES:
            plays[stage] = str(Path(tmp) / f"{stage}.yml")  # absolute: the backend takes it as it is
            Path(plays[stage]).write_text(_STAGE_PLAY.format(stage=stage, server=server))
        backend = AnsibleRunnerBackend(Settings(state_dir=Path(tmp) / "state", inventory=testbed.inventory_dir))
        extravars = {"env": "lever", "strackt_state_dir": str(Path(tmp) / "state")}

        def run(request: PlayRequest) -> None:
            result = backend(request, lambda event: None, lambda: False)
            if not result.ok:
                raise RuntimeError(f"levers: the stage runs' {request.name} failed: {result.failures}")

        try:
            run(PlayRequest("lever", "warm-up", plays["preflight"], extravars))  # the ssh masters, as start has them
            for _ in range(repeats):
                started = time.monotonic()
                for stage in stages.MOVE_STAGES:
                    run(PlayRequest("lever", stage, plays[stage], extravars))
                times["per_stage"].append(round(time.monotonic() - started, 2))
                started = time.monotonic()
                chain = tuple((stage, plays[stage]) for stage in stages.MOVE_STAGES)
                run(PlayRequest("lever", stages.chain_name(stages.MOVE_STAGES), plays["preflight"], extravars,
                                chain=chain))
                times["chained"].append(round(time.monotonic() - started, 2))
        finally:
            backend.close()
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["chained_s"] / out["per_stage_s"], 3) if out["per_stage_s"] else None
    return out


def _stop_commands(env: BenchEnv) -> dict[str, tuple[str, str]]:
    """What the freeze does (module_utils/freeze.py ``stop_env``), in shell, as (untimed
    preparation, timed stop): kill reads the env's services' cgroups (before the hold now: the
    preparation; inside it before, ``kill_lookup_inside``), queues the stop job, SIGKILLs what is in
    the cgroups until they are empty (bounded), then waits for the job."""
    unit = env.target_unit
    groups = (f"g=$(for u in $(systemctl list-units --plain --no-legend --state=active "
              f"'strackt-env-{env.name}-*.service' | awk '{{print $1}}'); do systemctl show -p ControlGroup --value $u; done); ")
    kill = (f"systemctl stop --no-block {unit}; "
            "for i in $(seq 500); do p=$(for c in $g; do cat /sys/fs/cgroup$c/cgroup.procs 2>/dev/null; done); "
            "[ -n \"$p\" ] || break; kill -KILL $p 2>/dev/null; sleep 0.01; done; "
            f"systemctl stop {unit}")
    return {"graceful": ("", f"systemctl stop {unit}"), "kill_lookup_inside": ("", groups + kill),
            "kill": (groups, kill)}


def app_stop(testbed: Testbed, env: BenchEnv, server: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of each way to stop the env on ``server`` (median of ``repeats`` interleaved
    stops), timed on the server itself; the env runs again afterwards."""
    times: dict[str, list[float]] = {way: [] for way in _stop_commands(env)}
    try:
        for _ in range(repeats):
            for way, (prepare, command) in _stop_commands(env).items():
                wait_healthy(testbed, server, env)
                out = testbed.ssh(server, f"{prepare}a=$(date +%s.%N); {command}; b=$(date +%s.%N); echo $a $b").stdout.split()
                times[way].append(round(float(out[-1]) - float(out[-2]), 3))
                testbed.ssh(server, f"systemctl start {env.target_unit}")
    finally:
        testbed.ssh(server, f"systemctl start {env.target_unit}", check=False)
    wait_healthy(testbed, server, env)
    out: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    out["runs_s"] = times
    out["ratio"] = round(out["kill_s"] / out["graceful_s"], 3) if out["graceful_s"] else None
    out["lookup_ratio"] = (round(out["kill_s"] / out["kill_lookup_inside_s"], 3)
                           if out["kill_lookup_inside_s"] else None)
    return out


# names the manifest and the change journals skip (strackt.move's own): the move does not see them
_PASS_FILE = ".strackt-barrier-bench-pass"
_OWN_BARRIER = ".strackt-barrier-bench-own"
_WORK = "/run/strackt-bench-barrier"


def _barrier_script(env: BenchEnv, target_address: str, move_id: str, repeats: int) -> str:
    """Shell for the source: a master connection as the freeze opens it, then ``repeats`` rounds
    of both ways, each printing ``<way> <seconds>``."""
    key_dir = f"/root/.strackt-move/{move_id}"
    key, known_hosts = f"{key_dir}/id_ed25519", f"{key_dir}/known_hosts"
    rel = rs.remote_rel(env.root, env.data_paths[0])
    control = f"{_WORK}/master"

    def rsync(local: str, listing: str, **extra: Any) -> str:
        argv = rs.build_argv(local, target_address, rel, key, known_hosts, files_from=listing,
                             control_path=control, **extra)
        return " ".join(shlex.quote(a) for a in argv) + " >/dev/null"

    master = rs.master_argv(key, known_hosts, target_address, control, persist_s=120)
    close = " ".join(shlex.quote(a) for a in rs.close_master_argv(control, target_address))
    ways = {
        "own": rsync(f"{_WORK}/pass", f"{_WORK}/pass.list") + "; " + rsync(f"{_WORK}/own", f"{_WORK}/own.list"),
        "carried": rsync(f"{_WORK}/pass", f"{_WORK}/pass.list", remote_command=rs.BARRIER_REMOTE_COMMAND),
    }
    timed = " ".join(f"a=$(date +%s.%N); {cmd}; b=$(date +%s.%N); echo {way} $a $b;" for way, cmd in ways.items())
    return (f"set -e; rm -rf {_WORK}; mkdir -p {_WORK}/pass {_WORK}/own; "
            f"printf '%s\\0' {_PASS_FILE} > {_WORK}/pass.list; printf '%s\\0' {_OWN_BARRIER} > {_WORK}/own.list; "
            f"{' '.join(shlex.quote(a) for a in master)} </dev/null >/dev/null 2>&1; "
            f"for i in $(seq {int(repeats)}); do date +%s%N > {_WORK}/pass/{_PASS_FILE}; "
            f"date +%s%N > {_WORK}/own/{_OWN_BARRIER}; {timed} done; "
            f"{close} 2>/dev/null || true; rm -rf {_WORK}")


def barrier_with_final_pass(testbed: Testbed, env: BenchEnv, source: str, target: str, move_id: str,
                            repeats: int = 5) -> dict[str, Any]:
    """Seconds of a final pass of one file plus its barrier, each way (median of ``repeats``
    interleaved rounds), timed on ``source`` while the move waits at the gate. The carried way
    leaves the move's own barrier early; the freeze's arrives after it (its last arrival counts)."""
    script = _barrier_script(env, testbed.addresses[target], move_id, repeats)
    times: dict[str, list[float]] = {"own": [], "carried": []}
    try:
        out = testbed.ssh(source, script, timeout=300).stdout
    finally:
        first = env.data_paths[0]
        testbed.ssh(target, f"rm -f {first}/{_PASS_FILE} {first}/{_OWN_BARRIER}", check=False)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in times:
            times[parts[0]].append(round(float(parts[2]) - float(parts[1]), 3))
    if not all(times.values()):
        raise RuntimeError(f"levers: the barrier's timings are missing from the source's output:\n{out[-2000:]}")
    result: dict[str, Any] = {f"{way}_s": statistics.median(t) for way, t in times.items()}
    result["runs_s"] = times
    result["ratio"] = round(result["carried_s"] / result["own_s"], 3) if result["own_s"] else None
    return result
