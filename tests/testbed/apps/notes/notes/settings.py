"""Settings, all from the environment the platform gives every process."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(RuntimeError):
    pass


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number of seconds, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: str
    allowed_hosts: tuple[str, ...]
    cache_ttl_s: float
    session_ttl_s: float


def load(*, web: bool = False) -> Settings:
    """The worker and the timer job need no secret key; the web process does."""
    return Settings(
        data_dir=Path(_required("DATA_DIR")),
        database_url=_required("DATABASE_URL"),
        secret_key=_required("NOTES_SECRET_KEY") if web else os.environ.get("NOTES_SECRET_KEY", ""),
        allowed_hosts=tuple(h.strip().lower() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()),
        cache_ttl_s=_seconds("NOTES_CACHE_TTL", 20.0),
        session_ttl_s=_seconds("NOTES_SESSION_TTL", 600.0),
    )
