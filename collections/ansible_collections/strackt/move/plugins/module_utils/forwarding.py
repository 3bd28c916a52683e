# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long the old server forwards after a switch-over: the one rule for "may the move finish now".

Resolvers keep old answers longer than the TTL (2 % of users still on the old address 15 minutes
after a switch with a 20 s TTL, Flavel et al. 2014; RFC 8767 lets a resolver serve stale answers
for days), so the finish is decided from the stale traffic measured on the old server
(``stale_traffic``), not from the TTL alone. A move finishes when

- it has forwarded at least ``min`` (default 1 h) AND no stale request came for ``quiet``
  (default 15 min), or
- it has forwarded ``max`` (default 72 h), whatever still arrives, or
- the operator says so (``--now``),

and never before resolvers' caches of the old address can have expired (the DNS hold). The
finish role decides with ``decide``; the controller schedules its next look with the same
function (``not_before``). Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing

from ansible_collections.strackt.move.plugins.module_utils import clock

DEFAULT_MIN_S = 3600
DEFAULT_QUIET_S = 900
DEFAULT_MAX_S = 72 * 3600
#: seconds added to the DNS hold (the last cache of the old address expired)
DNS_MARGIN_S = 2
KEYS = ("min", "quiet", "max")

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d)?\s*$")
_UNIT_S = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: typing.Any) -> int:
    """Seconds of ``value``: a whole number of seconds, or ``<n>s|m|min|h|d`` (``15m``, ``72h``)."""
    if isinstance(value, bool):
        raise ValueError("%r is not a duration" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("%r is negative" % (value,))
        return value
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("%r is not a duration: give seconds or a number with s, m, h or d (such as 15m, 72h)"
                         % (value,))
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@dataclasses.dataclass(frozen=True)
class Settings:
    """An env's ``forwarding: {min, quiet, max}``, in seconds."""

    min_s: int = DEFAULT_MIN_S
    quiet_s: int = DEFAULT_QUIET_S
    max_s: int = DEFAULT_MAX_S

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: typing.Mapping[str, typing.Any]) -> "Settings":
        return cls(**{k: int(data[k]) for k in ("min_s", "quiet_s", "max_s")})


def parse_settings(value: typing.Any) -> tuple[Settings, list[tuple[str, str]]]:
    """The env definition's ``forwarding`` (None: the defaults) and its problems as
    ``(key, what is wrong; what to do)``."""
    problems: list[tuple[str, str]] = []
    if value is None:
        return Settings(), problems
    if not isinstance(value, typing.Mapping):
        return Settings(), [("forwarding", "must be a mapping such as {min: 1h, quiet: 15m, max: 72h}")]
    for key in sorted(set(value) - set(KEYS), key=str):
        problems.append(("forwarding.%s" % key, "unknown key: use min, quiet and max"))
    found = {"min": DEFAULT_MIN_S, "quiet": DEFAULT_QUIET_S, "max": DEFAULT_MAX_S}
    for key in KEYS:
        if key in value:
            try:
                found[key] = parse_duration(value[key])
            except ValueError as exc:
                problems.append(("forwarding.%s" % key, str(exc)))
    if found["max"] <= 0:
        problems.append(("forwarding.max", "must be more than 0: the old server forwards at most this long"))
    for key in ("min", "quiet"):
        if found[key] > found["max"]:
            problems.append(("forwarding.%s" % key, "%ds is more than max (%ds): lower it or raise max"
                             % (found[key], found["max"])))
    return Settings(found["min"], found["quiet"], found["max"]), problems


def dns_caches_expire_at(switched_at: str, created_at: str, previous_ttl: int, move_ttl: int) -> datetime.datetime:
    """When every resolver cache of the old address has expired, if resolvers kept the TTL: caches
    filled before preflight lowered the TTL hold it ``previous_ttl`` from then (≈ the record's
    creation), later ones ``move_ttl`` from the switch."""
    until = max(clock.parse_ts(switched_at) + datetime.timedelta(seconds=int(move_ttl)),
                clock.parse_ts(created_at) + datetime.timedelta(seconds=int(previous_ttl)))
    return until + datetime.timedelta(seconds=DNS_MARGIN_S)


