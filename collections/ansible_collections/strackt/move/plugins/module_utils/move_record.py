# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The move record: one schema, used by the modules and by the controller.

One JSON file per env with a move in progress, ``{state_dir}/moves/{env}.json`` (dir 0700,
file 0600, written atomically). Finished or rolled-back moves are archived to
``{state_dir}/moves/history/{move_id}.json``. A record never holds a secret.

The file carries ``checksum`` (sha256 over the canonical JSON of every other field); a file whose
checksum does not match, whose ``schema_version`` is unknown, or whose fields are missing, unknown
or of the wrong type is refused with :class:`RecordError` -- never silently trusted.

Stdlib only: this file is imported on the control node by the controller too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
import typing

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
STATES = ("running", "waiting", "failed", "done", "rolled_back")
EVENTS = ("started", "completed", "failed")
PASS_KINDS = ("full", "incremental", "final", "reverse")
PASS_MODES = ("full", "incremental")  # what the change journal made of a push pass

DEFAULT_WAIT_WARN_S = 24 * 3600

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _allowed_next():
    allowed = {}
    for i, stage in enumerate(PRE_SWITCH_STAGES):
        # back to any earlier pre-switch stage, stay, or forward by exactly one
        nxt = set(PRE_SWITCH_STAGES[: i + 2]) if i + 1 < len(PRE_SWITCH_STAGES) else set(PRE_SWITCH_STAGES)
        nxt.add("rollback")
        allowed[stage] = nxt
    allowed["awaiting_confirmation"].add("cutover")
    allowed["cutover"] = {"cutover", "switched", "rollback"}
    allowed["switched"] = {"switched", "done", "rollback"}
    allowed["rollback"] = {"rollback", "rolled_back"}
    allowed["done"] = set()
    allowed["rolled_back"] = set()
    return {k: frozenset(v) for k, v in allowed.items()}


#: stage -> stages a move may go to next (re-entering the same stage is a retry)
TRANSITIONS = _allowed_next()


class RecordError(Exception):
    """A record file that cannot be trusted (corrupt, hand-edited, unknown version)."""


class TransitionError(Exception):
    """A stage change the state machine does not allow."""


class RecordLocked(Exception):
    """Another run holds the lock of this env's record."""


class MoveInProgress(Exception):
    """A record for this env already exists."""


# --------------------------------------------------------------------------------------------
# time helpers


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_ts(dt):
    if dt.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return dt.astimezone(datetime.timezone.utc).strftime(_TS_FORMAT)


def parse_ts(text):
    try:
        dt = datetime.datetime.strptime(text, _TS_FORMAT)
    except (TypeError, ValueError):
        raise ValueError("not an ISO-8601 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ): %r" % (text,))
    return dt.replace(tzinfo=datetime.timezone.utc)


def _now_ts(now=None):
    return format_ts(now or utcnow())


def new_move_id(env, now=None):
    return "%s-%s" % (env, (now or utcnow()).strftime("%Y%m%dT%H%M%SZ"))


