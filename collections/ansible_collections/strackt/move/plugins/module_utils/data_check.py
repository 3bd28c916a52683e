# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data check after the switch-over: exact without comparing two servers' clocks.

After the release the old server (the source) is stopped and the new one (the target) serves
and writes. The target's change journal, armed before the freeze, names every path the new
server changed after the final pass's barrier arrived: those paths are the new server's own
doing and are never "wrong". Every other difference between the stopped source and the target
is something the final pass did not carry (a write the source's journal could not see: an
mmap write, a process outside the env) and is **repaired forward** from the source:
copied, or deleted on the target (with a backup there). A path both the new server changed
and the source changed after the final pass is a conflict: the new server's copy stays and the
source keeps its own (named in the report).

Manifests are lists of entries as ``manifest.build`` makes them (paths relative to the env
root). Pure logic, stdlib only.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from ansible_collections.strackt.move.plugins.module_utils import manifest as mf


@dataclass
class DataCheck:
    """What the comparison found and what to do about it."""

    compared: int = 0
    equal: int = 0
    excused: list = field(default_factory=list)    # differences on paths the new server changed itself
    copy: list = field(default_factory=list)       # to copy source -> target (missing or different there)
    delete: list = field(default_factory=list)     # to delete on the target (gone on the source)
    conflicts: list = field(default_factory=list)  # changed on both sides after the final pass
    details: list = field(default_factory=list)    # "path: why", for the report (first few)

    @property
    def needs_repair(self) -> bool:
        return bool(self.copy or self.delete)

    def to_dict(self, limit: int = 50) -> dict:
        return {
            "compared": self.compared, "equal": self.equal,
            "excused": len(self.excused), "copy": self.copy[:limit], "delete": self.delete[:limit],
            "copy_count": len(self.copy), "delete_count": len(self.delete),
            "conflicts": self.conflicts[:limit], "details": self.details[:limit],
        }


def _ancestors_or_self(path: str):
    while path and path not in (".", "/"):
        yield path
        path = posixpath.dirname(path)


def _covered(path: str, changed: frozenset) -> bool:
    """``path`` or a directory above it was changed (a directory the new server removed or
    renamed takes its whole content with it)."""
    return any(p in changed for p in _ancestors_or_self(path))


def plan(source_entries, target_entries, target_changed, source_changed_late=(), limit=20):
    """Compare the stopped source with the serving target.

    ``target_changed``: paths (relative to the env root) the new server changed after the
    barrier. ``source_changed_late``: paths the source's journal saw change after the final pass
    (only used to tell conflicts from the new server's own changes)."""
    src = {e["path"]: e for e in source_entries}
    dst = {e["path"]: e for e in target_entries}
    changed = frozenset(target_changed)
    late = frozenset(source_changed_late)
    check = DataCheck()
    for path in sorted(set(src) | set(dst)):
        check.compared += 1
        s, t = mf.comparable(src.get(path)), mf.comparable(dst.get(path))
        if s == t:
            check.equal += 1
            continue
        if s is None:
            why = "only on the target"
        elif t is None:
            why = "missing on the target"
        else:
            why = "differs in " + ", ".join(sorted(k for k in set(s) | set(t) if s.get(k) != t.get(k)))
        if _covered(path, changed):
            check.excused.append(path)
            if _covered(path, late):
                check.conflicts.append(path)
            continue
        if s is None:
            check.delete.append(path)
        else:
            check.copy.append(path)
        if len(check.details) < limit:
            check.details.append("%s: %s" % (path, why))
    # a directory to delete goes as a whole: its content needs no entry of its own
    deleted_dirs = frozenset(p for p in check.delete if (dst.get(p) or {}).get("type") == "dir")
    check.delete = [p for p in check.delete
                    if not any(a in deleted_dirs for a in _ancestors_or_self(posixpath.dirname(p)))]
    return check


def by_data_path(paths, data_paths_rel):
    """{data path (relative to the root): [paths relative to that data path]} for rsync's
    ``--files-from`` and deletion rules (the data path itself is never listed)."""
    out = {d: [] for d in data_paths_rel}
    for path in paths:
        for d in data_paths_rel:
            if path.startswith(d + "/"):
                out[d].append(path[len(d) + 1:])
                break
    return out
