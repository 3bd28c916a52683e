"""Running host commands with errors that say what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class CommandError(RuntimeError):
    pass


def run(cmd: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), input=input, text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CommandError(
            f"{' '.join(cmd)} exited {result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result
