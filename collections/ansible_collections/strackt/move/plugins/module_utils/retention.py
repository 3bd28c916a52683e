# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The old copy of an env after a move: how long it is kept, when it is due, and whether a copy on
a server is a retired one (safe to remove, or to take as a head start) or the live env.

At finish the old server's env is stopped, masked and closed; its app and data stay there as a
*retained copy* for the env's ``retention`` (default 7 days), recorded on the control node
(``move_record.RetainedCopies``, ``move_store.retained_path``). ``strackt-move retire`` (or
``retire --due`` from a timer) removes it; a move back to that server takes it as a head start.

A copy is *retired* on a server when none of the env's units is active there and every unit name
that exists is masked (a link to /dev/null), the env's site is absent and its closed marker is
there. Anything else may be the live env: never removed, never trusted.

Stdlib only: the controller imports this too.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import posixpath
import shutil
import typing

from ansible_collections.strackt.move.plugins.module_utils import forwarding

DEFAULT_RETENTION_S = 7 * 86400


def parse_retention(value: typing.Any) -> tuple[int, list[tuple[str, str]]]:
    """The env definition's ``retention`` (None: the default) in seconds, and its problems as
    ``(key, what is wrong; what to do)``; durations as for ``forwarding`` (``7d``, ``36h``, ``30s``)."""
    if value is None:
        return DEFAULT_RETENTION_S, []
    try:
        seconds = forwarding.parse_duration(value)
    except ValueError as exc:
        return DEFAULT_RETENTION_S, [("retention", "%s (such as 7d)" % exc)]
    if seconds <= 0:
        return DEFAULT_RETENTION_S, [("retention", "must be more than 0: the old copy is kept this long "
                                                   "(`strackt-move retire` removes it earlier)")]
    return seconds, []


def copy_paths(root: str, app_dir: str, data_paths: typing.Iterable[str]) -> list[str]:
    """What a retained copy is: the app checkout and the data paths (all under ``root``)."""
    return [app_dir] + [p for p in data_paths if p != app_dir]


def until(retained_at: datetime.datetime, retention_s: int) -> datetime.datetime:
    return retained_at + datetime.timedelta(seconds=int(retention_s))


# --------------------------------------------------------------------------------------------
# on the server: is the copy here the retired one?


@dataclasses.dataclass(frozen=True)
class ServerLayout:
    """Where the env's pieces are on a server (``Environment`` names them)."""

    root: str
    paths: tuple[str, ...]
    units: tuple[str, ...]
    unit_dir: str
    site_file: str
    closed_file: str
    env_file: str
    retired_units_dir: str | None = None  # where the finish kept the env's unit files


def unit_masked(unit_dir: str, unit: str) -> bool:
    path = posixpath.join(unit_dir, unit)
    return os.path.islink(path) and os.readlink(path) == "/dev/null"


def anything_there(layout: ServerLayout) -> bool:
    """Whether the server holds anything of the env (a removal that ended leaves nothing)."""
    paths = list(layout.paths) + [posixpath.join(layout.unit_dir, u) for u in layout.units]
    paths += [layout.site_file, layout.env_file, layout.closed_file]
    paths += [layout.retired_units_dir] if layout.retired_units_dir else []
    return any(os.path.lexists(p) for p in paths)


def live_signs(layout: ServerLayout, active_units: typing.Iterable[str]) -> list[str]:
    """What says the env may be live here, one phrase each (empty: a retired copy). ``active_units``:
    the env's units systemd reports active or activating. Nothing of the env there: no sign."""
    signs = ["unit %s is running" % u for u in active_units]
    if not anything_there(layout):
        return signs
    for unit in layout.units:
        path = posixpath.join(layout.unit_dir, unit)
        if os.path.lexists(path) and not unit_masked(layout.unit_dir, unit):
            signs.append("unit %s is not masked" % unit)
    if os.path.lexists(layout.site_file):
        signs.append("its site %s is there" % layout.site_file)
    if os.path.lexists(layout.env_file):
        signs.append("its env file %s is there" % layout.env_file)
    if not os.path.lexists(layout.closed_file):
        signs.append("its site is not closed (no %s)" % layout.closed_file)
    return signs


def path_problems(layout: ServerLayout) -> list[str]:
    """Each path must be strictly under the root, and must not lead out of it through a link."""
    problems = []
    root = posixpath.normpath(layout.root)
    real_root = os.path.realpath(root)
    for path in layout.paths:
        norm = posixpath.normpath(path)
        if norm != path or not norm.startswith(root + "/"):
            problems.append("%s is not a path under the root %s" % (path, root))
        elif os.path.lexists(norm) and not os.path.islink(norm) \
                and not os.path.realpath(norm).startswith(real_root + "/"):
            problems.append("%s leads out of the root %s" % (path, root))
    return problems


def tree_bytes(path: str) -> int:
    total = 0
    if os.path.islink(path) or not os.path.isdir(path):
        return os.lstat(path).st_size if os.path.lexists(path) else 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


@dataclasses.dataclass
class Removal:
    """What removing a retired copy did (or would do, in check mode)."""

    removed: list = dataclasses.field(default_factory=list)
    bytes_freed: int = 0
    unmasked: list = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.unmasked)


def remove_copy(layout: ServerLayout, check_mode: bool = False) -> Removal:
    """Remove the retired copy: the named paths, the kept unit files, the masks and the closed marker
    (the server then holds nothing of the env but its user), and the root when it is left empty.
    The caller has made sure it is retired (``live_signs`` empty) and the paths are sound."""
    out = Removal()
    for path in list(layout.paths) + ([layout.retired_units_dir] if layout.retired_units_dir else []):
        if not os.path.lexists(path):
            continue
        out.bytes_freed += tree_bytes(path)
        out.removed.append(path)
        if check_mode:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    for unit in layout.units:
        if unit_masked(layout.unit_dir, unit):
            out.unmasked.append(unit)
            if not check_mode:
                os.unlink(posixpath.join(layout.unit_dir, unit))
    if os.path.lexists(layout.closed_file):
        out.removed.append(layout.closed_file)
        if not check_mode:
            os.unlink(layout.closed_file)
    if os.path.isdir(layout.root) and not os.path.islink(layout.root) and not check_mode:
        try:
            os.rmdir(layout.root)  # only when empty: anything else there is not ours to remove
            out.removed.append(layout.root)
        except OSError:
            pass
    return out
