"""The exit codes of ``strackt-move``. Stable: scripts rely on them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``strackt-move`` process tells its caller."""

    #: the command did what it was asked (a move finished, a status was shown, a loop ended cleanly)
    OK = 0
    #: a stage failed; the record says which, ``resume`` retries it
    FAILED = 1
    #: the command line was wrong (argparse uses 2 as well)
    USAGE = 2
    #: preflight refused the move (target unreachable, no room, ...); nothing was changed
    REFUSED = 3
    #: the move is verified and waits at the confirmation gate (``confirm`` or ``rollback`` next)
    WAITING = 4
    #: another controller or sync loop holds this move's lock
    BUSY = 5
    #: there is no move in progress for this environment (``retire``: no retained copy to remove)
    NO_MOVE = 6
    #: the move is not in a state that allows this command (e.g. ``confirm`` before verify)
    WRONG_STATE = 7
    #: the controller was interrupted (SIGINT/SIGTERM); ``resume`` continues
    INTERRUPTED = 8


EXIT_CODE_HELP = """exit codes:
  0  done (move finished, command succeeded, sync loop ended cleanly)
  1  a stage failed; see `strackt-move status ENV`, then `strackt-move resume ENV`
  2  usage error
  3  refused by preflight; nothing was changed
  4  waiting for confirmation (`strackt-move confirm ENV` or `rollback ENV`)
  5  busy: another controller or sync loop holds the move's lock
  6  no move in progress for this environment (retire: no retained copy there)
  7  wrong state for this command (e.g. confirm before verify)
  8  interrupted; `strackt-move resume ENV` continues"""
