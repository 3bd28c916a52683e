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

With the databases (``evacuate --with-database``), an env whose PostgreSQL database runs on the
server being emptied takes it along (``database_fate``): the database's size (plus the env's
headroom, the rule of pg_move_preflight) is part of what ``server_facts`` says each target needs,
on the filesystem of that target's PostgreSQL data directory, so an env is placed only where its
files and its database fit. A database on the server that cannot move (not PostgreSQL) stays
there: its env moves without it and the plan warns that the server cannot be switched off yet.

Whatever else an env connects to on that server stays there too (``services_left_on``: its
database, unless it moves, and its Redis): the plan names it for each env, so an evacuation never
calls a server empty that still runs a database or a Redis its envs reach back to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

MIB = 1024 * 1024

# What happens to an env's database when its server is emptied with the databases
DATABASE_MOVES = "moves"  # PostgreSQL on the server being emptied: it goes with its env
DATABASE_STAYS = "stays"  # on that server but not PostgreSQL: it stays, the server stays needed
DATABASE_ELSEWHERE = "elsewhere"  # on another server: untouched, as without --with-database
NO_DATABASE = "none"


def database_fate(database: Mapping[str, Any] | None, server: str) -> str:
    """What the evacuation of ``server`` does with an env's ``database`` (env_info's): only a
    PostgreSQL database running on the server being emptied can move with its env (the rule of
    pg_preflight.database_plan: PostgreSQL only, on the env's server, to the move's target)."""
    if not database:
        return NO_DATABASE
    if database.get("server") != server:
        return DATABASE_ELSEWHERE
    return DATABASE_MOVES if database.get("engine", "postgresql") == "postgresql" else DATABASE_STAYS


#: how the operator reads a database's engine
ENGINE_NAMES = {"postgresql": "PostgreSQL", "mariadb": "MariaDB", "mysql": "MySQL"}


def services_left_on(environment: Mapping[str, Any], server: str, with_database: bool) -> tuple[str, ...]:
    """What the env (env_info's ``environment``) connects to on ``server`` that stays there when the
    env leaves it: its database unless it moves along (``database_fate``, with the databases only),
    its Redis. Each as the operator reads it; empty: nothing of the env stays on ``server``."""
    left = []
    database = environment.get("database") or {}
    fate = database_fate(database, server)
    if fate == DATABASE_STAYS or (fate == DATABASE_MOVES and not with_database):
        engine = str(database.get("engine") or "postgresql")
        along = " (--with-database moves it along)" if fate == DATABASE_MOVES else ""
        left.append("its %s database %s%s" % (ENGINE_NAMES.get(engine, engine), database.get("name"), along))
    redis = environment.get("redis") or {}
    if redis.get("server") == server:
        left.append("its Redis (port %s, db %s)" % (redis.get("port", 6379), redis.get("db", 0)))
    return tuple(left)


