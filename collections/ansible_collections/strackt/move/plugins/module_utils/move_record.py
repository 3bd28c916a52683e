# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The move record: one schema and its state machine, used by the modules and by the controller.

A record is one JSON object per move (where it lives and how it is locked: ``move_store``; what
it says to an operator: ``move_status``). It carries ``checksum`` (sha256 over the canonical JSON
of every other field); a record whose checksum does not match, whose ``schema_version`` is
unknown, or whose fields are missing, unknown or of the wrong type is refused with
:class:`RecordError` -- never silently trusted. Fields added within schema 1 are optional and left
out while unset, so records written before them still load. A record never holds a secret.

Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import typing

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils.names import (
    EnvNameError,
    check_name,
    new_move_id,
    validate_env_name,
)

SCHEMA_VERSION = 1

# Stages in the order a move walks them; "rollback" and "rolled_back" are the way back.
STAGES = (
    "preflight",
    "provision",
    "deploy",
    "sync",
    "verify",
    "awaiting_confirmation",
    "cutover",
    "switched",
    "done",
    "rollback",
    "rolled_back",
)
# Stages before the switch: nothing serves from the target yet, so going back to any of them
# (re-running provision, another sync pass, verifying again) is safe.
PRE_SWITCH_STAGES = STAGES[:6]
TERMINAL_STAGES = ("done", "rolled_back")
# a freeze happens inside the cutover; it stays recorded through the switch and a rollback
FREEZE_STAGES = ("cutover", "switched", "rollback")
STATES = ("running", "waiting", "failed", "done", "rolled_back")
EVENTS = ("started", "completed", "failed")
PASS_KINDS = ("full", "incremental", "final", "reverse")
PASS_MODES = ("full", "incremental")  # what the change journal made of a push pass

__all__ = [
    "SCHEMA_VERSION", "STAGES", "PRE_SWITCH_STAGES", "TERMINAL_STAGES", "STATES", "EVENTS",
    "PASS_KINDS", "PASS_MODES", "TRANSITIONS", "RecordError", "TransitionError", "MoveInProgress",
    "RetireInProgress",
    "StageEvent", "SyncPass", "DnsSnapshot", "Freeze", "Check", "Backup", "StaleTraffic", "MoveRecord", "check_transition",
    "RetainedCopy", "RetainedCopies", "RETAINED_SCHEMA_VERSION",
    "checksum_of", "admit", "in_progress_message", "retire_in_progress_message", "check_name",
]


def _allowed_next() -> dict[str, frozenset[str]]:
    allowed: dict[str, set[str]] = {}
    for i, stage in enumerate(PRE_SWITCH_STAGES):
        # back to any earlier pre-switch stage, stay, or forward by exactly one
        nxt = set(PRE_SWITCH_STAGES[: i + 2]) if i + 1 < len(PRE_SWITCH_STAGES) else set(PRE_SWITCH_STAGES)
        nxt.add("rollback")
        allowed[stage] = nxt
    allowed["awaiting_confirmation"].add("cutover")
    # (back to waiting only through MoveRecord.abandon_cutover: a freeze abandoned, nothing switched)
    allowed["cutover"] = {"cutover", "switched", "rollback"}
    allowed["switched"] = {"switched", "done", "rollback"}
    allowed["rollback"] = {"rollback", "rolled_back"}
    allowed["done"] = set()
    allowed["rolled_back"] = set()
    return {k: frozenset(v) for k, v in allowed.items()}


#: stage -> stages a move may go to next (re-entering the same stage is a retry)
TRANSITIONS = _allowed_next()


class RecordError(Exception):
    """A record that cannot be trusted (corrupt, hand-edited, unknown version)."""


class TransitionError(Exception):
    """A change the state machine does not allow."""


class MoveInProgress(Exception):
    """The env already has a move in progress that may not be taken over."""


class RetireInProgress(MoveInProgress):
    """A retire claimed the env's copy on the target: the move waits until it is removed."""


# --------------------------------------------------------------------------------------------
# validation helpers


def _fail(path: str, msg: str) -> typing.NoReturn:
    raise RecordError("move record field %s: %s" % (path, msg))


def _tname(types: typing.Any) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _need(data: dict, path: str, key: str, types: typing.Any, allow_none: bool = False,
          non_empty: bool = False) -> typing.Any:
    if key not in data:
        _fail(path + key, "missing")
    value = data[key]
    if value is None and allow_none:
        return None
    # bool is an int subclass: never accept it where a number is expected
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        _fail(path + key, "expected %s, got bool" % (_tname(types),))
    if not isinstance(value, types):
        _fail(path + key, "expected %s, got %s" % (_tname(types), type(value).__name__))
    if non_empty and not value:
        _fail(path + key, "must not be empty")
    return value


def _exact_keys(data: typing.Any, path: str, fields: tuple, optional: tuple = ()) -> None:
    if not isinstance(data, dict):
        _fail(path.rstrip(".") or "(top)", "expected an object, got %s" % type(data).__name__)
    missing = [f for f in fields if f not in data]
    unknown = sorted(k for k in data if k not in fields and k not in optional)
    if missing:
        _fail(path + ",".join(missing), "missing")
    if unknown:
        _fail(path + ",".join(unknown), "unknown field(s)")


def _ts_field(data: dict, path: str, key: str, allow_none: bool = False) -> str | None:
    value = _need(data, path, key, str, allow_none=allow_none)
    if value is None:
        return None
    try:
        clock.parse_ts(value)
    except ValueError as exc:
        _fail(path + key, str(exc))
    return typing.cast(str, value)


def _choice(data: dict, path: str, key: str, choices: tuple) -> str:
    value = _need(data, path, key, str)
    if value not in choices:
        _fail(path + key, "%r is not one of %s" % (value, ", ".join(choices)))
    return typing.cast(str, value)


