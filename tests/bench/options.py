"""The benchmark's options: the reference environment, the client's rates, how often to move."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from . import envs

DEFAULT_ENV = "shop"

# The reference environment of issue 5.
FULL = dict(files=20_000, megabytes=500, writes_per_s=20.0, reads_per_s=50.0, runs=3,
            scaling=(20_000, 100_000, 200_000, 1_000_000), lag_window_s=10.0)
# --quick: small enough for `make test` (one move, the naive one, one scaling point: minutes;
# only its correctness figures can fail it, never a timing).
QUICK = dict(files=500, megabytes=5, writes_per_s=5.0, reads_per_s=10.0, runs=1,
             scaling=(1_000,), lag_window_s=3.0)
SCALING_CHANGED = 100  # files changed before the final pass of a scaling move


@dataclass(frozen=True)
class Options:
    quick: bool
    output: str
    files: int
    megabytes: float
    writes_per_s: float
    reads_per_s: float
    runs: int
    scaling: tuple[int, ...]
    scaling_changed: int
    keep_testbed: bool
    env: str = DEFAULT_ENV
    with_database: bool = False  # the env's PostgreSQL database moves too (issue 15)
    lag_window_s: float = 10.0  # how long the sync-lag probe waits for its file on the target


def parse(argv: list[str] | None = None, known_envs: Sequence[str] | None = None) -> Options:
    """The options; `known_envs` (default: every env of the testbed inventory) are what --env takes."""
    if known_envs is None:
        known_envs = list(envs.known_definitions())
    p = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Move an env of the testbed srv1 -> srv2 while a client writes and "
                    "reads, and compare with the naive stop-copy-start. Testbed index from "
                    "STRACKT_TESTBED_INDEX (default 0).")
    p.add_argument("--env", default=DEFAULT_ENV, metavar="NAME",
                   help=f"the env to move, one of the testbed inventory's: {', '.join(known_envs)} "
                        f"(default {DEFAULT_ENV})")
    p.add_argument("--quick", action="store_true", help="small trees and one run (CI smoke test)")
    p.add_argument("--output", default="bench-results.json", help="where to write the JSON results")
    p.add_argument("--files", type=int, help=f"files in the reference data (default {FULL['files']})")
    p.add_argument("--megabytes", type=float, help=f"size of the reference data (default {FULL['megabytes']})")
    p.add_argument("--writes-per-s", type=float, help=f"client writes per second (default {FULL['writes_per_s']})")
    p.add_argument("--reads-per-s", type=float, help=f"client reads per second (default {FULL['reads_per_s']})")
    p.add_argument("--runs", type=int, help="moves to take the median freeze of (default 3; --quick 1)")
    p.add_argument("--scaling", help="comma-separated tree sizes for the final-sync series "
                                     "(default 20000,100000,200000,1000000; --quick 1000; '' to skip)")
    p.add_argument("--with-database", action="store_true",
                   help="move the env's PostgreSQL database with it (strackt-move start --with-database): "
                        "adds the replication lag before the freeze, the freeze's database part and "
                        "every table's row count and checksum on both sides")
    p.add_argument("--keep-testbed", action="store_true",
                   help="leave a testbed this run booted up at the end")
    a = p.parse_args(argv)
    if a.env not in known_envs:
        p.error(f"argument --env: no env {a.env!r} in the testbed inventory; "
                f"choose one of: {', '.join(known_envs)}")
    base = QUICK if a.quick else FULL
    scaling = base["scaling"] if a.scaling is None else tuple(int(x) for x in a.scaling.split(",") if x.strip())
    opts = Options(
        quick=a.quick, output=a.output,
        files=a.files if a.files is not None else base["files"],
        megabytes=a.megabytes if a.megabytes is not None else base["megabytes"],
        writes_per_s=a.writes_per_s if a.writes_per_s is not None else base["writes_per_s"],
        reads_per_s=a.reads_per_s if a.reads_per_s is not None else base["reads_per_s"],
        runs=a.runs if a.runs is not None else base["runs"],
        scaling=scaling, scaling_changed=SCALING_CHANGED, keep_testbed=a.keep_testbed, env=a.env,
        with_database=a.with_database, lag_window_s=base["lag_window_s"])
    if opts.files < 1 or opts.megabytes <= 0 or opts.runs < 1 or opts.writes_per_s < 0 or opts.reads_per_s < 0:
        p.error("--files, --megabytes and --runs must be positive, rates not negative")
    return opts