def left_behind_warning(env: str, server: str, left_behind: tuple[str, ...] | list[str]) -> str:
    """The one wording, for the plan, the evacuation's record view, its end and its report."""
    many = len(left_behind) > 1
    return ("%s moves without %s: %s on %s, so %s cannot be switched off yet (the env reaches back to %s)"
            % (env, " and ".join(left_behind), "they stay" if many else "it stays", server, server,
               "them" if many else "it"))


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
    database_devices: frozenset[str] = frozenset()  # the filesystems whose need includes the env's database

    @classmethod
    def from_facts(cls, env: str, target: str, facts: dict[str, Any],
                   database_facts: dict[str, Any] | None = None) -> "Candidate":
        """``database_facts``: pg_move_facts on ``target``, for an env whose database moves."""
        # a module that failed under the playbook's failed_when: false says failed: false, and has no facts
        if facts.get("unreachable") or facts.get("failed") or "filesystems" not in facts:
            return cls(env, target, False, " ".join(str(facts.get("msg") or "no answer").split())[:300])
        if database_facts is not None and (database_facts.get("unreachable") or database_facts.get("failed")
                                           or not database_facts.get("data_directory")):
            why = " ".join(str(database_facts.get("msg") or "no answer").split())[:300]
            return cls(env, target, False, "its PostgreSQL facts could not be read: %s" % why)
        try:
            filesystems = tuple((str(fs.get("device", fs.get("measured_at"))), int(fs["free_bytes"]), int(fs["need_bytes"]))
                                for fs in facts.get("filesystems") or [])
            available = int((facts.get("memory") or {}).get("available_mb", 0))
            database_devices = frozenset(str(fs.get("device", fs.get("measured_at")))
                                         for fs in facts.get("filesystems") or [] if int(fs.get("extra_bytes") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlacementError("server_facts of %s on %s are not usable: %s" % (env, target, exc)) from None
        return cls(env, target, True, present=bool(facts.get("present")), filesystems=filesystems,
                   available_mb=available, database_devices=database_devices)


@dataclass(frozen=True)
class EnvNeed:
    env: str
    memory_mb: int
    data_bytes: int  # what the copy carries (orders the placement; shown in the plan)
    database_bytes: int = 0  # the database that moves with it (with the databases; orders too)
    database: str = NO_DATABASE  # database_fate (NO_DATABASE when the plan is without the databases)
    database_to: str = ""  # the env's database.move_to: a moving database goes to the move's target only
    left_behind: tuple[str, ...] = ()  # what it connects to on the server that stays there (services_left_on)


@dataclass(frozen=True)
class Placed:
    env: str
    target: str
    data_bytes: int
    memory_mb: int
    disk_free_after_bytes: int  # the tightest filesystem of the target, after this env and those before
    database_bytes: int = 0
    with_database: bool = False  # its database moves with it (its start gets --with-database)
    database_stays: bool = False  # its database is on the server being emptied and cannot move
    left_behind: tuple[str, ...] = ()  # what it connects to on that server, staying there (services_left_on)


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
    with_database: bool = False

    @property
    def complete(self) -> bool:
        return not self.unplaced

    @property
    def warnings(self) -> list[str]:
        """One per env that leaves a service on the server: the server cannot be switched off yet."""
        return [left_behind_warning(p.env, self.server, p.left_behind) for p in self.placed if p.left_behind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "targets": list(self.targets),
            "complete": self.complete,
            "placed": [dict(vars(p), left_behind=list(p.left_behind)) for p in self.placed],
            "unplaced": [{"env": u.env, "reasons": list(u.reasons)} for u in self.unplaced],
            "with_database": self.with_database,
            "warnings": self.warnings,
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
    if need.database == DATABASE_MOVES and need.database_to and need.database_to != c.target:
        return "%s is not where %s's database goes (database.move_to: %s)" % (c.target, c.env, need.database_to)
    for device, free, needed in c.filesystems:
        left = free - use.disk.get(device, 0)
        if left < needed:
            planned = " after %.1f MiB planned for other envs" % (use.disk.get(device, 0) / MIB) if use.disk.get(device) else ""
            what = ("data, app, headroom and its database of %.1f MiB with headroom" % (need.database_bytes / MIB)
                    if device in c.database_devices else "data, app and headroom")
            return "%s has %.1f MiB free%s, %s needs %.1f MiB (%s)" % (
                c.target, left / MIB, planned, c.env, needed / MIB, what)
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


def place(server: str, targets: list[str], needs: list[EnvNeed], candidates: list[Candidate],
          with_database: bool = False) -> Plan:
    """The plan for emptying ``server`` onto ``targets`` (see the module docstring); ``with_database``:
    the envs' ``database`` fates say which databases go along."""
    if server in targets:
        raise PlacementError("the server being emptied (%s) cannot be one of its targets" % server)
    by_pair = {(c.env, c.target): c for c in candidates}
    missing = [(n.env, t) for n in needs for t in targets if (n.env, t) not in by_pair]
    if missing:
        raise PlacementError("no facts for %s" % ", ".join("%s on %s" % pair for pair in missing))
    if not with_database and any(n.database != NO_DATABASE for n in needs):
        raise PlacementError("the envs' databases are only planned with the databases (with_database)")
    plan = Plan(server=server, targets=tuple(targets), with_database=with_database)
    use = {t: _TargetUse() for t in targets}
    remaining = sorted(needs, key=lambda n: (-(n.data_bytes + n.database_bytes), -n.memory_mb, n.env))
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
        moves = need.database == DATABASE_MOVES
        plan.placed.append(Placed(need.env, best.target, need.data_bytes, need.memory_mb, free_after,
                                  database_bytes=need.database_bytes if moves else 0, with_database=moves,
                                  database_stays=need.database == DATABASE_STAYS, left_behind=need.left_behind))
    return plan


def plan_table(plan: Plan) -> list[str]:
    """The plan as the operator reads it: one row per env, then what cannot be placed and why."""
    rows = [("env", "to", "data") + (("database",) if plan.with_database else ()) + ("memory", "tightest disk after")]
    for p in plan.placed:
        database = (("%.1f MiB" % (p.database_bytes / MIB) if p.with_database else
                     "stays on %s" % plan.server if p.database_stays else "-"),) if plan.with_database else ()
        rows.append((p.env, p.target, "%.1f MiB" % (p.data_bytes / MIB)) + database
                    + ("%d MiB" % p.memory_mb, "%.1f MiB free" % (p.disk_free_after_bytes / MIB)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for u in plan.unplaced:
        lines.append("%s: no room on any target: %s" % (u.env, "; ".join(u.reasons)))
    lines += ["warning: " + w for w in plan.warnings]
    return lines
