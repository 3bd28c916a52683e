"""Runner events → live progress lines: stage, task, rsync pass figures (files, bytes, rate, ETA).

Fed with the event dicts ansible-runner hands to ``event_handler`` (the same dicts it writes to
``artifacts/<ident>/job_events/*.json``), so it can be tested with recorded events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from strackt_move.playbook_run import describe_failure, marked_stage
from strackt_move.units import human_bytes, human_duration, human_rate

Emit = Callable[[str], None]

#: task names that say nothing to an operator
_NOISE = ("Validating arguments against arg spec",)
#: keys that make a task result a sync pass (the sync module's return values / record pass fields)
PASS_KEYS = ("files_changed", "bytes_changed")


def extract_pass(res: dict[str, Any]) -> dict[str, Any] | None:
    """The sync-pass figures in a task result: ``res.sync_pass``, ``res.pass`` or top-level keys."""
    for key in ("sync_pass", "pass"):
        candidate = res.get(key)
        if isinstance(candidate, dict) and all(k in candidate for k in PASS_KEYS):
            return candidate
    if all(k in res for k in PASS_KEYS):
        return res
    return None


def format_pass(p: dict[str, Any], number: int | None = None) -> str:
    kind = p.get("kind") or "pass"
    label = f"sync pass {number} ({kind})" if number else f"sync pass ({kind})"
    duration = p.get("duration_s")
    parts = [
        f"{label}: {p.get('files_changed', '?')} files / {human_bytes(p.get('bytes_changed'))} changed",
    ]
    if p.get("files_total") is not None or p.get("bytes_total") is not None:
        parts.append(f"of {p.get('files_total', '?')} files / {human_bytes(p.get('bytes_total'))}")
    parts.append(f"in {human_duration(duration)}")
    parts.append(f"({human_rate(p.get('bytes_changed'), duration)})")
    return " ".join(parts)


def pass_eta(previous: dict[str, Any] | None) -> str | None:
    """What the next pass should take, judged from the previous one."""
    if not previous or previous.get("duration_s") is None:
        return None
    rate = human_rate(previous.get("bytes_changed"), previous.get("duration_s"))
    return f"ETA ~{human_duration(previous['duration_s'])} (last pass {rate})"


@dataclass
class ProgressView:
    """Turns runner events into lines. One view per run; a chained run's marker plays move it to
    the next stage (``on_stage`` is told first, with the new stage's name)."""

    stage: str
    emit: Emit
    on_stage: Callable[[str], None] | None = None
    previous_pass: dict[str, Any] | None = None  # last measured pass, for the ETA
    passes_seen: int = 0  # passes before this run (numbering continues)
    verbose: bool = False
    passes: list[dict[str, Any]] = field(default_factory=list)
    #: what the stage's set_stats tasks published so far (a chain's stages end before its stats event)
    stats: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _last_task: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        stage = marked_stage(event)
        if stage is not None:
            if self.on_stage is not None:
                self.on_stage(stage)
            self.stage, self._last_task = stage, None
        elif kind == "playbook_on_task_start":
            task = str(data.get("task") or data.get("name") or "").strip()
            if task and task != self._last_task and not task.startswith(_NOISE):
                self._last_task = task
                line = f"[{self.stage}] {task}"
                if _looks_like_sync(data) and (eta := pass_eta(self.previous_pass)):
                    line += f" — {eta}"
                self.emit(line)
        elif kind == "runner_on_ok":
            res = data.get("res") or {}
            published = res.get("ansible_stats") if isinstance(res, dict) else None
            if isinstance(published, dict) and isinstance(published.get("data"), dict):
                self.stats.update(published["data"])
            figures = extract_pass(res) if isinstance(res, dict) else None
            if figures is not None:
                self.passes.append(figures)
                self.emit(f"[{self.stage}]   {format_pass(figures, self.passes_seen + len(self.passes))}")
                self.previous_pass = figures
            elif self.verbose and data.get("res", {}).get("changed"):
                self.emit(f"[{self.stage}]   changed: {data.get('host', '?')}")
        elif kind == "runner_on_async_poll":
            res = data.get("res") or {}
            progress = res.get("progress") if isinstance(res, dict) else None
            if isinstance(progress, dict):
                self.emit(f"[{self.stage}]   {format_live(progress)}")
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            failure = describe_failure(event)
            if failure:
                self.failures.append(failure)
                word = "UNREACHABLE" if kind == "runner_on_unreachable" else "FAILED"
                self.emit(f"[{self.stage}]   {word} {failure}")
        elif kind == "warning" or kind == "deprecated":
            if self.verbose:
                self.emit(f"[{self.stage}]   {kind}: {' '.join(str(event.get('stdout', '')).split())}")


def format_live(progress: dict[str, Any]) -> str:
    """A pass in flight: ``{"bytes_done", "bytes_total", "rate_bps", "files_done"}``."""
    done = progress.get("bytes_done")
    total = progress.get("bytes_total")
    rate = progress.get("rate_bps")
    line = f"syncing: {progress.get('files_done', '?')} files, {human_bytes(done)}"
    if total:
        line += f" of {human_bytes(total)}"
    if rate:
        line += f" at {human_bytes(rate)}/s"
        if total and done is not None and total >= done:
            line += f", ETA {human_duration((total - done) / rate)}"
    return line


def _looks_like_sync(task_data: dict[str, Any]) -> bool:
    action = str(task_data.get("task_action") or task_data.get("resolved_action") or "")
    return action.endswith(("rsync_pass", "sync_data", "rsync", ".sync"))