def _non_negative(data: dict, path: str, key: str, types: typing.Any, allow_none: bool = False) -> typing.Any:
    value = _need(data, path, key, types, allow_none=allow_none)
    if value is not None and value < 0:
        _fail(path + key, "must be >= 0")
    return value


# --------------------------------------------------------------------------------------------
# the schema


@dataclasses.dataclass
class StageEvent:
    stage: str
    event: str
    at: str
    message: str = ""

    FIELDS: typing.ClassVar[tuple] = ("stage", "event", "at", "message")

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "history[].") -> "StageEvent":
        _exact_keys(data, path, cls.FIELDS)
        return cls(
            stage=_choice(data, path, "stage", STAGES),
            event=_choice(data, path, "event", EVENTS),
            at=typing.cast(str, _ts_field(data, path, "at")),
            message=_need(data, path, "message", str),
        )

    def to_dict(self) -> dict:
        return {"stage": self.stage, "event": self.event, "at": self.at, "message": self.message}


@dataclasses.dataclass
class SyncPass:
    started_at: str
    duration_s: float
    files_changed: int
    bytes_changed: int
    files_total: int
    bytes_total: int
    kind: str = "full"
    # how the change journal planned it (full|incremental; None: no journal, e.g. a reverse pass)
    mode: str | None = None
    # rsync exit 24: files vanished while it ran (the source is live; not an error)
    vanished: bool = False
    # the same instant as started_at, to the ns, on the source's clock (what data checks compare
    # mtimes with); None in records written before it was kept
    started_at_ns: int | None = None
    # a move carrying the database: its replication lag seen right after the pass (WAL bytes the
    # new server has not confirmed; seconds of replay lag, None when unknown)
    database_lag_bytes: int | None = None
    database_lag_s: float | None = None

    FIELDS: typing.ClassVar[tuple] = ("started_at", "duration_s", "files_changed", "bytes_changed",
                                      "files_total", "bytes_total", "kind")
    OPTIONAL: typing.ClassVar[tuple] = ("mode", "vanished", "started_at_ns",  # left out when unset
                                        "database_lag_bytes", "database_lag_s")

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "sync_passes[].") -> "SyncPass":
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        mode = data.get("mode")
        if mode is not None and mode not in PASS_MODES:
            _fail(path + "mode", "must be one of %s, got %r" % (", ".join(PASS_MODES), mode))
        if not isinstance(data.get("vanished", False), bool):
            _fail(path + "vanished", "must be true or false")
        started_at = typing.cast(str, _ts_field(data, path, "started_at"))
        started_ns = _non_negative(data, path, "started_at_ns", int, allow_none=True) \
            if "started_at_ns" in data else None
        if started_ns is not None and clock.ts_from_ns(started_ns) != started_at:
            _fail(path + "started_at_ns", "%d is not within started_at %s" % (started_ns, started_at))
        return cls(
            started_at=started_at,
            duration_s=float(_non_negative(data, path, "duration_s", (int, float))),
            files_changed=_non_negative(data, path, "files_changed", int),
            bytes_changed=_non_negative(data, path, "bytes_changed", int),
            files_total=_non_negative(data, path, "files_total", int),
            bytes_total=_non_negative(data, path, "bytes_total", int),
            kind=_choice(data, path, "kind", PASS_KINDS),
            mode=mode,
            vanished=bool(data.get("vanished", False)),
            started_at_ns=started_ns,
            database_lag_bytes=_non_negative(data, path, "database_lag_bytes", int)
            if "database_lag_bytes" in data else None,
            database_lag_s=float(_non_negative(data, path, "database_lag_s", (int, float)))
            if "database_lag_s" in data else None,
        )

    def to_dict(self) -> dict:
        out = {f: getattr(self, f) for f in self.FIELDS}
        if self.mode is not None:
            out["mode"] = self.mode
        if self.vanished:
            out["vanished"] = True
        if self.started_at_ns is not None:
            out["started_at_ns"] = self.started_at_ns
        if self.database_lag_bytes is not None:
            out["database_lag_bytes"] = self.database_lag_bytes
        if self.database_lag_s is not None:
            out["database_lag_s"] = self.database_lag_s
        return out

    @property
    def started_ns(self) -> int:
        """When the pass started, ns since the epoch (to the second for older records)."""
        return self.started_at_ns if self.started_at_ns is not None else clock.ns_from_ts(self.started_at)


@dataclasses.dataclass
class DnsSnapshot:
    """The env's A records and TTL before the move touched them (what a rollback restores)."""

    records: dict
    previous_ttl: int
    move_ttl: int

    FIELDS: typing.ClassVar[tuple] = ("records", "previous_ttl", "move_ttl")

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "dns.") -> "DnsSnapshot":
        _exact_keys(data, path, cls.FIELDS)
        records = _need(data, path, "records", dict)
        for name, addrs in records.items():
            if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
                _fail(path + "records." + str(name), "expected a list of addresses")
        return cls(
            records={k: list(v) for k, v in records.items()},
            previous_ttl=_non_negative(data, path, "previous_ttl", int),
            move_ttl=_non_negative(data, path, "move_ttl", int),
        )

    def to_dict(self) -> dict:
        return {
            "records": {k: list(v) for k, v in sorted(self.records.items())},
            "previous_ttl": self.previous_ttl,
            "move_ttl": self.move_ttl,
        }


DATABASE_MOVE_KEYS = ("server", "address")


def _database_move(data: typing.Any) -> dict:
    """The record's ``database``: where the env's database moves (its new server and address)."""
    _exact_keys(data, "database.", DATABASE_MOVE_KEYS)
    return {key: _need(data, "database.", key, str, non_empty=True) for key in DATABASE_MOVE_KEYS}


