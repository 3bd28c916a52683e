"""The ``report`` command: find the moves named on the command line, then print or write them."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from ansible_collections.strackt.move.plugins.module_utils import fileio, names

from strackt_move.errors import MoveError
from strackt_move.evacuation import EvacuationStore
from strackt_move.exit_codes import ExitCode
from strackt_move.report import build_reports, document, text
from strackt_move.report import evacuation as evacuation_report
from strackt_move.store import RecordStore, record_dict

#: a move id is the env name and the UTC second it started (``move_record.new_move_id``); env
#: names are lower case, so a name ending like this is never an env
_MOVE_ID = re.compile(r"^(?P<env>.+)-\d{8}T\d{6}Z$")


def move_or_env(text_: str) -> str:
    """argparse type: an env name or a move id (both become file names: checked first)."""
    for kind in ("env", "move_id"):
        try:
            return str(names.check_name(kind, text_))
        except ValueError:
            pass
    import argparse

    raise argparse.ArgumentTypeError(
        f"{text_!r} is neither an env name nor a move id (an env name is {names.ENV_NAME_RULE}; "
        "a move id is an env name, '-' and a UTC time YYYYMMDDTHHMMSSZ); `strackt-move list --all` shows both")


def find(store: RecordStore, name: str) -> tuple[dict[str, Any], bool]:
    """ENV: its move in progress, else its latest archived move. MOVE_ID: that move, active or archived.
    Returns (record as a dict, in progress)."""
    match = _MOVE_ID.match(name)
    if match is None:
        active = store.load(name)
        if active is not None:
            return record_dict(active), True
        ids = [i for i in store.history_ids() if (m := _MOVE_ID.match(i)) and m.group("env") == name]
        if ids:
            old = store.load_history(ids[-1])
            if old is not None:
                return record_dict(old), False
        raise MoveError(ExitCode.NO_MOVE, f"no move of {name} is in progress or archived",
                        "`strackt-move list --all` shows the moves there are")
    active = store.load(match.group("env"))
    if active is not None and active.move_id == name:
        return record_dict(active), True
    old = store.load_history(name)
    if old is not None:
        return record_dict(old), False
    raise MoveError(ExitCode.NO_MOVE, f"no move {name} is in progress or archived",
                    "`strackt-move list --all` shows the moves there are")


def _check_html_path(path: Path) -> None:
    """Refuse before any work: the page goes to a file in an existing directory."""
    if path.is_dir():
        raise MoveError(ExitCode.USAGE, f"--html {path} is a directory", "name a file, e.g. --html report.html")
    if not path.parent.is_dir():
        raise MoveError(ExitCode.USAGE, f"--html {path}: the directory {path.parent} does not exist",
                        "create it first or name a file in an existing directory")


def read_load(path: str) -> dict[str, dict[str, int]]:
    """``--load FILE``: what a load check measured per env, checked before any work."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise MoveError(ExitCode.USAGE, f"--load {path} cannot be read: {exc.strerror}",
                        "name the JSON file your load check wrote") from None
    except ValueError as exc:
        raise MoveError(ExitCode.USAGE, f"--load {path} is not JSON: {exc}",
                        'write {"ENV": {"failed_requests": N, "lost_writes": N}, ...}') from None
    try:
        return evacuation_report.check_load(data, f"--load {path}")
    except ValueError as exc:
        raise MoveError(ExitCode.USAGE, str(exc),
                        'write {"ENV": {"failed_requests": N, "lost_writes": N}, ...}') from None


def run(store: RecordStore, names: Sequence[str], html_file: str | None, as_json: bool,
        now: datetime, out: Callable[[str], None], evacuation: str | None = None,
        evacs: EvacuationStore | None = None, load_file: str | None = None) -> ExitCode:
    """Several names make one report with a row per move; ``evacuation`` (a server, or an archived
    evacuation's name) makes the evacuation's report: a row per env, then each of its moves."""
    if evacuation is not None and names:
        raise MoveError(ExitCode.USAGE, f"name moves or --evacuation, not both ({', '.join(names)} and --evacuation {evacuation})",
                        "`strackt-move report --evacuation SERVER` already reports each of its moves")
    if evacuation is None and not names:
        raise MoveError(ExitCode.USAGE, "report needs an env, a move id or --evacuation SERVER",
                        "`strackt-move list --all` shows the moves there are")
    if load_file is not None and evacuation is None:
        raise MoveError(ExitCode.USAGE, "--load goes with --evacuation",
                        "`strackt-move report --evacuation SERVER --load FILE`")
    path = Path(html_file) if html_file else None
    if path is not None:
        _check_html_path(path)
    load = read_load(load_file) if load_file is not None else None
    evac_report = None
    if evacuation is not None:
        if evacs is None:
            raise ValueError("--evacuation needs the evacuation store")
        found, running = evacuation_report.find(evacs, evacuation)
        evac_report, reports = evacuation_report.build_evacuation(found, running, store, now, load)
    else:
        reports = build_reports([find(store, n) for n in names], now)
    if path is not None:
        from strackt_move.report import html  # jinja2 and the page's assets: only when asked

        # 0600, like everything the controller writes
        fileio.atomic_write(str(path), html.render(reports, now, evacuation=evac_report))
    if as_json:
        out(json.dumps(document(reports, now, evacuation=evac_report), indent=2, sort_keys=True))
        return ExitCode.OK
    lines = text.render_evacuation(evac_report) + [""] if evac_report is not None else []
    for line in lines + text.render(reports):
        out(line)
    if path is not None:
        out("")
        out(f"report page written to {path}")
    return ExitCode.OK
