"""The command line: what the operator typed → which command runs → which exit code comes back."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from datetime import datetime, timezone
from types import FrameType
from typing import Any, Callable, Sequence

from ansible_collections.strackt.move.plugins.module_utils import move_status
from ansible_collections.strackt.move.plugins.module_utils.move_store import RECORD_STORE_ENV
from ansible_collections.strackt.move.plugins.module_utils.names import ENV_NAME_RULE, EnvNameError, validate_env_name

from strackt_move import __version__
from strackt_move.errors import MoveError
from strackt_move.exit_codes import EXIT_CODE_HELP, ExitCode
from strackt_move.playbook_run import AnsibleRunnerBackend, PlaybookRunner
from strackt_move.report.command import move_or_env
from strackt_move.settings import INVENTORY_ENV, STATE_DIR_ENV, Settings, resolve
from strackt_move.store import RecordStore
from strackt_move.sync_loop import LoopPolicy, SyncLoop

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SERVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def duration(text: str) -> float:
    """``300``, ``90s``, ``5m``, ``24h``, ``2d`` → seconds (argparse type)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration (e.g. 300, 90s, 5m, 24h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def env_name(text: str) -> str:
    """An env name becomes part of file names (record, locks, runs): checked before anything is
    touched, with the one env-name rule (``names.validate_env_name``)."""
    try:
        return validate_env_name(text)
    except EnvNameError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an env name ({ENV_NAME_RULE}); "
            "use a name from strackt_environments in the inventory") from None


def server_name(text: str) -> str:
    if not _SERVER.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an inventory host name")
    return text