@dataclasses.dataclass(frozen=True)
class Decision:
    finish: bool
    why: str  # one line for the operator: why it finishes, or what it waits for
    not_before: datetime.datetime | None  # when it may finish at the earliest (None: now)


def _human(seconds: float) -> str:
    seconds = int(max(0, round(seconds)))
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def arriving(stale: typing.Mapping[str, typing.Any] | None) -> str:
    """What is still arriving, in words (from a measurement's dict)."""
    if not stale:
        return "stale traffic not measured yet"
    if not stale.get("log_found", True):
        return "stale traffic cannot be measured (no access log of the env's site on the old server)"
    per_minute = list(stale.get("per_minute") or [])
    last = per_minute[-1] if per_minute else 0
    seen = stale.get("last_seen") or "never"
    return "%d stale request(s) since the release, %d in the last minute, last seen %s" % (
        int(stale.get("total") or 0), last, seen)


def decide(now: datetime.datetime, switched_at: str, settings: Settings,
           stale: typing.Mapping[str, typing.Any] | None, dns_until: datetime.datetime | None = None,
           operator_now: bool = False) -> Decision:
    """May the switched move finish at ``now``? ``stale`` is the latest measurement
    (``stale_traffic.Measurement.to_dict()``); None: not measured yet (it may not finish then,
    except at ``max`` or by the operator's word)."""
    switched = clock.parse_ts(switched_at)
    elapsed = (now - switched).total_seconds()
    hard_end = switched + datetime.timedelta(seconds=settings.max_s)
    # before anything else, the operator's --now included: clients that keep to the TTL may
    # still use the old address until then
    if dns_until is not None and now < dns_until:
        return Decision(False, "resolvers' caches of the old address may hold it until %s" % clock.format_ts(dns_until),
                        dns_until)
    if operator_now:
        return Decision(True, "the operator's --now after %s of forwarding (%s)" % (_human(elapsed), arriving(stale)),
                        None)
    if elapsed >= settings.max_s:
        return Decision(True, "forwarded for %s, the maximum (forwarding.max %s); %s"
                        % (_human(elapsed), _human(settings.max_s), arriving(stale)), None)
    if stale is None or not stale.get("log_found", True):
        return Decision(False, "%s; forwarding until %s (forwarding.max), or `finish --now`"
                        % (arriving(stale), clock.format_ts(hard_end)),
                        None if stale is None else hard_end)
    last_seen = stale.get("last_seen")
    quiet_since = clock.parse_ts(last_seen) if last_seen else switched
    quiet_for = (now - quiet_since).total_seconds()
    min_until = switched + datetime.timedelta(seconds=settings.min_s)
    quiet_until = quiet_since + datetime.timedelta(seconds=settings.quiet_s)
    if elapsed >= settings.min_s and quiet_for >= settings.quiet_s:
        return Decision(True, "no stale request for %s (forwarding.quiet %s) after %s of forwarding (forwarding.min %s)"
                        % (_human(quiet_for), _human(settings.quiet_s), _human(elapsed), _human(settings.min_s)), None)
    waits = []
    if elapsed < settings.min_s:
        waits.append("forwarding.min %s (until %s)" % (_human(settings.min_s), clock.format_ts(min_until)))
    if quiet_for < settings.quiet_s:
        waits.append("%s without a stale request (forwarding.quiet; quiet for %s so far)"
                     % (_human(settings.quiet_s), _human(quiet_for)))
    not_before = min(max(min_until, quiet_until), hard_end)
    return Decision(False, "waiting for %s; %s; at the latest %s (forwarding.max)"
                    % (" and ".join(waits), arriving(stale), clock.format_ts(hard_end)), not_before)
