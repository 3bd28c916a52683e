# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stale traffic: the requests the old server still takes after a switch-over, read from the
env site's access log.

Every request that reaches the old server after the release came with an old DNS answer (a
resolver that keeps the old address longer than the TTL, a client that resolved once). Caddy
logs each one as a JSON line in ``/var/log/caddy/strackt-<env>.access.log`` and rolls the file
itself (``strackt-<env>.access-<time>.log[.gz]`` next to it). ``measure`` counts them since the
release: the total, the last one, and requests per minute over the last minutes.

Stdlib only: the controller imports this too (through ``forwarding``).
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import gzip
import json
import os
import typing
import zlib

from ansible_collections.strackt.move.plugins.module_utils import clock

#: where Caddy writes each env site's access log (the provision template names it from here)
ACCESS_LOG_DIR = "/var/log/caddy"
#: requests per minute are counted over this many last minutes
DEFAULT_MINUTES = 15
#: what Caddy 2.6 names its access loggers (``http.log.access`` and ``http.log.access.log0`` ...)
ACCESS_LOGGER_PREFIX = "http.log.access"


def access_log_path(env: str, log_dir: str = ACCESS_LOG_DIR) -> str:
    return os.path.join(log_dir, "strackt-%s.access.log" % env)


def log_files(path: str) -> list[str]:
    """The live log and the files Caddy rolled it into (``<stem>-<time>.log``, maybe ``.gz``)."""
    stem = path[:-len(".log")] if path.endswith(".log") else path
    rolled = sorted(glob.glob(glob.escape(stem) + "-*.log") + glob.glob(glob.escape(stem) + "-*.log.gz"))
    return rolled + ([path] if os.path.exists(path) else [])


@dataclasses.dataclass(frozen=True)
class Request:
    at: float  # seconds since the epoch (Caddy's ``ts``)
    remote_ip: str


def parse_line(line: str) -> Request | None:
    """One access log line, or None for anything that is not a request Caddy logged (other
    loggers, a line cut by a roll, garbage)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not str(entry.get("logger", "")).startswith(ACCESS_LOGGER_PREFIX):
        return None
    ts = entry.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    request = entry.get("request")
    remote = request.get("remote_ip", "") if isinstance(request, dict) else ""
    return Request(at=float(ts), remote_ip=str(remote))


def is_visitor(request: Request) -> bool:
    """Loopback requests come from the server itself (a check run there), not from a visitor."""
    return not (request.remote_ip.startswith("127.") or request.remote_ip == "::1")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What the old server took since ``since`` (the release), as of ``measured_at``."""

    measured_at: str
    since: str
    total: int
    last_seen: str | None
    per_minute: tuple[int, ...]  # oldest first; the last entry is the minute up to measured_at
    log_found: bool
    skipped_lines: int = 0

    def to_dict(self) -> dict[str, typing.Any]:
        out = dataclasses.asdict(self)
        out["per_minute"] = list(self.per_minute)
        return out


def _lines(path: str) -> typing.Iterator[str]:
    opener: typing.Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        yield from handle


def count(requests: typing.Iterable[Request | None], since_s: float, now_s: float,
          minutes: int = DEFAULT_MINUTES) -> tuple[int, float | None, list[int], int]:
    """(total, last seen, per minute, skipped) of the visitors' requests in [since_s, now_s]."""
    total, last, skipped = 0, None, 0
    per_minute = [0] * minutes
    for request in requests:
        if request is None:
            skipped += 1
            continue
        if request.at < since_s or request.at > now_s or not is_visitor(request):
            continue
        total += 1
        last = request.at if last is None else max(last, request.at)
        age_minutes = int((now_s - request.at) // 60)
        if age_minutes < minutes:
            per_minute[minutes - 1 - age_minutes] += 1
    return total, last, per_minute, skipped


def _modified_since(path: str, since_s: float) -> bool:
    try:
        return os.path.getmtime(path) >= since_s
    except OSError:  # rolled away or removed since it was listed
        return False


def site_logs_to(site_file: str | None, log_path: str) -> bool:
    """Whether the site file names ``log_path`` as its access log (False: no such file)."""
    if not site_file:
        return False
    try:
        with open(site_file, encoding="utf-8", errors="replace") as f:
            return any(line.split()[:3] == ["output", "file", log_path] for line in f)
    except OSError:
        return False


def measure(path: str, since_s: float, now_s: float, minutes: int = DEFAULT_MINUTES,
            configured: bool = False) -> Measurement:
    """Read the env site's access log (and its rolled files still holding lines since ``since_s``).
    A file that cannot be read to its end (Caddy still compressing a rolled one, or gone) counts
    as one skipped line, not a failed look. ``configured``: the site logs to ``path`` (Caddy
    creates it at the first request, so none missing it means none came)."""
    files = [f for f in log_files(path) if _modified_since(f, since_s)]

    def requests() -> typing.Iterator[Request | None]:
        for name in files:
            try:
                for line in _lines(name):
                    if line.strip():
                        yield parse_line(line)
            except (OSError, EOFError, zlib.error):
                yield None

    total, last, per_minute, skipped = count(requests(), since_s, now_s, minutes)
    stamp = clock.ts_from_ns(int(now_s * 1e9))
    return Measurement(
        measured_at=stamp,
        since=clock.ts_from_ns(int(since_s * 1e9)),
        total=total,
        last_seen=clock.ts_from_ns(int(last * 1e9)) if last is not None else None,
        per_minute=tuple(per_minute),
        log_found=configured or os.path.exists(path) or bool(log_files(path)),
        skipped_lines=skipped,
    )


def on_clock(figures: typing.Mapping[str, typing.Any], now: datetime.datetime) -> dict[str, typing.Any]:
    """A measurement (``Measurement.to_dict()``) taken on the old server, put on the clock of
    ``now`` (the control node's, which the finish decision uses): its times are shifted by the
    difference between the two clocks, taken as ``now - measured_at``. Recorded right after the
    measurement, the few seconds between make requests look newer, never older: a server whose
    clock is behind cannot make live traffic look quiet and end the forwarding early."""
    out = dict(figures)
    measured_at = out.get("measured_at")
    if not measured_at:
        return out
    offset = now - clock.parse_ts(measured_at)
    for key in ("measured_at", "since", "last_seen"):
        if out.get(key):
            out[key] = clock.format_ts(clock.parse_ts(out[key]) + offset)
    return out