def server_list(text: str) -> list[str]:
    """``srv2,srv3`` → ["srv2", "srv3"] (each an inventory host name)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no server (e.g. --to srv2,srv3)")
    return [server_name(n) for n in names]


def approved_plan(text: str) -> dict[str, str]:
    """``shop=srv2,notes=srv3`` → {"shop": "srv2", "notes": "srv3"} (each env once)."""
    plan: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        env, sep, target = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{item!r} is not ENV=SERVER (e.g. --approved-plan shop=srv2,notes=srv3)")
        env = env_name(env.strip())
        if env in plan:
            raise argparse.ArgumentTypeError(f"{env} is named twice in {text!r}")
        plan[env] = server_name(target.strip())
    return plan


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code is 2 = ExitCode.USAGE
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n  next: `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    # options accepted before or after the command (SUPPRESS: the sub-parser never clobbers)
    common = _Parser(add_help=False)
    common.add_argument("--state-dir", default=argparse.SUPPRESS,
                        help=f"the state directory: runs, locks, the evacuations' logs, and the move and evacuation "
                             f"records with the file store (env {STATE_DIR_ENV}; default $XDG_STATE_HOME/strackt-move or "
                             f"~/.local/state/strackt-move). {RECORD_STORE_ENV}=postgresql://USER@HOST/DB keeps "
                             "the records in PostgreSQL instead (docs/record-store.md)")
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS,
                        help=f"the inventory of your servers and envs (env {INVENTORY_ENV}, else ANSIBLE_INVENTORY); "
                             "needed by every command that reaches a server")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--stale-after", type=duration, default=argparse.SUPPRESS, metavar="DURATION",
                        help="flag moves waiting for confirmation longer than this (default "
                             f"{move_status.human_duration(move_status.DEFAULT_WAIT_WARN_S)})")

    parser = _Parser(
        prog="strackt-move",
        description="Move a running web-app environment to another server: "
                    "preflight → provision → deploy → sync → verify → (confirm) cutover.",
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("start", parents=[common], help="run a move up to the confirmation gate")
    p.add_argument("env", type=env_name)
    p.add_argument("--target", required=True, type=server_name, help="the server to move to")
    p.add_argument("--with-database", action="store_true",
                   help="carry the env's PostgreSQL database to the target too (logical replication, switched "
                        "inside the freeze); the default follows the env's database.move")

    p = sub.add_parser("confirm", parents=[common], help="switch over a verified, waiting move")
    p.add_argument("env", type=env_name)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.add_argument("--wait", action="store_true",
                   help="once switched, stay and finish the move as `finish --wait` does (by default confirm "
                        "returns once switched: the old server forwards stale traffic until `finish` ends it)")
    p.add_argument("--no-finish", action="store_true",
                   help="return once switched (the default; kept for scripts that ask for it)")

    p = sub.add_parser("finish", parents=[common],
                       help="end a switched move once stale traffic to the old server is measured gone")
    p.add_argument("env", nargs="?", type=env_name)
    p.add_argument("--wait", action="store_true",
                   help="look again until the move is finished (it never stops the forwarding early)")
    p.add_argument("--now", action="store_true",
                   help="finish now, whatever still arrives at the old server (says what still arrives); "
                        "within the DNS hold right after the switch it waits until resolvers' caches expired")
    p.add_argument("--due", action="store_true",
                   help="every switched move whose finish is due (for a systemd timer); no ENV")
    p.add_argument("--poll-max", type=duration, default=None, metavar="SECONDS",
                   help="with --wait, the longest time between two looks (default 300)")

    p = sub.add_parser("retire", parents=[common],
                       help="remove the stopped copy a finished move left on its old server (asks first)")
    p.add_argument("env", nargs="?", type=env_name)
    p.add_argument("--server", type=server_name, help="only the copy on this server (default: every retained copy)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.add_argument("--due", action="store_true",
                   help="every retained copy whose retention ended (for a systemd timer); no ENV")

    p = sub.add_parser("rollback", parents=[common], help="undo a move, before or after the switch-over")
    p.add_argument("env", type=env_name)

    p = sub.add_parser("resume", parents=[common], help="continue a move from its last completed step")
    p.add_argument("env", type=env_name)

    p = sub.add_parser("sync", parents=[common], help="one sync pass, or --loop: keep the target current")
    p.add_argument("env", type=env_name)
    p.add_argument("--loop", action="store_true", help="repeat until the move is confirmed or rolled back")
    p.add_argument("--interval", type=duration, default=300.0, metavar="SECONDS",
                   help="time between passes in the loop (default 300)")
    p.add_argument("--max-failures", type=int, default=None, metavar="N",
                   help="give up after N consecutive failed passes (default: never)")
    p.add_argument("--backoff-max", type=duration, default=None, metavar="SECONDS",
                   help="longest wait between retries after failures (default: the interval)")

    p = sub.add_parser("evacuate", parents=[common], help="move every env off a server (plan, prepare N at once, "
                                                         "switch one at a time)")
    p.add_argument("server", type=server_name, help="the server to empty")
    p.add_argument("--to", type=server_list, default=[], metavar="SRV,SRV",
                   help="the servers the envs may go to (default: every other server of the inventory)")
    p.add_argument("--parallel", type=positive_int, default=1, metavar="N",
                   help="moves prepared (preflight .. verify) at once (default 1); switch-overs are always one at a time")
    p.add_argument("--confirm", choices=("plan", "each"), default="plan",
                   help="confirm the plan once (default), or each switch-over")
    p.add_argument("--plan", action="store_true", help="show where each env would go, change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="confirm the plan without asking")
    p.add_argument("--approved-plan", type=approved_plan, metavar="ENV=SRV,...",
                   help="the plan as it was approved elsewhere (AWX's approval node): refuse, changing nothing, "
                        "if the plan differs")
    p.add_argument("--abort", action="store_true",
                   help="stop the evacuation: no new move, preparations stop at a safe point, a switch-over "
                        "under way completes")
    p.add_argument("--rollback", action="store_true", help="with --abort: also roll back every move not switched")
    p.add_argument("--with-database", action="store_true",
                   help="each env's PostgreSQL database running on the server moves with it (the plan counts its size "
                        "on the targets); a database there that cannot move stays, and the plan says so")

    p = sub.add_parser("status", parents=[common], help="where a move (or every move) is")
    p.add_argument("env", nargs="?", type=env_name)
    p.add_argument("--server", type=server_name, help="the evacuation of this server: every env's move")
    p.add_argument("--json", action="store_true", help="stable machine-readable output")

    p = sub.add_parser("list", parents=[common], help="the moves in progress")
    p.add_argument("--all", action="store_true", help="include finished and rolled-back moves")
    p.add_argument("--json", action="store_true", help="stable machine-readable output")

    p = sub.add_parser("report", parents=[common], help="how a move went: stages, sync passes, freeze, checks")
    p.add_argument("moves", nargs="*", type=move_or_env, metavar="ENV|MOVE_ID",
                   help="an env (its move in progress, else its latest) or a move id; several: one report")
    p.add_argument("--evacuation", type=server_name, metavar="SERVER[-YYYYMMDDTHHMMSSZ]",
                   help="instead of moves: the evacuation of SERVER (in progress, else its latest; or an archived "
                        "one by its name), one row per env, then each of its moves")
    p.add_argument("--load", metavar="FILE",
                   help='with --evacuation: failed requests and lost writes per env as a load check measured them '
                        '(JSON: {"ENV": {"failed_requests": N, "lost_writes": N}})')
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
    p.add_argument("--json", action="store_true", help="stable machine-readable output")
    return parser


def _print(line: str) -> None:
    print(line, flush=True)


def _install_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: stop cleanly (cancel the running playbook). Second: exit now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(int(ExitCode.INTERRUPTED))
        stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping after cleaning up (again to force)",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _ask(prompt: str) -> str:
    """The confirmation prompt; Ctrl-C or end of input answer "no"."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return input(prompt)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        return ""
    finally:
        signal.signal(signal.SIGINT, previous)


