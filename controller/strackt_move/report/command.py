"""The ``report`` command: find the moves named on the command line, then print or write them."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from ansible_collections.strackt.move.plugins.module_utils import fileio, names

from strackt_move.errors import MoveError
from strackt_move.exit_codes import ExitCode
from strackt_move.report import build_reports, document, text
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


def run(store: RecordStore, names: Sequence[str], html_file: str | None, as_json: bool,
        now: datetime, out: Callable[[str], None]) -> ExitCode:
    """Several names make one report with a row per move (an evacuation's envs)."""
    path = Path(html_file) if html_file else None
    if path is not None:
        _check_html_path(path)
    reports = build_reports([find(store, n) for n in names], now)
    if path is not None:
        from strackt_move.report import html  # jinja2 and the page's assets: only when asked

        fileio.atomic_write(str(path), html.render(reports, now))  # 0600, like everything the controller writes
    if as_json:
        out(json.dumps(document(reports, now), indent=2, sort_keys=True))
        return ExitCode.OK
    for line in text.render(reports):
        out(line)
    if path is not None:
        out("")
        out(f"report page written to {path}")
    return ExitCode.OK
