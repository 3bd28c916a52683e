"""One move of an env srv1 -> srv2 with the controller, as an operator runs it, and its figures."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.testbed import Testbed
from tests.testbed.config import REPO_ROOT

from .envs import BenchEnv

EXIT_WAITING = 4  # verified, waiting for the operator's confirmation
#: `finish --wait`'s longest pause between two looks: the testbed's quiet window is short (10 s)
FINISH_POLL_MAX = "5s"


@dataclass
class MoveFigures:
    freeze_s: float | None = None
    final_sync_s: float | None = None       # the final pass inside the freeze
    initial_copy_s: float | None = None     # the move's first sync pass
    passes: list[dict[str, Any]] = field(default_factory=list)
    move_id: str = ""
    freeze_parts: dict[str, Any] = field(default_factory=dict)  # the freeze module's breakdown
    start_s: float | None = None            # `strackt-move start` until it returned at the gate
    copy_before_gate_s: float | None = None  # of it, the sync passes' own time (copying)


def state_dir(testbed: Testbed) -> Path:
    return testbed.cfg.state_dir / "moves"


def controller(testbed: Testbed, log, *args: str) -> int:
    cmd = [str(REPO_ROOT / ".venv" / "bin" / "strackt-move"), "-i", str(testbed.inventory_dir), *args]
    env = testbed.ansible_env()
    env["STRACKT_STATE_DIR"] = str(state_dir(testbed))
    log.write(f"\n$ strackt-move {' '.join(args)}\n")
    log.flush()
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL).returncode


def move(testbed: Testbed, log, env: BenchEnv, target: str,
         before_confirm: Callable[[], None] | None = None, with_database: bool = False) -> MoveFigures:
    """start -> (before_confirm) -> confirm --no-finish: the move ends `switched`, the source still
    forwarding (the stale client keeps being served); the caller finishes it (`finish`) or resets
    the testbed. ``with_database``: the env's database moves too (the finish ends its way back).
    """
    began = time.monotonic()
    rc = controller(testbed, log, "start", env.name, "--target", target, *(("--with-database",) if with_database else ()))
    start_s = time.monotonic() - began
    if rc != EXIT_WAITING:
        raise RuntimeError(f"strackt-move start exited {rc}, not at the confirmation gate; see the bench log")
    at_gate = figures(testbed, env).passes
    if before_confirm:
        before_confirm()
    rc = controller(testbed, log, "confirm", env.name, "--yes", "--no-finish")
    if rc != 0:
        raise RuntimeError(f"strackt-move confirm exited {rc}; see the bench log")
    out = figures(testbed, env)
    out.start_s = round(start_s, 1)
    out.copy_before_gate_s = round(sum(float(p.get("duration_s") or 0) for p in at_gate), 1)
    return out


def sync_lag(testbed: Testbed, env: BenchEnv, source: str, target: str, window_s: float) -> float | None:
    """While the move waits at the gate: seconds from a new file written on ``source`` (in the env's
    first data path) until it is on ``target``, or None when it did not arrive within ``window_s``.
    The probe is removed again on the source (the final pass carries that)."""
    probe = shlex.quote(f"{env.data_paths[0]}/.strackt-bench-lag-{time.time_ns()}")
    testbed.ssh(source, f"echo sync-lag-probe > {probe}")
    written = time.monotonic()
    polls = max(1, int(window_s / 0.05))
    seen = testbed.ssh(target, f"for i in $(seq {polls}); do test -e {probe} && exit 0; sleep 0.05; done; exit 1",
                       check=False, timeout=window_s + 60)
    lag = time.monotonic() - written
    testbed.ssh(source, f"rm -f {probe}", check=False)
    return round(lag, 2) if seen.returncode == 0 else None


def sync_lag_passes_only(testbed: Testbed, env: BenchEnv, source: str, target: str, window_s: float) -> float | None:
    """``sync_lag`` with the move's follower stopped first (what a move got before it): the
    switch-over does not need it, its catch-up pass carries the rest."""
    testbed.ssh(source, "systemctl stop 'strackt-follow-*.service'", check=False)
    return sync_lag(testbed, env, source, target, window_s)


@dataclass
class FinishFigures:
    finish_s: float                     # from `confirm`'s return (switched) to the move done
    stale: dict[str, Any]               # the controller's last stale-traffic measurement (record's `stale`)


def finish(testbed: Testbed, log, env: BenchEnv, move_id: str) -> FinishFigures:
    """`finish --wait`, as an operator leaves it running after the switch: it ends the forwarding by
    itself once the old server saw no stale request for the env's quiet window (the testbed's
    forwarding settings: tests/testbed/inventory.py TEST_FORWARDING)."""
    began = time.monotonic()
    rc = controller(testbed, log, "finish", env.name, "--wait", "--poll-max", FINISH_POLL_MAX)
    took = round(time.monotonic() - began, 1)
    if rc != 0:
        raise RuntimeError(f"strackt-move finish --wait exited {rc}; see the bench log")
    record = json.loads((state_dir(testbed) / "moves" / "history" / f"{move_id}.json").read_text())
    if record.get("stage") != "done":
        raise RuntimeError(f"the move {move_id} ended {record.get('stage')}, not done; see the bench log")
    return FinishFigures(finish_s=took, stale=record.get("stale") or {})


def figures(testbed: Testbed, env: BenchEnv) -> MoveFigures:
    record = json.loads((state_dir(testbed) / "moves" / env.record_file).read_text())
    out = MoveFigures(passes=record.get("sync_passes") or [], move_id=record.get("move_id", ""))
    if out.passes:
        out.initial_copy_s = float(out.passes[0]["duration_s"])
    finals = [p for p in out.passes if p.get("kind") == "final"]
    if finals:
        out.final_sync_s = float(finals[-1]["duration_s"])
    runs = sorted((state_dir(testbed) / "runs" / env.name).glob("*-cutover"))
    for run in reversed(runs):
        try:
            data = json.loads((run / "strackt-result.json").read_text()).get("artifact_data") or {}
        except (OSError, ValueError):
            continue
        if data.get("freeze_s") not in (None, "", "None"):
            out.freeze_s = float(data["freeze_s"])
            out.freeze_parts = freeze_parts(run)
            break
    return out


PARTS = ("freeze_s", "drain_s", "stop_s", "writers_s", "final_sync_s", "barrier_s", "database_s", "forwarder_s",
         "undrained_connections", "held_at_ns", "released_at_ns")


def freeze_parts(run: Path) -> dict[str, Any]:
    """The freeze module's own breakdown, from the runner's job events of the cutover run."""
    for path in run.rglob("job_events/*.json"):
        try:
            res = (json.loads(path.read_text()).get("event_data") or {}).get("res") or {}
        except (OSError, ValueError):
            continue
        if isinstance(res, dict) and "drain_s" in res:
            parts = {k: res.get(k) for k in PARTS}
            catchup = res.get("catchup_pass") or {}
            parts["catchup_pass_s"] = catchup.get("duration_s")
            parts["final_pass"] = {k: (res.get("sync_pass") or {}).get(k)
                                   for k in ("mode", "journal", "files_changed", "duration_s")}
            if res.get("database"):  # the database switch's own report (pg_switch.SwitchReport)
                parts["database"] = {k: res["database"].get(k) for k in ("state", "timings", "total_s")}
            return parts
    return {}


def wait_healthy(testbed: Testbed, server: str, env: BenchEnv, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if testbed.ssh(server, env.health_check_sh(), check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{env.name} does not answer {env.health_status} on {env.health_path} on {server}")
