"""`python -m tests.faults [pytest args]`: run the fault suite on the testbed; the table of what
was tried and what survived (tests/faults/table.py) is printed at the end."""

from __future__ import annotations

import sys

import pytest


def main(argv: list[str]) -> int:
    paths = [] if any(a.startswith("tests/") for a in argv) else ["tests/faults"]
    return int(pytest.main([*paths, "-p", "no:cacheprovider", *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