def check_name(kind, value):
    """env names and move ids become file names: refuse anything that could escape the dir."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or value in (".", ".."):
        raise ValueError("invalid %s %r: use letters, digits, '.', '_' and '-' only" % (kind, value))
    return value


# --------------------------------------------------------------------------------------------
# validation helpers


def _fail(path, msg):
    raise RecordError("move record field %s: %s" % (path, msg))


def _need(data, path, key, types, allow_none=False, non_empty=False):
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


def _tname(types):
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _exact_keys(data, path, fields, optional=()):
    if not isinstance(data, dict):
        _fail(path.rstrip(".") or "(top)", "expected an object, got %s" % type(data).__name__)
    missing = [f for f in fields if f not in data]
    unknown = sorted(k for k in data if k not in fields and k not in optional)
    if missing:
        _fail(path + ",".join(missing), "missing")
    if unknown:
        _fail(path + ",".join(unknown), "unknown field(s)")


def _ts_field(data, path, key, allow_none=False):
    value = _need(data, path, key, str, allow_none=allow_none)
    if value is None:
        return None
    try:
        parse_ts(value)
    except ValueError as exc:
        _fail(path + key, str(exc))
    return value


def _choice(data, path, key, choices):
    value = _need(data, path, key, str)
    if value not in choices:
        _fail(path + key, "%r is not one of %s" % (value, ", ".join(choices)))
    return value


def _non_negative(data, path, key, types):
    value = _need(data, path, key, types)
    if value < 0:
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

    FIELDS = ("stage", "event", "at", "message")

    @classmethod
    def from_dict(cls, data, path="history[]."):
        _exact_keys(data, path, cls.FIELDS)
        return cls(
            stage=_choice(data, path, "stage", STAGES),
            event=_choice(data, path, "event", EVENTS),
            at=_ts_field(data, path, "at"),
            message=_need(data, path, "message", str),
        )

    def to_dict(self):
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
    mode: typing.Optional[str] = None
    # rsync exit 24: files vanished while it ran (the source is live; not an error)
    vanished: bool = False

    FIELDS = ("started_at", "duration_s", "files_changed", "bytes_changed", "files_total",
              "bytes_total", "kind")
    OPTIONAL = ("mode", "vanished")  # left out when unset: older records stay valid

    @classmethod
    def from_dict(cls, data, path="sync_passes[]."):
        _exact_keys(data, path, cls.FIELDS, cls.OPTIONAL)
        mode = data.get("mode")
        if mode is not None and mode not in PASS_MODES:
            _fail(path + "mode", "must be one of %s, got %r" % (", ".join(PASS_MODES), mode))
        if not isinstance(data.get("vanished", False), bool):
            _fail(path + "vanished", "must be true or false")
        return cls(
            started_at=_ts_field(data, path, "started_at"),
            duration_s=float(_non_negative(data, path, "duration_s", (int, float))),
            files_changed=_non_negative(data, path, "files_changed", int),
            bytes_changed=_non_negative(data, path, "bytes_changed", int),
            files_total=_non_negative(data, path, "files_total", int),
            bytes_total=_non_negative(data, path, "bytes_total", int),
            kind=_choice(data, path, "kind", PASS_KINDS),
            mode=mode,
            vanished=bool(data.get("vanished", False)),
        )

    def to_dict(self):
        out = {f: getattr(self, f) for f in self.FIELDS}
        if self.mode is not None:
            out["mode"] = self.mode
        if self.vanished:
            out["vanished"] = True
        return out


@dataclasses.dataclass
class DnsSnapshot:
    """The env's A records and TTL before the move touched them (what a rollback restores)."""

    records: dict
    previous_ttl: int
    move_ttl: int

    FIELDS = ("records", "previous_ttl", "move_ttl")

    @classmethod
    def from_dict(cls, data, path="dns."):
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

    def to_dict(self):
        return {
            "records": {k: list(v) for k, v in sorted(self.records.items())},
            "previous_ttl": self.previous_ttl,
            "move_ttl": self.move_ttl,
        }


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
    dns: object = None  # DnsSnapshot or None until the TTL was lowered
    waiting_since: object = None  # str or None
    switched_at: object = None  # str or None
    warnings: list = dataclasses.field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    FIELDS = ("schema_version", "move_id", "env", "source", "target", "source_address",
              "target_address", "commit", "source_commit", "stage", "state", "history",
              "sync_passes", "dns", "waiting_since", "switched_at", "warnings", "checksum")

    # ---- construction

    @classmethod
    def new(cls, env, source, target, source_address, target_address, commit, source_commit="",
            now=None):
        now = now or utcnow()
        check_name("env", env)
        if source == target:
            raise ValueError("source and target are the same server (%s)" % source)
        rec = cls(
            move_id=new_move_id(env, now), env=env, source=source, target=target,
            source_address=source_address, target_address=target_address, commit=commit,
            source_commit=source_commit or "",
        )
        rec.history.append(StageEvent("preflight", "started", format_ts(now), ""))
        rec.validate()
        return rec

    # ---- (de)serialisation

    def to_dict(self, with_checksum=True):
        data = {
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
        if with_checksum:
            data["checksum"] = checksum_of(data)
        return data

    def to_json(self):
        self.validate()
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data, verify_checksum=True):
        if not isinstance(data, dict):
            raise RecordError("move record: expected a JSON object, got %s" % type(data).__name__)
        if "schema_version" not in data:
            raise RecordError("move record: no schema_version; not a strackt.move record")
        version = data["schema_version"]
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            raise RecordError(
                "move record: unsupported schema_version %r (this strackt.move reads %d); "
                "use the strackt.move version that wrote it" % (version, SCHEMA_VERSION))
        _exact_keys(data, "", cls.FIELDS)
        if verify_checksum:
            stored = data["checksum"]
            expected = checksum_of({k: v for k, v in data.items() if k != "checksum"})
            if stored != expected:
                raise RecordError(
                    "move record: checksum mismatch (stored %s, content gives %s): the file was "
                    "changed outside strackt.move or is damaged; it is not trusted" % (stored, expected))
        p = ""
        dns = _need(data, p, "dns", dict, allow_none=True)
        history = _need(data, p, "history", list)
        passes = _need(data, p, "sync_passes", list)
        warnings = _need(data, p, "warnings", list)
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
        )
        rec.validate()
        return rec

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError("move record: not valid JSON (%s)" % exc)
        return cls.from_dict(data)

    def validate(self):
        """Cross-field checks (the per-field ones run in from_dict)."""
        try:
            check_name("env", self.env)
            check_name("move_id", self.move_id)
        except ValueError as exc:
            raise RecordError("move record: %s" % exc)
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

    def transition(self, stage, message="", now=None):
        """Start ``stage``. Refuses a transition the state machine does not allow."""
        check_transition(self, stage)
        self.stage = stage
        self.state = "running"
        self._event(stage, "started", message, now)
        return self

    def complete(self, stage, message="", now=None):
        self._require_current(stage, "complete")
        self.state = stage if stage in TERMINAL_STAGES else "running"
        if stage == "switched" and self.switched_at is None:
            self.switched_at = _now_ts(now)
        self._event(stage, "completed", message, now)
        return self

    def fail(self, stage, message="", now=None):
        self._require_current(stage, "fail")
        if stage in TERMINAL_STAGES:
            raise TransitionError("the move %s is already %s; nothing can fail in it" % (self.move_id, stage))
        self.state = "failed"
        self._event(stage, "failed", message, now)
        return self

    def wait(self, message="", now=None):
        """verify (completed) -> awaiting_confirmation, state waiting, waiting_since recorded."""
        if self.stage == "awaiting_confirmation" and self.state == "waiting":
            return False
        if self.stage == "awaiting_confirmation" and self.state == "running":
            pass
        elif self.stage != "verify" or self.state != "running" or not self._last_completed("verify"):
            raise TransitionError(
                "move %s cannot wait for confirmation: stage %s is %s; verify must complete first "
                "(run the verify stage)" % (self.move_id, self.stage, self.state))
        else:
            self.transition("awaiting_confirmation", message, now)
        self.state = "waiting"
        if self.waiting_since is None:
            self.waiting_since = _now_ts(now)
        return True

    def add_pass(self, sync_pass):
        if not isinstance(sync_pass, SyncPass):
            sync_pass = SyncPass.from_dict(sync_pass)
        if self.stage in TERMINAL_STAGES:
            raise TransitionError("move %s is %s; no more sync passes" % (self.move_id, self.stage))
        self.sync_passes.append(sync_pass)
        return self

    def warn(self, text):
        """Add a warning once; returns False if it was already there."""
        if text in self.warnings:
            return False
        self.warnings.append(text)
        return True

    def set_dns(self, records, previous_ttl, move_ttl):
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

    def _event(self, stage, event, message, now):
        self.history.append(StageEvent(stage, event, _now_ts(now), message or ""))

    def _require_current(self, stage, what):
        if stage not in STAGES:
            raise TransitionError("unknown stage %r (stages: %s)" % (stage, ", ".join(STAGES)))
        if stage != self.stage:
            raise TransitionError("cannot %s stage %s: the move %s is at stage %s"
                                  % (what, stage, self.move_id, self.stage))

    def _last_completed(self, stage):
        for ev in reversed(self.history):
            if ev.stage == stage:
                return ev.event == "completed"
        return False

    # ---- reading

    @property
    def finished(self):
        return self.stage in TERMINAL_STAGES

    @property
    def is_switched(self):
        """True once traffic may have gone to the target (the cutover started)."""
        return self.switched_at is not None or any(e.stage in ("cutover", "switched") for e in self.history)