def run(argv: Sequence[str] | None = None,
        runner_factory: Callable[[Settings], PlaybookRunner] = AnsibleRunnerBackend,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        ask: Callable[[str], str] | None = None,
        stop: threading.Event | None = None) -> ExitCode:
    """Parse, run one command, map errors to exit codes. ``main`` wires the real world."""
    args = build_parser().parse_args(argv)
    opts = vars(args)
    settings = resolve(opts.get("state_dir"), opts.get("inventory"))
    stale_after = float(opts.get("stale_after", move_status.DEFAULT_WAIT_WARN_S))
    store = RecordStore(settings.state_dir, settings.record_store)
    stop = stop or threading.Event()
    runner: PlaybookRunner | None = None
    try:
        if args.command == "status" and getattr(args, "server", None) is not None:
            return _evacuation_status(args, settings, store)
        if args.command in ("status", "list"):
            return _status(args, settings, store, now(), stale_after)
        if args.command == "report":
            from strackt_move.evacuation import EvacuationStore
            from strackt_move.report import command as report

            return report.run(store, args.moves, args.html, args.json, now(), _print,
                              evacuation=args.evacuation, evacs=EvacuationStore(settings.state_dir, store), load_file=args.load)
        if args.command == "retire":
            _check_retire_args(args)
        settings.require_inventory()
        store.ensure()
        runner = runner_factory(settings)
        if args.command == "sync":
            backoff_max = args.backoff_max if args.backoff_max is not None else args.interval
            policy = LoopPolicy(interval_s=args.interval, backoff_initial_s=min(5.0, args.interval),
                                backoff_max_s=backoff_max, max_failures=args.max_failures, once=not args.loop)
            return SyncLoop(settings, store, runner, _print, policy=policy, stop=stop, now=now).run(args.env)
        if args.command == "evacuate":
            return _evacuate(args, settings, store, runner, stop, now, ask)
        if args.command == "retire":
            return _retire(args, settings, store, runner, stop, now, ask)
        from strackt_move.sequencer import Sequencer

        seq = Sequencer(settings, store, runner, _print, stop=stop, now=now, stale_after_s=stale_after,
                        verbose=bool(opts.get("verbose", False)))
        if args.command == "finish":
            return _finish(args, seq)
        if args.command == "start":
            return seq.start(args.env, args.target, move_database=True if args.with_database else None)
        if args.command == "resume":
            return seq.resume(args.env)
        if args.command == "confirm":
            if args.wait and args.no_finish:
                raise MoveError(ExitCode.USAGE, "confirm --wait and --no-finish contradict each other",
                                "give one of them")
            seq.finish_wait = args.wait
            return seq.confirm(args.env, args.yes, ask, finish=args.wait)
        if args.command == "rollback":
            return seq.rollback(args.env)
        raise AssertionError(args.command)  # pragma: no cover
    except MoveError as err:
        print(f"strackt-move: error: {err.problem}\n  next: {err.next_step}", file=sys.stderr, flush=True)
        return err.code
    finally:
        close = getattr(runner, "close", None)  # the real backend: the command's ssh masters end here
        if close is not None:
            close()
        store.close()


