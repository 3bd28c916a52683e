"""Chunked uploads (Dropzone/Resumable style): parts on disk, assembled when the last one arrives."""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import fsync_dir, replace_file

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_CHUNKS = 10_000


@dataclass(frozen=True)
class Assembled:
    size: int
    sha256: str


class UploadStore:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "uploads"

    def final_path(self, upload_id: str) -> Path:
        return self.directory / upload_id

    def part_path(self, upload_id: str, index: int) -> Path:
        return self.directory / f"{upload_id}.part-{index}"

    def save_part(self, upload_id: str, index: int, data: bytes) -> None:
        replace_file(self.part_path(upload_id, index), [data], durable=True)

    def _lock(self) -> int:
        # One assembly at a time per server; the directory itself is the lock (no lock files).
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def assemble(self, upload_id: str, count: int) -> Assembled | None:
        """The final file once every part 0..count-1 is there (assembling it if needed), else None.

        Idempotent: a repeated last chunk finds the final file and reports it."""
        fd = self._lock()
        try:
            final = self.final_path(upload_id)
            if not final.exists():
                parts = [self.part_path(upload_id, i) for i in range(count)]
                if not all(p.exists() for p in parts):
                    return None
                replace_file(final, _read_all(parts), durable=True)
            return Assembled(final.stat().st_size, file_sha256(final))
        finally:
            os.close(fd)

    def delete_parts(self, upload_id: str, count: int) -> None:
        for i in range(count):
            try:
                self.part_path(upload_id, i).unlink()
            except FileNotFoundError:
                pass
        fsync_dir(self.directory)


def _read_all(parts: list[Path]) -> Iterator[bytes]:
    for part in parts:
        with open(part, "rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