@dataclasses.dataclass
class Freeze:
    """The freeze of the switch-over as the source measured it: held and released instants (ns
    since the epoch, the source's clock) and how long each part took (seconds)."""

    released_at_ns: int
    held_at_ns: int | None = None
    freeze_s: float | None = None
    drain_s: float | None = None
    stop_s: float | None = None
    final_sync_s: float | None = None
    forwarder_s: float | None = None
    writers_s: float | None = None
    barrier_s: float | None = None
    database_s: float | None = None  # the database's part (wait until applied, sequences, way back)
    barrier: str | None = None  # the file the final pass's barrier left in the target's first data path

    FIELDS: typing.ClassVar[tuple] = ("released_at_ns",)
    OPTIONAL: typing.ClassVar[tuple] = ("held_at_ns", "freeze_s", "drain_s", "stop_s", "final_sync_s",
                                        "forwarder_s", "writers_s", "barrier_s", "database_s", "barrier")
    DURATIONS: typing.ClassVar[tuple] = ("freeze_s", "drain_s", "stop_s", "final_sync_s", "forwarder_s",
                                         "writers_s", "barrier_s", "database_s")

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "freeze.") -> "Freeze":
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        released = _non_negative(data, path, "released_at_ns", int)
        held = _non_negative(data, path, "held_at_ns", int, allow_none=True) if "held_at_ns" in data else None
        if held is not None and held > released:
            _fail(path + "held_at_ns", "is after released_at_ns")
        parts = {}
        for key in cls.DURATIONS:
            if key in data:
                value = _non_negative(data, path, key, (int, float), allow_none=True)
                parts[key] = None if value is None else float(value)
        barrier = _need(data, path, "barrier", str, allow_none=True) if "barrier" in data else None
        return cls(released_at_ns=released, held_at_ns=held, barrier=barrier, **parts)

    @classmethod
    def from_figures(cls, figures: typing.Any) -> "Freeze":
        """The part of a freeze module result the record keeps. The freeze module names the held
        instant ``frozen_at_ns``; ``held_at_ns`` is the record's name for it."""
        if not isinstance(figures, dict):
            raise ValueError("figures is not a freeze result (expected a dict)")
        if figures.get("released_at_ns") is None:
            raise ValueError("figures is not a freeze result: released_at_ns is missing (the freeze module "
                             "returns it when it froze; a freeze that found the env frozen already returns none)")
        data = {k: figures[k] for k in cls.FIELDS + cls.OPTIONAL if figures.get(k) is not None}
        if "held_at_ns" not in data and figures.get("frozen_at_ns") is not None:
            data["held_at_ns"] = figures["frozen_at_ns"]
        for key in ("released_at_ns", "held_at_ns"):  # module results may carry numbers as text
            if isinstance(data.get(key), str) and data[key].isdigit():
                data[key] = int(data[key])
        try:
            return cls.from_dict(data)
        except RecordError as exc:
            raise ValueError("figures is not a freeze result: %s" % exc) from None

    def to_dict(self) -> dict:
        out: dict[str, typing.Any] = {"released_at_ns": self.released_at_ns}
        for key in self.OPTIONAL:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclasses.dataclass
class Check:
    """A check a stage made (for the report): what, when, whether it passed, a one-line summary and
    optional details (JSON data: counts, lists of paths)."""

    name: str
    stage: str
    at: str
    ok: bool
    summary: str
    details: typing.Any = None

    FIELDS: typing.ClassVar[tuple] = ("name", "stage", "at", "ok", "summary")
    OPTIONAL: typing.ClassVar[tuple] = ("details",)

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "checks[].") -> "Check":
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        return cls(name=_need(data, path, "name", str, non_empty=True), stage=_choice(data, path, "stage", STAGES),
                   at=typing.cast(str, _ts_field(data, path, "at")), ok=_need(data, path, "ok", bool),
                   summary=_need(data, path, "summary", str), details=data.get("details"))

    def to_dict(self) -> dict:
        out = {"name": self.name, "stage": self.stage, "at": self.at, "ok": self.ok, "summary": self.summary}
        if self.details is not None:
            out["details"] = self.details
        return out


@dataclasses.dataclass
class Backup:
    """A directory on a server that keeps what a pass replaced or deleted there (a rollback's
    pull, a repair after the switch); kept until the operator removes it."""

    server: str
    path: str
    move_id: str
    at: str
    files: int | None = None

    FIELDS: typing.ClassVar[tuple] = ("server", "path", "move_id", "at")
    OPTIONAL: typing.ClassVar[tuple] = ("files",)

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "backups[].") -> "Backup":
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        files = _non_negative(data, path, "files", int, allow_none=True) if "files" in data else None
        return cls(server=_need(data, path, "server", str, non_empty=True),
                   path=_need(data, path, "path", str, non_empty=True),
                   move_id=_need(data, path, "move_id", str, non_empty=True),
                   at=typing.cast(str, _ts_field(data, path, "at")), files=files)

    def to_dict(self) -> dict:
        out: dict[str, typing.Any] = {"server": self.server, "path": self.path, "move_id": self.move_id,
                                      "at": self.at}
        if self.files is not None:
            out["files"] = self.files
        return out


def _forwarding_settings(settings: dict, path: str) -> dict:
    """forwarding.Settings.to_dict() as a record keeps it: exactly min_s, quiet_s, max_s, whole seconds."""
    _exact_keys(settings, path, ("min_s", "quiet_s", "max_s"))
    for key in ("min_s", "quiet_s", "max_s"):
        _non_negative(settings, path, key, int)
    return dict(settings)