def _evacuate(args: argparse.Namespace, settings: Settings, store: RecordStore, runner: PlaybookRunner,
              stop: threading.Event, now: Callable[[], datetime], ask: Callable[[str], str] | None) -> ExitCode:
    from strackt_move.evacuator import EvacuationRequest, Evacuator

    if args.rollback and not args.abort:
        raise MoveError(ExitCode.USAGE, "--rollback goes with --abort", f"`strackt-move evacuate {args.server} --abort --rollback`")
    if args.with_database and args.abort:
        raise MoveError(ExitCode.USAGE, "--with-database plans an evacuation; --abort stops one as it was planned",
                        f"`strackt-move evacuate {args.server} --abort` (its moves keep their databases' plan)")
    evacuator = Evacuator(settings, store, runner, _print, stop=stop, now=now, ask=ask)
    if args.abort:
        return evacuator.abort(args.server, args.rollback)
    return evacuator.evacuate(EvacuationRequest(server=args.server, targets=args.to, parallel=args.parallel,
                                                confirm=args.confirm, plan_only=args.plan, yes=args.yes,
                                                approved=args.approved_plan, with_database=args.with_database))


def _check_retire_args(args: argparse.Namespace) -> None:
    if args.due == (args.env is not None):
        raise MoveError(ExitCode.USAGE, "retire needs an env, or --due (every retained copy whose retention ended)",
                        "`strackt-move retire ENV [--server SERVER] [--yes]` or `strackt-move retire --due`")
    if args.due and args.server:
        raise MoveError(ExitCode.USAGE, "retire --due looks at every env's due copies: --server needs an env",
                        "`strackt-move retire ENV --server SERVER`")


def _retire(args: argparse.Namespace, settings: Settings, store: RecordStore, runner: PlaybookRunner,
            stop: threading.Event, now: Callable[[], datetime], ask: Callable[[str], str] | None) -> ExitCode:
    from strackt_move.retirer import Retirer

    retirer = Retirer(settings, store, runner, _print, now, ask=ask, stop=stop)
    return retirer.retire_due() if args.due else retirer.retire(args.env, args.server, args.yes)


