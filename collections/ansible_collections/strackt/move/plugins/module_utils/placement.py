# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each env of a server being emptied goes: placement by room, with preflight's own checks.

Input is what ``server_facts`` says of every (env, candidate target) pair — the same module and
the same numbers preflight refuses a move on — plus each env's declared memory. What one env
takes on a target (disk on each filesystem, memory) is subtracted before the next env is placed
there, so a plan never counts the same free space twice.

Order: the env with the fewest targets that have room for it first (an env only one target can
hold gets it before an env that could go anywhere takes it), among those the biggest (first-fit
decreasing packs tightest). Each goes to the target with room for it that has the fewest envs
planned so far, then to the one that keeps the most disk free afterwards, then by name. Counting
envs spreads the moves over the targets, so parallel preparations copy to different servers, and
a small target still gets what fits on it (by free disk alone, a big target would take every
env). Deterministic: the same facts give the same plan. Stdlib only: the controller imports it
too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


class PlacementError(ValueError):
    """Facts that do not describe a placement question (a bug of the caller, not a refusal)."""


@dataclass(frozen=True)
class Candidate:
    """What ``server_facts`` on ``target`` said about hosting ``env`` (or why it could not say)."""

    env: str
    target: str
    reachable: bool
    unreachable_reason: str = ""
    present: bool = False  # the target already holds a copy of the env
    filesystems: tuple[tuple[str, int, int], ...] = ()  # (device key, free bytes, bytes the env needs)
    available_mb: int = 0

    @classmethod
    def from_facts(cls, env: str, target: str, facts: dict[str, Any]) -> "Candidate":
        if facts.get("unreachable") or facts.get("failed"):
            return cls(env, target, False, " ".join(str(facts.get("msg") or "no answer").split())[:300])
        try:
            filesystems = tuple((str(fs.get("device", fs.get("measured_at"))), int(fs["free_bytes"]), int(fs["need_bytes"]))
                                for fs in facts.get("filesystems") or [])
            available = int((facts.get("memory") or {}).get("available_mb", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlacementError("server_facts of %s on %s are not usable: %s" % (env, target, exc)) from None
        return cls(env, target, True, present=bool(facts.get("present")), filesystems=filesystems,
                   available_mb=available)


@dataclass(frozen=True)
class EnvNeed:
    env: str
    memory_mb: int
    data_bytes: int  # what the copy carries (orders the placement; shown in the plan)


@dataclass(frozen=True)
class Placed:
    env: str
    target: str
    data_bytes: int
    memory_mb: int
    disk_free_after_bytes: int  # the tightest filesystem of the target, after this env and those before


@dataclass(frozen=True)
class Unplaced:
    env: str
    reasons: tuple[str, ...]  # one per candidate target, naming it


@dataclass
class Plan:
    server: str
    targets: tuple[str, ...]
    placed: list[Placed] = field(default_factory=list)
    unplaced: list[Unplaced] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unplaced

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "targets": list(self.targets),
            "complete": self.complete,
            "placed": [vars(p).copy() for p in self.placed],
            "unplaced": [{"env": u.env, "reasons": list(u.reasons)} for u in self.unplaced],
        }


@dataclass
class _TargetUse:
    disk: dict[str, int] = field(default_factory=dict)  # device key -> bytes planned
    memory_mb: int = 0
    envs: int = 0


def _why_not(c: Candidate, need: EnvNeed, use: _TargetUse) -> str | None:
    """None when ``need`` fits on ``c.target`` after what is planned there already, else why not."""
    if not c.reachable:
        return "%s is unreachable (%s)" % (c.target, c.unreachable_reason)
    if c.present:
        return "%s already has a copy of %s (remove it there first)" % (c.target, c.env)
    for device, free, needed in c.filesystems:
        left = free - use.disk.get(device, 0)
        if left < needed:
            planned = " after %.1f MiB planned for other envs" % (use.disk.get(device, 0) / MIB) if use.disk.get(device) else ""
            return "%s has %.1f MiB free%s, %s needs %.1f MiB (data, app and headroom)" % (
                c.target, left / MIB, planned, c.env, needed / MIB)
    if need.memory_mb and c.available_mb - use.memory_mb < need.memory_mb:
        planned = " after %d MiB planned for other envs" % use.memory_mb if use.memory_mb else ""
        return "%s has %d MiB memory available%s, %s needs %d MiB (memory_mb)" % (
            c.target, c.available_mb - use.memory_mb, planned, c.env, need.memory_mb)
    return None


def _free_after(c: Candidate, use: _TargetUse) -> int:
    """The tightest filesystem's free bytes once ``c.env`` and what is planned are there."""
    return min((free - use.disk.get(device, 0) - needed for device, free, needed in c.filesystems), default=0)


def _options(need: EnvNeed, targets: list[str], by_pair: dict[tuple[str, str], Candidate],
             use: dict[str, _TargetUse]) -> tuple[EnvNeed, list[Candidate], list[str]]:
    """The targets ``need`` fits on after what is planned, and why not on each of the others."""
    fitting, reasons = [], []
    for target in targets:
        c = by_pair[(need.env, target)]
        why = _why_not(c, need, use[target])
        if why is None:
            fitting.append(c)
        else:
            reasons.append(why)
    return need, fitting, reasons


def place(server: str, targets: list[str], needs: list[EnvNeed], candidates: list[Candidate]) -> Plan:
    """The plan for emptying ``server`` onto ``targets`` (see the module docstring)."""
    if server in targets:
        raise PlacementError("the server being emptied (%s) cannot be one of its targets" % server)
    by_pair = {(c.env, c.target): c for c in candidates}
    missing = [(n.env, t) for n in needs for t in targets if (n.env, t) not in by_pair]
    if missing:
        raise PlacementError("no facts for %s" % ", ".join("%s on %s" % pair for pair in missing))
    plan = Plan(server=server, targets=tuple(targets))
    use = {t: _TargetUse() for t in targets}
    remaining = sorted(needs, key=lambda n: (-n.data_bytes, -n.memory_mb, n.env))
    while remaining:
        # the env with the fewest targets left first (the biggest of those: min keeps the order)
        need, fitting, reasons = min((_options(n, targets, by_pair, use) for n in remaining), key=lambda o: len(o[1]))
        remaining.remove(need)
        if not fitting:
            plan.unplaced.append(Unplaced(need.env, tuple(reasons)))
            continue
        best = min(fitting, key=lambda c: (use[c.target].envs, -_free_after(c, use[c.target]), c.target))
        free_after = _free_after(best, use[best.target])
        chosen = use[best.target]
        for device, _free, needed in best.filesystems:
            chosen.disk[device] = chosen.disk.get(device, 0) + needed
        chosen.memory_mb += need.memory_mb
        chosen.envs += 1
        plan.placed.append(Placed(need.env, best.target, need.data_bytes, need.memory_mb, free_after))
    return plan


def plan_table(plan: Plan) -> list[str]:
    """The plan as the operator reads it: one row per env, then what cannot be placed and why."""
    rows = [("env", "to", "data", "memory", "tightest disk after")]
    for p in plan.placed:
        rows.append((p.env, p.target, "%.1f MiB" % (p.data_bytes / MIB), "%d MiB" % p.memory_mb,
                     "%.1f MiB free" % (p.disk_free_after_bytes / MIB)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for u in plan.unplaced:
        lines.append("%s: no room on any target: %s" % (u.env, "; ".join(u.reasons)))
    return lines