@dataclasses.dataclass
class StaleTraffic:
    """The latest measurement of the requests the old server took since the release
    (``stale_traffic.Measurement``), with the forwarding settings it was judged by."""

    measured_at: str
    since: str
    total: int
    last_seen: str | None
    per_minute: list
    log_found: bool
    forwarding: dict  # forwarding.Settings.to_dict(): min_s, quiet_s, max_s

    FIELDS: typing.ClassVar[tuple] = ("measured_at", "since", "total", "last_seen", "per_minute", "log_found",
                                      "forwarding")

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "stale.") -> "StaleTraffic":
        _exact_keys(data, path, cls.FIELDS)
        per_minute = _need(data, path, "per_minute", list)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in per_minute):
            _fail(path + "per_minute", "expected a list of counts (whole numbers >= 0)")
        settings = _forwarding_settings(_need(data, path, "forwarding", dict), path + "forwarding.")
        return cls(measured_at=typing.cast(str, _ts_field(data, path, "measured_at")),
                   since=typing.cast(str, _ts_field(data, path, "since")),
                   total=_non_negative(data, path, "total", int),
                   last_seen=_ts_field(data, path, "last_seen", allow_none=True),
                   per_minute=list(per_minute), log_found=_need(data, path, "log_found", bool),
                   forwarding=dict(settings))

    def to_dict(self) -> dict:
        return {"measured_at": self.measured_at, "since": self.since, "total": self.total,
                "last_seen": self.last_seen, "per_minute": list(self.per_minute), "log_found": self.log_found,
                "forwarding": dict(self.forwarding)}