def check_transition(record_or_stage, new_stage):
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
    return True


def checksum_of(data):
    """sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of everything but checksum."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# waiting too long


def waiting_seconds(record, now=None):
    """Seconds the move has waited for confirmation, or None if it is not waiting."""
    if record.state != "waiting" or not record.waiting_since:
        return None
    return ((now or utcnow()) - parse_ts(record.waiting_since)).total_seconds()


def is_overdue(record, threshold_s=DEFAULT_WAIT_WARN_S, now=None):
    waited = waiting_seconds(record, now)
    return waited is not None and waited > threshold_s


def overdue_message(record, threshold_s=DEFAULT_WAIT_WARN_S, now=None):
    """A warning line if the move waits longer than threshold_s at verify, else None."""
    waited = waiting_seconds(record, now)
    if waited is None or waited <= threshold_s:
        return None
    return ("move %s of %s has waited %.1f h for confirmation (since %s, threshold %.1f h): "
            "confirm the cutover or roll it back"
            % (record.move_id, record.env, waited / 3600.0, record.waiting_since, threshold_s / 3600.0))


def predicted_freeze_s(record):
    """The last measured pass duration: what a final pass inside the freeze is expected to take."""
    if not record.sync_passes:
        return None
    return record.sync_passes[-1].duration_s


def summary(record, threshold_s=DEFAULT_WAIT_WARN_S, now=None):
    """A flat dict for status output."""
    last = record.sync_passes[-1].to_dict() if record.sync_passes else None
    return {
        "move_id": record.move_id,
        "env": record.env,
        "source": record.source,
        "target": record.target,
        "commit": record.commit,
        "stage": record.stage,
        "state": record.state,
        "waiting_since": record.waiting_since,
        "waiting_s": waiting_seconds(record, now),
        "overdue": is_overdue(record, threshold_s, now),
        "overdue_message": overdue_message(record, threshold_s, now),
        "switched_at": record.switched_at,
        "sync_passes": len(record.sync_passes),
        "last_pass": last,
        "predicted_freeze_s": predicted_freeze_s(record),
        "warnings": list(record.warnings),
    }


# --------------------------------------------------------------------------------------------
# files


def moves_dir(state_dir):
    return os.path.join(state_dir, "moves")


def history_dir(state_dir):
    return os.path.join(moves_dir(state_dir), "history")


def record_path(state_dir, env):
    return os.path.join(moves_dir(state_dir), check_name("env", env) + ".json")


def history_path(state_dir, move_id):
    return os.path.join(history_dir(state_dir), check_name("move_id", move_id) + ".json")


def lock_path(state_dir, env):
    return os.path.join(moves_dir(state_dir), check_name("env", env) + ".lock")


def ensure_dirs(state_dir):
    """Create state_dir, moves/ and moves/history/ with mode 0700 (tightening existing ones)."""
    for path in (state_dir, moves_dir(state_dir), history_dir(state_dir)):
        try:
            os.makedirs(path, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        os.chmod(path, 0o700)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, text, mode=0o600):
    """Write text to path atomically: temp file in the same dir, fsync, rename, fsync the dir."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fd = None
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(directory)
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def save(state_dir, record):
    ensure_dirs(state_dir)
    path = record_path(state_dir, record.env)
    atomic_write(path, record.to_json())
    return path


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    try:
        return MoveRecord.from_json(text)
    except RecordError as exc:
        raise RecordError("%s: %s" % (path, exc))


