"""A file cache like Django's FileBasedCache: one file per key, written by rename, culled by age."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .files import replace_file


class FileCache:
    def __init__(self, data_dir: Path, ttl_s: float) -> None:
        self.directory = data_dir / "cache"
        self.ttl_s = ttl_s

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.md5(key.encode()).hexdigest() + ".cache")

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        try:
            age = time.time() - path.stat().st_mtime
            if age > self.ttl_s:
                path.unlink()  # expired: gone on read, as Django's cache does
                return None
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def set(self, key: str, value: Any) -> None:
        replace_file(self._path(key), [json.dumps(value).encode()], durable=False)

    def cull(self, now: float | None = None) -> int:
        """Delete entries older than the TTL; return how many were deleted."""
        return cull_older_than(self.directory, "*.cache", self.ttl_s, now)


def cull_older_than(directory: Path, pattern: str, ttl_s: float, now: float | None = None) -> int:
    limit = (time.time() if now is None else now) - ttl_s
    deleted = 0
    for path in directory.glob(pattern):
        try:
            if path.stat().st_mtime < limit:
                os.unlink(path)
                deleted += 1
        except FileNotFoundError:  # culled or replaced by someone else meanwhile
            continue
    return deleted