@dataclasses.dataclass
class MoveRecord:
    move_id: str
    env: str
    source: str
    target: str
    source_address: str
    target_address: str
    commit: str
    source_commit: str = ""
    stage: str = "preflight"
    state: str = "running"
    history: list = dataclasses.field(default_factory=list)
    sync_passes: list = dataclasses.field(default_factory=list)
    dns: DnsSnapshot | None = None  # None until the TTL was lowered
    waiting_since: str | None = None
    switched_at: str | None = None
    warnings: list = dataclasses.field(default_factory=list)
    freeze: Freeze | None = None  # None until the cutover froze the source
    checks: list = dataclasses.field(default_factory=list)  # Check, in the order they were made
    backups: list = dataclasses.field(default_factory=list)  # Backup
    # the env's database moves too: {"server": its new home, "address": that server's address};
    # None when the database stays where it is (the default)
    database: dict | None = None
    stale: StaleTraffic | None = None  # the latest measurement of stale traffic after the switch
    # when a finish found the move due and began ending it: a finish run again completes it
    # without judging anew (the old site it would measure may be gone already)
    finishing_since: str | None = None
    #: the env's forwarding settings when the move started (forwarding.Settings.to_dict()): what a
    #: status judges the finish by before the first stale-traffic measurement brings its own
    forwarding: dict | None = None
    schema_version: int = SCHEMA_VERSION

    FIELDS: typing.ClassVar[tuple] = (
        "schema_version", "move_id", "env", "source", "target", "source_address", "target_address",
        "commit", "source_commit", "stage", "state", "history", "sync_passes", "dns", "waiting_since",
        "switched_at", "warnings", "checksum")
    # left out while unset: older records stay valid
    OPTIONAL: typing.ClassVar[tuple] = ("freeze", "checks", "backups", "database", "stale", "finishing_since",
                                        "forwarding")

    # ---- construction

    @classmethod
    def new(cls, env: str, source: str, target: str, source_address: str, target_address: str,
            commit: str, source_commit: str = "", now: datetime.datetime | None = None,
            database: dict | None = None,
            forwarding: typing.Mapping[str, typing.Any] | None = None) -> "MoveRecord":
        now = now or clock.utcnow()
        validate_env_name(env)
        if source == target:
            raise ValueError("source and target are the same server (%s)" % source)
        if forwarding is not None:
            try:
                forwarding = _forwarding_settings(dict(forwarding), "forwarding.")
            except RecordError as exc:
                raise ValueError(str(exc)) from None
        rec = cls(
            move_id=new_move_id(env, now), env=env, source=source, target=target,
            source_address=source_address, target_address=target_address, commit=commit,
            source_commit=source_commit or "", database=dict(database) if database else None,
            forwarding=forwarding,
        )
        rec.history.append(StageEvent("preflight", "started", clock.format_ts(now), ""))
        rec.validate()
        return rec

    # ---- (de)serialisation

    def to_dict(self, with_checksum: bool = True) -> dict:
        data: dict[str, typing.Any] = {
            "schema_version": self.schema_version,
            "move_id": self.move_id,
            "env": self.env,
            "source": self.source,
            "target": self.target,
            "source_address": self.source_address,
            "target_address": self.target_address,
            "commit": self.commit,
            "source_commit": self.source_commit,
            "stage": self.stage,
            "state": self.state,
            "history": [e.to_dict() for e in self.history],
            "sync_passes": [p.to_dict() for p in self.sync_passes],
            "dns": self.dns.to_dict() if self.dns is not None else None,
            "waiting_since": self.waiting_since,
            "switched_at": self.switched_at,
            "warnings": list(self.warnings),
        }
        if self.freeze is not None:
            data["freeze"] = self.freeze.to_dict()
        if self.checks:
            data["checks"] = [c.to_dict() for c in self.checks]
        if self.backups:
            data["backups"] = [b.to_dict() for b in self.backups]
        if self.database is not None:
            data["database"] = dict(self.database)
        if self.stale is not None:
            data["stale"] = self.stale.to_dict()
        if self.finishing_since is not None:
            data["finishing_since"] = self.finishing_since
        if self.forwarding is not None:
            data["forwarding"] = dict(self.forwarding)
        if with_checksum:
            data["checksum"] = checksum_of(data)
        return data

    def to_json(self) -> str:
        self.validate()
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: typing.Any, verify_checksum: bool = True) -> "MoveRecord":
        if not isinstance(data, dict):
            raise RecordError("move record: expected a JSON object, got %s" % type(data).__name__)
        if "schema_version" not in data:
            raise RecordError("move record: no schema_version; not a strackt.move record")
        version = data["schema_version"]
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            raise RecordError(
                "move record: unsupported schema_version %r (this strackt.move reads %d); "
                "use the strackt.move version that wrote it" % (version, SCHEMA_VERSION))
        _exact_keys(data, "", cls.FIELDS, cls.OPTIONAL)
        if verify_checksum:
            stored = data["checksum"]
            expected = checksum_of(data)
            if stored != expected:
                raise RecordError(
                    "move record: checksum mismatch (stored %s, content gives %s): the file was "
                    "changed outside strackt.move or is damaged; it is not trusted" % (stored, expected))
        p = ""
        dns = _need(data, p, "dns", dict, allow_none=True)
        freeze = data.get("freeze")
        history = _need(data, p, "history", list)
        passes = _need(data, p, "sync_passes", list)
        warnings = _need(data, p, "warnings", list)
        checks = _need(data, p, "checks", list) if "checks" in data else []
        backups = _need(data, p, "backups", list) if "backups" in data else []
        for i, w in enumerate(warnings):
            if not isinstance(w, str):
                _fail("warnings[%d]" % i, "expected str")
        rec = cls(
            schema_version=version,
            move_id=_need(data, p, "move_id", str, non_empty=True),
            env=_need(data, p, "env", str, non_empty=True),
            source=_need(data, p, "source", str, non_empty=True),
            target=_need(data, p, "target", str, non_empty=True),
            source_address=_need(data, p, "source_address", str, non_empty=True),
            target_address=_need(data, p, "target_address", str, non_empty=True),
            commit=_need(data, p, "commit", str, non_empty=True),
            source_commit=_need(data, p, "source_commit", str),
            stage=_choice(data, p, "stage", STAGES),
            state=_choice(data, p, "state", STATES),
            history=[StageEvent.from_dict(e, "history[%d]." % i) for i, e in enumerate(history)],
            sync_passes=[SyncPass.from_dict(s, "sync_passes[%d]." % i) for i, s in enumerate(passes)],
            dns=DnsSnapshot.from_dict(dns) if dns is not None else None,
            waiting_since=_ts_field(data, p, "waiting_since", allow_none=True),
            switched_at=_ts_field(data, p, "switched_at", allow_none=True),
            warnings=list(warnings),
            freeze=Freeze.from_dict(freeze) if freeze is not None else None,
            checks=[Check.from_dict(c, "checks[%d]." % i) for i, c in enumerate(checks)],
            backups=[Backup.from_dict(b, "backups[%d]." % i) for i, b in enumerate(backups)],
            database=_database_move(data["database"]) if data.get("database") is not None else None,
            stale=StaleTraffic.from_dict(data["stale"]) if data.get("stale") is not None else None,
            finishing_since=_ts_field(data, p, "finishing_since", allow_none=True) if "finishing_since" in data else None,
            forwarding=(_forwarding_settings(_need(data, p, "forwarding", dict), "forwarding.")
                        if "forwarding" in data else None),
        )
        rec.validate()
        return rec

    @classmethod
    def from_json(cls, text: str) -> "MoveRecord":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError("move record: not valid JSON (%s)" % exc) from None
        return cls.from_dict(data)

    def validate(self) -> "MoveRecord":
        """Cross-field checks (the per-field ones run in from_dict)."""
        try:
            check_name("env", self.env)
            check_name("move_id", self.move_id)
        except EnvNameError as exc:
            raise RecordError("move record: %s" % exc) from None
        if not self.move_id.startswith(self.env + "-"):
            raise RecordError("move record: move_id %r does not belong to env %r" % (self.move_id, self.env))
        if self.source == self.target:
            raise RecordError("move record: source and target are both %r" % self.source)
        if self.stage not in STAGES or self.state not in STATES:
            raise RecordError("move record: unknown stage %r or state %r" % (self.stage, self.state))
        if self.stage in TERMINAL_STAGES and self.state != self.stage:
            raise RecordError("move record: stage %s needs state %s, not %s" % (self.stage, self.stage, self.state))
        if self.state in ("done", "rolled_back") and self.stage != self.state:
            raise RecordError("move record: state %s at stage %s" % (self.state, self.stage))
        if self.state == "waiting" and self.stage != "awaiting_confirmation":
            raise RecordError("move record: state waiting outside awaiting_confirmation")
        return self

    # ---- the state machine

    def transition(self, stage: str, message: str = "", now: datetime.datetime | None = None) -> "MoveRecord":
        """Start ``stage`` (re-entering the current one is a retry). Refuses what the state
        machine does not allow."""
        check_transition(self, stage)
        self.stage = stage
        self.state = "running"
        self._event(stage, "started", message, now)
        return self

    def complete(self, stage: str, message: str = "", now: datetime.datetime | None = None) -> "MoveRecord":
        """End the open ``stage`` successfully."""
        self._require_open(stage, "complete")
        self.state = stage if stage in TERMINAL_STAGES else "running"
        if stage == "switched" and self.switched_at is None:
            self.switched_at = clock.format_ts(now or clock.utcnow())
        self._event(stage, "completed", message, now)
        return self

    def switch(self, message: str = "", now: datetime.datetime | None = None) -> bool:
        """The completed cutover -> switched, with its switch time, as one change of the record (one
        write: no run dies between marking the move switched and recording when it was). A move at
        switched without a switch time (left by an earlier version killed between those two
        writes) gets it now: a later instant only makes the finish wait longer for resolvers'
        caches. False when the move was switched already."""
        if self.stage == "switched" and self.switched_at is not None:
            return False
        if self.stage != "switched":
            self.transition("switched", message, now)
        self.complete("switched", message, now)
        return True

    def record_event(self, stage: str, event: str, message: str = "", now: datetime.datetime | None = None) -> bool:
        """One stage event as the roles report it (``started``, ``completed`` or ``failed``).
        Completing ``switched`` is ``switch``: started and completed in one write, with the switch
        time. False when nothing changed (a move switched already)."""
        if event == "started":
            self.transition(stage, message, now)
        elif event == "completed":
            if stage == "switched":
                return self.switch(message, now)
            self.complete(stage, message, now)
        elif event == "failed":
            self.fail(stage, message, now)
        else:
            raise TransitionError("unknown stage event %r (started, completed or failed)" % (event,))
        return True

    def fail(self, stage: str, message: str = "", now: datetime.datetime | None = None) -> "MoveRecord":
        """End the open ``stage`` as failed (a retry starts it again)."""
        if stage in TERMINAL_STAGES:
            raise TransitionError("the move %s is %s; nothing can fail in it" % (self.move_id, stage))
        self._require_open(stage, "fail")
        self.state = "failed"
        self._event(stage, "failed", message, now)
        return self

    def wait(self, message: str = "", now: datetime.datetime | None = None) -> bool:
        """verify (completed) -> awaiting_confirmation, state waiting, waiting_since recorded.
        Returns False when the move waits already."""
        if self.stage == "awaiting_confirmation" and self.state == "waiting":
            return False
        if self.stage != "verify" or self.state != "running" or not self.completed("verify"):
            raise TransitionError(
                "move %s cannot wait for confirmation: stage %s is %s; verify must complete first "
                "(run the verify stage)" % (self.move_id, self.stage, self.state))
        self.transition("awaiting_confirmation", message, now)
        self.state = "waiting"
        if self.waiting_since is None:
            self.waiting_since = clock.format_ts(now or clock.utcnow())
        return True

    def add_pass(self, sync_pass: SyncPass | dict) -> "MoveRecord":
        if not isinstance(sync_pass, SyncPass):
            sync_pass = SyncPass.from_dict(sync_pass)
        if self.stage in TERMINAL_STAGES:
            raise TransitionError("move %s is %s; no more sync passes" % (self.move_id, self.stage))
        self.sync_passes.append(sync_pass)
        return self

    def warn(self, text: str) -> bool:
        """Add a warning once; returns False if it was already there."""
        if text in self.warnings:
            return False
        self.warnings.append(text)
        return True

    def set_dns(self, records: dict, previous_ttl: int, move_ttl: int) -> bool:
        """Record the pre-move DNS state once; a second call must agree (returns changed)."""
        snap = DnsSnapshot.from_dict({"records": records, "previous_ttl": previous_ttl, "move_ttl": move_ttl})
        if self.dns is not None:
            if self.dns.to_dict() == snap.to_dict():
                return False
            raise TransitionError(
                "move %s already recorded the DNS state before the move (%s); refusing to "
                "overwrite it with %s" % (self.move_id, self.dns.to_dict(), snap.to_dict()))
        self.dns = snap
        return True

    def set_freeze(self, freeze: Freeze, replace: bool = False) -> bool:
        """Record the freeze of the cutover (returns changed). The same figures again change
        nothing; other figures for a recorded freeze are refused unless ``replace``."""
        if self.stage not in FREEZE_STAGES:
            raise TransitionError("move %s is at stage %s: a freeze is recorded during the cutover only"
                                  % (self.move_id, self.stage))
        if self.freeze is not None and not replace:
            if self.freeze == freeze:
                return False
            raise TransitionError(
                "move %s already recorded a freeze (%s); refusing to overwrite it with %s (replace: true "
                "records a second freeze of the same move)" % (self.move_id, self.freeze.to_dict(), freeze.to_dict()))
        changed = self.freeze != freeze
        self.freeze = freeze
        return changed

    @property
    def released(self) -> bool:
        """Traffic was handed to the target (the freeze released it): only then may anything be
        pulled back from the target."""
        return self.freeze is not None

    def abandon_cutover(self, message: str = "", now: datetime.datetime | None = None) -> bool:
        """cutover -> awaiting_confirmation (state waiting): the freeze refused or gave the traffic
        back with nothing switched; the operator confirms again later. Returns changed."""
        if self.stage == "awaiting_confirmation" and self.state == "waiting":
            return False
        if self.stage != "cutover":
            raise TransitionError("move %s is at stage %s: only a cutover can be abandoned"
                                  % (self.move_id, self.stage))
        if self.released:
            raise TransitionError("move %s released its traffic to the target (freeze recorded): the cutover "
                                  "cannot be abandoned; finish it (cutover again) or roll it back" % self.move_id)
        if self.is_open("cutover"):
            self.fail("cutover", message, now)
        self.stage = "awaiting_confirmation"
        self.state = "waiting"
        self._event("awaiting_confirmation", "started", message or "the cutover was abandoned, nothing switched", now)
        return True

    def add_check(self, check: Check) -> bool:
        """Append a check (the same one again, e.g. a resumed stage, changes nothing)."""
        if self.stage in TERMINAL_STAGES:
            raise TransitionError("move %s is %s; no more checks" % (self.move_id, self.stage))
        if any(c == check for c in self.checks):
            return False
        self.checks.append(check)
        return True

    def set_stale(self, stale: StaleTraffic) -> bool:
        """Keep the latest measurement of stale traffic (switched moves only; returns changed)."""
        if self.stage != "switched":
            raise TransitionError("move %s is at stage %s: stale traffic is measured while switched only"
                                  % (self.move_id, self.stage))
        changed = self.stale != stale
        self.stale = stale
        return changed

    def begin_finish(self, now: datetime.datetime) -> bool:
        """Note that the finish began ending this switched move (once; returns changed)."""
        if self.stage != "switched":
            raise TransitionError("move %s is at stage %s: only a switched move begins its finish"
                                  % (self.move_id, self.stage))
        if self.finishing_since is not None:
            return False
        self.finishing_since = clock.format_ts(now)
        return True

    def add_backup(self, backup: Backup) -> bool:
        """Name a backup directory once (by server and path)."""
        if any(b.server == backup.server and b.path == backup.path for b in self.backups):
            return False
        self.backups.append(backup)
        return True

    def _event(self, stage: str, event: str, message: str, now: datetime.datetime | None) -> None:
        self.history.append(StageEvent(stage, event, clock.format_ts(now or clock.utcnow()), message or ""))

    def _require_open(self, stage: str, what: str) -> None:
        """``stage`` is the current one, started and not ended yet."""
        if stage not in STAGES:
            raise TransitionError("unknown stage %r (stages: %s)" % (stage, ", ".join(STAGES)))
        if stage != self.stage:
            raise TransitionError("cannot %s stage %s: the move %s is at stage %s"
                                  % (what, stage, self.move_id, self.stage))
        last = self.last_event(stage)
        if self.state not in ("running", "waiting") or last is None or last.event != "started":
            ended = last.event if last is not None else "never started"
            raise TransitionError("cannot %s stage %s of move %s: it is not running (%s, last event %s); "
                                  "start it again first" % (what, stage, self.move_id, self.state, ended))

    # ---- reading

    def last_event(self, stage: str | None = None) -> StageEvent | None:
        """The newest history entry (of ``stage`` if given)."""
        for ev in reversed(self.history):
            if stage is None or ev.stage == stage:
                return typing.cast(StageEvent, ev)
        return None

    def completed(self, stage: str) -> bool:
        """The newest event of ``stage`` is its completion."""
        ev = self.last_event(stage)
        return ev is not None and ev.event == "completed"

    def is_open(self, stage: str) -> bool:
        """``stage`` is the current stage and was started without an end recorded since."""
        ev = self.last_event(stage)
        return (self.stage == stage and self.state in ("running", "waiting")
                and ev is not None and ev.event == "started")

    @property
    def finished(self) -> bool:
        return self.stage in TERMINAL_STAGES

    @property
    def is_switched(self) -> bool:
        """True once traffic may have gone to the target (the cutover started)."""
        return self.switched_at is not None or any(e.stage in ("cutover", "switched") for e in self.history)


