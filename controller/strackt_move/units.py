"""Human-readable numbers: bytes, durations, rates."""

from __future__ import annotations

# durations are written in the status summary too: one formatter, in move_status
from ansible_collections.strackt.move.plugins.module_utils.move_status import human_duration

__all__ = ["human_bytes", "human_duration", "human_rate"]


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def human_rate(bytes_: float | int | None, seconds: float | int | None) -> str:
    if bytes_ is None or not seconds or seconds <= 0:
        return "?"
    return f"{human_bytes(float(bytes_) / float(seconds))}/s"
