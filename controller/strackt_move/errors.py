"""How the controller reports a problem: what went wrong, and what to do next."""

from __future__ import annotations

from dataclasses import dataclass

from strackt_move.exit_codes import ExitCode


@dataclass
class MoveError(Exception):
    """A problem the operator must act on. ``next_step`` is always a concrete command or action."""

    code: ExitCode
    problem: str
    next_step: str

    def __str__(self) -> str:
        return f"{self.problem}\n  next: {self.next_step}"