# --------------------------------------------------------------------------------------------
# retained copies: what the finish left on old servers (module_utils/retention.py has the rules)

RETAINED_SCHEMA_VERSION = 1


@dataclasses.dataclass
class RetainedCopy:
    """The stopped copy a finished move left on its old server (app and data under ``root``),
    kept until ``until``, then removed (``strackt-move retire``). ``retiring``: when a retire claimed
    it (``RetainedCopies.claim``); from then on no move may start onto its server until the copy is
    removed and forgotten."""

    server: str
    move_id: str
    root: str
    paths: list
    retained_at: str
    until: str
    retiring: str | None = None

    FIELDS: typing.ClassVar[tuple] = ("server", "move_id", "root", "paths", "retained_at", "until")
    # absent in files written before the claim existed; written only when set
    OPTIONAL: typing.ClassVar[tuple] = ("retiring",)

    @classmethod
    def from_dict(cls, data: typing.Any, path: str = "copies[].") -> "RetainedCopy":
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        root = _need(data, path, "root", str, non_empty=True)
        paths = _need(data, path, "paths", list, non_empty=True)
        for i, item in enumerate(paths):
            if not isinstance(item, str) or not item.startswith(root.rstrip("/") + "/"):
                _fail("%spaths[%d]" % (path, i), "expected a path under the root %s" % root)
        retained_at = typing.cast(str, _ts_field(data, path, "retained_at"))
        until = typing.cast(str, _ts_field(data, path, "until"))
        if clock.parse_ts(until) < clock.parse_ts(retained_at):
            _fail(path + "until", "is before retained_at")
        retiring = _ts_field(data, path, "retiring", allow_none=True) if "retiring" in data else None
        return cls(server=_need(data, path, "server", str, non_empty=True),
                   move_id=_need(data, path, "move_id", str, non_empty=True), root=root, paths=list(paths),
                   retained_at=retained_at, until=until, retiring=retiring)

    def to_dict(self) -> dict:
        data = {"server": self.server, "move_id": self.move_id, "root": self.root, "paths": list(self.paths),
                "retained_at": self.retained_at, "until": self.until}
        if self.retiring is not None:
            data["retiring"] = self.retiring
        return data

    def due(self, now: datetime.datetime) -> bool:
        """Its retention ended, or a retire began removing it (one that failed midway is completed by
        the next, a due run's included): ``retire --due`` removes it."""
        return self.retiring is not None or clock.parse_ts(self.until) <= now


