"""tests/bench/stage_profile.py on runner artifacts written here (the shape ansible-runner writes)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench import stage_profile


def _run(runs: Path, name: str, tasks: list[tuple[str, float]]) -> None:
    """A run whose tasks start one after another, each taking its seconds (one ok event each)."""
    events_dir = runs / "shop" / name / "artifacts" / name.split("-", 1)[1] / "job_events"
    events_dir.mkdir(parents=True)
    t, counter = 1_000.0, 0

    def event(kind: str, at: float, **data) -> None:
        nonlocal counter
        counter += 1
        created = f"2026-12-01T00:{int(at) // 60 % 60:02d}:{at % 60:09.6f}+00:00"
        (events_dir / f"{counter}-x.json").write_text(json.dumps({"event": kind, "counter": counter,
                                                                  "created": created, "event_data": data}))
    event("playbook_on_start", t)
    for task, seconds in tasks:
        if task.startswith("@"):  # a chained run's marker play: the next stage begins
            event("playbook_on_play_start", t, play=stage_profile.STAGE_MARKER + task[1:])
            t += seconds
            continue
        event("playbook_on_task_start", t, task=task)
        t += seconds
        event("runner_on_ok", t, task=task, duration=seconds)
    event("playbook_on_stats", t)


def test_the_profile_counts_runs_tasks_round_trips_and_ranks_the_slow_tasks(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    _run(runs, "20261201T000001Z-provision", [("Write the site", 0.6), ("Remember it", 0.05), ("Reload Caddy", 0.5)])
    _run(runs, "20261201T000009Z-provision-2", [("Write the site", 0.8), ("Remember it", 0.05), ("Reload Caddy", 0.4)])
    _run(runs, "20261201T000020Z-verify", [("Ask for health", 0.3)])
    (runs / ".cp-123-abcd").mkdir()  # a controller's ssh control directory: not a run
    stages, tasks = stage_profile.profile(runs)
    assert sorted(stages) == ["provision", "verify"]
    provision = stages["provision"]
    assert provision.tasks == [3, 3] and provision.round_trips == [2, 2]
    assert [round(w, 2) for w in provision.walls] == [1.15, 1.25]
    assert [round(v, 2) for v in tasks[("provision", "Write the site")]] == [0.6, 0.8]
    assert stage_profile.main([str(runs), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["provision", "2", "1.2", "3", "2"]
    assert "provision: Write the site" in out[-2]
    assert "provision: Reload Caddy" in out[-1]


def test_a_chained_run_counts_per_stage_split_at_its_markers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "20261201T000001Z-deploy-to-verify", [("@deploy", 0.1), ("Check out", 0.7), ("Remember", 0.05),
                                                     ("@sync", 0.1), ("Copy", 1.0), ("@verify", 0.1), ("Ask", 0.3)])
    stages, tasks = stage_profile.profile(runs)
    assert sorted(stages) == ["deploy", "sync", "verify"]
    assert stages["deploy"].tasks == [2] and stages["deploy"].round_trips == [1]
    # a stage lasts from its marker to the next stage's
    assert [round(w, 2) for w in stages["deploy"].walls] == [0.85]
    assert [round(w, 2) for w in stages["sync"].walls] == [1.1]
    assert [round(v, 2) for v in tasks[("deploy", "Remember")]] == [0.05]
    assert "deploy-to-verify" not in stages
