"""Human-readable numbers: bytes, durations, rates."""

from __future__ import annotations


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def human_duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "?"
    s = float(seconds)
    if s < 0:
        s = 0.0
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def human_rate(bytes_: float | int | None, seconds: float | int | None) -> str:
    if bytes_ is None or not seconds or seconds <= 0:
        return "?"
    return f"{human_bytes(float(bytes_) / float(seconds))}/s"