@dataclasses.dataclass
class RetainedCopies:
    """Every retained copy of one env (one per server), ``{state_dir}/retained/{env}.json``: the
    same integrity rules as a move record (checksum, schema_version, exact fields)."""

    env: str
    copies: list = dataclasses.field(default_factory=list)  # RetainedCopy, one per server
    schema_version: int = RETAINED_SCHEMA_VERSION

    FIELDS: typing.ClassVar[tuple] = ("schema_version", "env", "copies", "checksum")

    def on(self, server: str) -> RetainedCopy | None:
        return next((c for c in self.copies if c.server == server), None)

    def keep(self, copy: RetainedCopy) -> bool:
        """Record ``copy`` (replacing an older one on the same server); returns changed."""
        if self.on(copy.server) == copy:
            return False
        self.copies = sorted([c for c in self.copies if c.server != copy.server] + [copy], key=lambda c: c.server)
        return True

    def claim(self, server: str, now: datetime.datetime) -> bool:
        """Mark the copy on ``server`` as being retired (the first claim's instant is kept); returns
        changed. KeyError when there is none. Taken under the env's lock, like ``admit``'s check."""
        copy = self.on(server)
        if copy is None:
            raise KeyError(server)
        if copy.retiring is not None:
            return False
        copy.retiring = clock.format_ts(now)
        return True

    def drop(self, server: str) -> bool:
        """Forget the copy on ``server`` (removed, or live again after a move back); returns changed."""
        before = len(self.copies)
        self.copies = [c for c in self.copies if c.server != server]
        return len(self.copies) != before

    def to_dict(self, with_checksum: bool = True) -> dict:
        data: dict[str, typing.Any] = {
            "schema_version": self.schema_version, "env": self.env, "copies": [c.to_dict() for c in self.copies]}
        if with_checksum:
            data["checksum"] = checksum_of(data)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RetainedCopies":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError("retained copies: not valid JSON (%s)" % exc) from None
        if not isinstance(data, dict) or "schema_version" not in data:
            raise RecordError("retained copies: no schema_version; not a strackt.move file")
        version = data["schema_version"]
        if isinstance(version, bool) or version != RETAINED_SCHEMA_VERSION:
            raise RecordError("retained copies: unsupported schema_version %r (this strackt.move reads %d)"
                              % (version, RETAINED_SCHEMA_VERSION))
        _exact_keys(data, "", cls.FIELDS)
        if data["checksum"] != checksum_of(data):
            raise RecordError("retained copies: checksum mismatch: the file was changed outside strackt.move "
                              "or is damaged; it is not trusted")
        env = _need(data, "", "env", str, non_empty=True)
        try:
            check_name("env", env)
        except EnvNameError as exc:
            raise RecordError("retained copies: %s" % exc) from None
        copies = [RetainedCopy.from_dict(c, "copies[%d]." % i)
                  for i, c in enumerate(_need(data, "", "copies", list))]
        if len({c.server for c in copies}) != len(copies):
            _fail("copies", "two copies on one server")
        return cls(env=env, copies=copies)