def _evacuation_status(args: argparse.Namespace, settings: Settings, store: RecordStore) -> ExitCode:
    from strackt_move.evacuation import EvacuationStore
    from strackt_move.evacuator import evacuation_rows

    evacs = EvacuationStore(settings.state_dir, store)
    evac = evacs.load(args.server)
    if evac is None:
        print(f"strackt-move: error: no evacuation of {args.server} is in progress\n"
              f"  next: `strackt-move evacuate {args.server} --plan`", file=sys.stderr)
        return ExitCode.NO_MOVE
    rows = evacuation_rows(evacs, store, args.server)
    if args.json:
        print(json.dumps({"evacuation": evac.to_dict(), "moves": rows}, indent=2, sort_keys=True))
        return ExitCode.OK
    done = sum(1 for r in rows if r["phase"] in ("done", "rolled_back"))
    _print(f"evacuation of {evac.server} to {', '.join(evac.targets)} (started {evac.started_at}, "
           f"{evac.parallel} at once, confirm {evac.confirm}"
           + (", with the databases" if evac.with_database else "") + f"): {done}/{len(rows)} ended"
           + ("  [abort requested]" if evacs.abort_requested(args.server) else ""))
    width = max([len(r["env"]) for r in rows] + [3])
    for r in rows:
        where = f"{r['stage']} ({r['state']})" if r["stage"] else ""
        database = "  +database" if r["with_database"] else f"  database stays on {evac.server}" if r["database_stays"] else ""
        _print(f"  {r['env'].ljust(width)}  → {r['target']:<10} {r['phase']:<13} {where}  {r['move_id'] or ''}".rstrip()
               + database)
    for warning in evac.warnings:
        _print(f"  warning: {warning}")
    return ExitCode.OK


def _finish(args: argparse.Namespace, seq: Any) -> ExitCode:
    if args.due == (args.env is not None):
        raise MoveError(ExitCode.USAGE, "finish needs an env, or --due (every switched move whose finish is due)",
                        "`strackt-move finish ENV [--wait] [--now]` or `strackt-move finish --due`")
    if args.due and (args.wait or args.now):
        raise MoveError(ExitCode.USAGE, "finish --due looks once at each due move: --wait and --now need an env",
                        "`strackt-move finish ENV --wait` or `strackt-move finish ENV --now`")
    if args.wait and args.now:
        raise MoveError(ExitCode.USAGE, "finish --now does not wait: give --wait or --now", "drop one of them")
    seq.finish_wait, seq.finish_now = args.wait, args.now
    if args.poll_max is not None:
        seq.finish_poll_max_s = args.poll_max
    return seq.finish_due() if args.due else seq.finish(args.env)


def _status(args: argparse.Namespace, settings: Settings, store: RecordStore, now: datetime,
            stale_after: float) -> ExitCode:
    from strackt_move.status_view import StatusView, render_detail, render_retained, render_table

    view = StatusView(store, settings.locks_dir, now, stale_after)
    env = getattr(args, "env", None)
    moves, errors = view.collect(env, include_history=getattr(args, "all", False))
    retained = view.retained(env, errors)
    if args.json:
        print(json.dumps(view.document(moves, errors, retained), indent=2, sort_keys=True))
    elif args.command == "status" and env is not None:
        for line in (render_detail(moves[0]) if moves else []):
            _print(line)
    elif args.command == "status":
        for m in moves:
            for line in render_detail(m):
                _print(line)
            _print("")
        if not moves:
            _print("no move in progress")
    else:
        for line in render_table(moves):
            _print(line)
    if not args.json:
        for line in render_retained(retained):
            _print(line)
    for e in errors:
        print(f"strackt-move: error: {e['env']}: {e['error']}", file=sys.stderr)
    if env is not None and not moves:
        if not args.json:
            print(f"strackt-move: error: no move of {env} is in progress or archived\n"
                  f"  next: `strackt-move start {env} --target SERVER`", file=sys.stderr)
        return ExitCode.NO_MOVE
    if any(m["stale"] for m in moves) and not args.json:
        print("strackt-move: warning: a move has waited too long for confirmation (see above)", file=sys.stderr)
    return ExitCode.FAILED if errors else ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the controller and its runs create (records, runner artifacts with the playbooks'
    # output, lock files) is for the operator only, whatever the caller's umask.
    os.umask(0o077)
    stop = threading.Event()
    _install_signals(stop)
    ask = _ask if sys.stdin.isatty() else None
    try:
        return int(run(argv, ask=ask, stop=stop))
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
