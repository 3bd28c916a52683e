# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Timestamps: the one format strackt.move writes (``YYYY-MM-DDTHH:MM:SSZ``, UTC) and the
conversions to and from nanoseconds since the epoch (what the servers' modules measure with).

Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import datetime

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: the same instant without separators, for names (move ids, run directories)
COMPACT_FORMAT = "%Y%m%dT%H%M%SZ"
_NS_PER_S = 1000000000


def utcnow() -> datetime.datetime:
    """Now, UTC, timezone-aware, to the second (what a record can hold)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_ts(dt: datetime.datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return dt.astimezone(datetime.timezone.utc).strftime(TS_FORMAT)


def compact_ts(dt: datetime.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of the (timezone-aware) instant ``dt``, for names."""
    if dt.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return dt.astimezone(datetime.timezone.utc).strftime(COMPACT_FORMAT)


def parse_ts(text: object) -> datetime.datetime:
    """The UTC instant of ``text``; ValueError naming the format for anything else."""
    try:
        dt = datetime.datetime.strptime(text, TS_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("not an ISO-8601 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ): %r" % (text,)) from None
    return dt.replace(tzinfo=datetime.timezone.utc)


def ts_from_ns(ns: int) -> str:
    """The timestamp of the second that holds ``ns`` (ns since the epoch)."""
    seconds = int(ns) // _NS_PER_S  # integer division: no float rounding into the next second
    return format_ts(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))


def ns_from_ts(text: str) -> int:
    """ns since the epoch at the start of the second ``text`` names."""
    return int(parse_ts(text).timestamp()) * _NS_PER_S


def seconds_since(text: str, now: datetime.datetime) -> float:
    """Seconds from the timestamp ``text`` to ``now`` (never negative)."""
    return max(0.0, (now - parse_ts(text)).total_seconds())