def check_transition(record_or_stage: MoveRecord | str, new_stage: str) -> bool:
    """Raise TransitionError unless the move may go from its current stage to ``new_stage``."""
    current = record_or_stage.stage if isinstance(record_or_stage, MoveRecord) else record_or_stage
    if new_stage not in STAGES:
        raise TransitionError("unknown stage %r (stages: %s)" % (new_stage, ", ".join(STAGES)))
    if current not in TRANSITIONS:
        raise TransitionError("unknown current stage %r" % (current,))
    if new_stage not in TRANSITIONS[current]:
        allowed = sorted(TRANSITIONS[current], key=STAGES.index)
        raise TransitionError(
            "a move at stage %s cannot go to %s (allowed next: %s)"
            % (current, new_stage, ", ".join(allowed) or "none; the move is finished"))
    if isinstance(record_or_stage, MoveRecord):
        rec = record_or_stage
        if new_stage == "cutover" and rec.stage == "awaiting_confirmation" and rec.state != "waiting":
            raise TransitionError("move %s is not waiting for confirmation (state %s); verify again first"
                                  % (rec.move_id, rec.state))
        if new_stage == "switched" and rec.stage == "cutover" and rec.state == "failed":
            raise TransitionError("the cutover of %s failed; retry the cutover or roll back" % rec.move_id)
        if new_stage == "rollback" and rec.finishing_since is not None:
            # the finish stops the forwarding and retires the env on the source: a rollback then
            # would send visitors to a server that no longer runs it
            raise TransitionError(
                "the finish of move %s began at %s and retires %s on %s: complete it (strackt-move finish %s "
                "--now), then move %s back to %s as a new move if it must go back"
                % (rec.move_id, rec.finishing_since, rec.env, rec.source, rec.env, rec.env, rec.source))
    return True


def checksum_of(data: dict) -> str:
    """sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of everything but checksum."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# may a move start?


def in_progress_message(existing: MoveRecord) -> str:
    return ("a move of %s is already in progress: %s (%s -> %s, stage %s, state %s); finish it or roll it "
            "back first (strackt-move resume|rollback %s, or playbooks/cutover.yml|rollback.yml -e env=%s)"
            % (existing.env, existing.move_id, existing.source, existing.target, existing.stage,
               existing.state, existing.env, existing.env))


def retire_in_progress_message(env: str, copy: RetainedCopy) -> str:
    return ("a retire of the old copy of %s on %s is in progress (since %s): it removes that copy, so no move "
            "onto %s starts meanwhile; wait for it or run retire again to complete it (strackt-move retire %s "
            "--server %s, or playbooks/retire.yml -e env=%s -e server=%s), then start the move"
            % (env, copy.server, copy.retiring, copy.server, env, copy.server, env, copy.server))


def admit(existing: MoveRecord | None, source: str, target: str, resume: bool = False,
          retained: RetainedCopies | None = None) -> MoveRecord | None:
    """The one rule for "may a move of this env start (or a resumed preflight continue)".

    No record: a new move may start (returns None). A record of the same source and target whose
    preflight has not completed yet may be taken over when ``resume`` is asked (the controller
    repeats an interrupted preflight; returns that record). Anything else raises MoveInProgress:
    a later stage is continued by ``resume``, not by a second preflight. Either way a copy of the
    env on the target that a retire claimed (``retained``) raises RetireInProgress: the retire is
    removing what the move would write into. Callers that save decide under the env's lock.
    """
    if existing is not None and not (resume and existing.source == source and existing.target == target
                                     and existing.stage == "preflight"):
        raise MoveInProgress(in_progress_message(existing))
    copy = retained.on(target) if retained is not None else None
    if retained is not None and copy is not None and copy.retiring is not None:
        raise RetireInProgress(retire_in_progress_message(retained.env, copy))
    return existing
