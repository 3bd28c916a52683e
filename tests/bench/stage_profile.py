"""Where a move's orchestration time goes, from the controller's runner artifacts: per stage the
runs, the median wall time of a run (first to last job event: ansible-playbook's own start-up
not counted; a chained run of several stages is split at its stages' marker plays), the tasks a run has and how many of them took over 0.2 s (module round trips to a
server, against local set_fact/assert/record calls); then the slowest tasks by total time.

    python -m tests.bench.stage_profile /var/lib/strackt-testbed/4/moves/runs [--top 30]

Issue 17's lean-orchestration lever is judged on these figures (a stage in fewer module calls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from strackt_move.playbook_run import STAGE_MARKER

#: a task slower than this made a round trip to a server (a module run there), not a local step
ROUND_TRIP_S = 0.2


@dataclass
class StageRuns:
    walls: list[float] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    round_trips: list[int] = field(default_factory=list)


def _events(run: Path) -> list[dict]:
    events = []
    for path in run.glob("artifacts/*/job_events/*.json"):
        try:
            events.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a run killed mid-write: what is readable still counts
    return sorted(events, key=lambda e: e.get("counter", 0))


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["created"]).timestamp()




def _parts(run_name: str, events: list[dict]) -> list[tuple[str, list[dict]]]:
    """A run's events per stage: a chained run (``<stamp>-preflight-to-verify``) split at its marker
    plays, any other run whole under its name."""
    stage = run_name.split("-", 1)[1] if "-" in run_name else run_name
    head, _, suffix = stage.rpartition("-")
    stage = head if head and suffix.isdigit() else stage  # <stamp>-sync-2: a second run in one second
    parts: list[tuple[str, list[dict]]] = []
    lead: list[dict] = []  # ansible-playbook's start, before the first marker: the first stage's
    for event in events:
        play = str((event.get("event_data") or {}).get("play") or "")
        if event["event"] == "playbook_on_play_start" and play.startswith(STAGE_MARKER):
            parts.append((play[len(STAGE_MARKER):], lead + [event]))
            lead = []
        elif parts:
            parts[-1][1].append(event)
        else:
            lead.append(event)
    return parts or ([(stage, lead)] if lead else [])


def profile(runs_dir: Path) -> tuple[dict[str, StageRuns], dict[tuple[str, str], list[float]]]:
    """Per stage its runs' figures; per (stage, task) the time from each of its starts to the next task's."""
    stages: dict[str, StageRuns] = defaultdict(StageRuns)
    tasks: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in sorted(p for p in runs_dir.glob("*/*") if p.is_dir()):
        events = [e for e in _events(run) if e.get("created")]
        parts = _parts(run.name, events)
        for i, (stage, part) in enumerate(parts):
            # a stage ends where the next begins (its marker's event), the run's last at its last event
            end = _ts(parts[i + 1][1][0]) if i + 1 < len(parts) else _ts(part[-1])
            starts = [(_ts(e), str(e["event_data"].get("task"))) for e in part
                      if e["event"] in ("playbook_on_task_start", "playbook_on_handler_task_start")]
            ends = [t for t, _name in starts[1:]] + [end]
            for (began, name), ended in zip(starts, ends):
                tasks[(stage, name)].append(ended - began)
            finished = [e for e in part if e["event"] in ("runner_on_ok", "runner_on_failed")]
            record = stages[stage]
            record.walls.append(end - _ts(part[0]))
            record.tasks.append(len(starts))
            record.round_trips.append(sum(1 for e in finished if (e["event_data"].get("duration") or 0) > ROUND_TRIP_S))
    return stages, tasks


def lines(stages: dict[str, StageRuns], tasks: dict[tuple[str, str], list[float]], top: int) -> list[str]:
    out = [f"{'stage':<12} {'runs':>4} {'wall s':>7} {'tasks':>5} {'round trips':>11}"]
    for stage, r in sorted(stages.items()):
        out.append(f"{stage:<12} {len(r.walls):>4} {statistics.median(r.walls):>7.1f} "
                   f"{statistics.median(r.tasks):>5.0f} {statistics.median(r.round_trips):>11.0f}")
    out += ["", f"slowest tasks by total time (top {top}): total s, count, mean s, stage: task"]
    ranked = sorted(tasks.items(), key=lambda kv: -sum(kv[1]))[:top]
    out += [f"{sum(v):7.1f} {len(v):4d} {sum(v) / len(v):6.2f}  {stage}: {name}" for (stage, name), v in ranked]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.stage_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("runs_dir", type=Path, help="the controller's runs directory (<state dir>/runs)")
    p.add_argument("--top", type=int, default=30, help="how many of the slowest tasks to list")
    a = p.parse_args(argv)
    if not a.runs_dir.is_dir():
        p.error(f"{a.runs_dir} is not a directory")
    stages, tasks = profile(a.runs_dir)
    print("\n".join(lines(stages, tasks, a.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