def load(state_dir, env):
    """The env's record in progress, or None. Raises RecordError for an untrustworthy file."""
    rec = _read(record_path(state_dir, env))
    if rec is not None and rec.env != env:
        raise RecordError("%s: holds env %r, not %r" % (record_path(state_dir, env), rec.env, env))
    return rec


def load_history(state_dir, move_id):
    return _read(history_path(state_dir, move_id))


def list_history(state_dir, env=None):
    """move_ids of archived moves (optionally of one env), oldest first."""
    try:
        names = os.listdir(history_dir(state_dir))
    except OSError:
        return []
    ids = sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))
    if env is not None:
        ids = [i for i in ids if i.startswith(env + "-")]
    return ids


def list_active(state_dir):
    """env names that have a move in progress."""
    try:
        names = os.listdir(moves_dir(state_dir))
    except OSError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))


def archive(state_dir, record):
    """Move a finished record to history/{move_id}.json and remove the in-progress file."""
    if not record.finished:
        raise TransitionError("move %s is at stage %s; only done or rolled_back moves are archived"
                              % (record.move_id, record.stage))
    ensure_dirs(state_dir)
    dest = history_path(state_dir, record.move_id)
    atomic_write(dest, record.to_json())
    current = record_path(state_dir, record.env)
    try:
        os.unlink(current)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    _fsync_dir(moves_dir(state_dir))
    return dest


def create(state_dir, record):
    """Save a new record; refuses if the env already has a move in progress."""
    existing = load(state_dir, record.env)
    if existing is not None:
        raise MoveInProgress(
            "a move of %s is already in progress: %s (%s -> %s, stage %s, state %s); finish it "
            "or roll it back first" % (existing.env, existing.move_id, existing.source,
                                       existing.target, existing.stage, existing.state))
    return save(state_dir, record)


def flock_exclusive(path, timeout=0.0, poll=0.1):
    """Open ``path`` (created 0600) and take an exclusive ``fcntl.flock`` on it; returns the fd.

    timeout 0 = try once, None = wait forever. Returns None (the file closed again) if another
    process still holds the lock when the time is up. The kernel drops the lock when the fd is
    closed or its process dies. Also the controller's lock files (strackt_move.locks) use this.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


@contextlib.contextmanager
def lock(state_dir, env, timeout=0.0, poll=0.1):
    """Exclusive lock on {state_dir}/moves/{env}.lock (fcntl.flock).

    timeout 0 = try once. Raises RecordLocked naming the lock file if another process holds it.
    """
    ensure_dirs(state_dir)
    path = lock_path(state_dir, env)
    fd = flock_exclusive(path, timeout, poll)
    if fd is None:
        raise RecordLocked(
            "another strackt.move run holds the lock of env %s (%s); wait for it "
            "to end" % (env, path))
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, ("%d\n" % os.getpid()).encode())
        except OSError:
            pass
        yield path
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
