# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a server changed itself after a point in its change journal.

On the target, the journal (``journal.Journal``: inotifywait as a transient unit) is armed
before the freeze; the freeze's final pass is followed by a barrier file
(``.strackt-barrier-<move_id>``) pushed into the first data path. Every record after the
barrier's arrival is the new server's own doing: the data check after the switch excuses those
paths, and a rollback pulls back only those. No clock of either server is compared.

On the source the same reading, from the end of the last committed pass on, tells what was
written there after the final pass (a conflict when the target changed the same path).

Stdlib only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import BARRIER_PREFIX

ARMED = "armed.json"  # the InvocationID of the journal this module armed
# names that are strackt.move's own, never the app's
OWN_PREFIXES = (BARRIER_PREFIX, jr.BARRIER_PREFIX)


@dataclass
class Changes:
    trustworthy: bool
    reason: str
    marker_seen: bool = False
    changed: list = field(default_factory=list)  # paths relative to the env root
    records: int = 0

    def to_dict(self) -> dict:
        return {"trustworthy": self.trustworthy, "reason": self.reason, "marker_seen": self.marker_seen,
                "changed": self.changed, "records": self.records}

    def by_data_path(self, env_root: str, data_paths: list) -> dict:
        """{data path: {"copy": [...], "delete": [...]}} relative to each data path, as rsync_pass
        takes them: what exists here now is to be copied, what is gone to be deleted (read on the
        server the journal watches)."""
        root = os.path.normpath(env_root)
        out: dict = {}
        for rel in self.changed:
            full = os.path.join(root, rel)
            for path in data_paths:
                path = os.path.normpath(path)
                if full.startswith(path + "/"):
                    lists = out.setdefault(path, {"copy": [], "delete": []})
                    lists["copy" if os.path.lexists(full) else "delete"].append(os.path.relpath(full, path))
                    break
        return out


def _records(data: bytes):
    """(offset after the record, kinds, path) for each NUL-terminated ``KINDS PATH`` record."""
    at = 0
    for raw in data.split(b"\0"):
        at += len(raw) + 1
        if not raw:
            continue
        kinds, sep, path = raw.decode("utf-8", "surrogateescape").partition(" ")
        yield at, kinds.split(","), (os.path.normpath(path) if sep else None)


#: a record of these kinds naming the marker is its arrival (renamed into place, or written there)
ARRIVALS = ("MOVED_TO", "CLOSE_WRITE")


def marker_offset(data: bytes, marker_path: str) -> int | None:
    """Offset just after the last arrival of ``marker_path`` itself (a temp name renamed: the
    MOVED_TO of the final name). The last: a freeze given up after its barrier arrived leaves it,
    and the next freeze's final pass copies more before its barrier arrives again."""
    marker_path = os.path.normpath(marker_path)
    found = None
    for end, kinds, path in _records(data):
        if path == marker_path and any(kind in ARRIVALS for kind in kinds):
            found = end
    return found


def changed_after(data: bytes, env_root: str, data_paths: list, start: int = 0) -> Changes:
    """Paths (relative to ``env_root``) the records from ``start`` on name; untrusted on an
    overflow, an unreadable record or a data path removed."""
    root = os.path.normpath(env_root)
    paths = [os.path.normpath(p) for p in data_paths]
    changed = set()
    count = 0
    for _end, kinds, path in _records(data[start:]):
        count += 1
        if path is None:
            return Changes(False, "unreadable journal record", records=count)
        if any(k in jr.UNTRUSTED for k in kinds):
            return Changes(False, "the journal overflowed (%s)" % ",".join(kinds), records=count)
        if ("DELETE_SELF" in kinds or "MOVE_SELF" in kinds) and path in paths:
            return Changes(False, "data path %s itself was removed or moved" % path, records=count)
        if "IGNORED" in kinds or "DELETE_SELF" in kinds or "MOVE_SELF" in kinds:
            continue  # the parent's DELETE/MOVED_FROM record names it
        if os.path.basename(path).startswith(OWN_PREFIXES):
            continue
        if not any(path == p or path.startswith(p + "/") for p in paths):
            continue
        changed.add(os.path.relpath(path, root))
    return Changes(True, "%d paths changed" % len(changed), changed=sorted(changed), records=count)


class ServerJournal:
    """The change journal of this server for one move: armed, read, stopped."""

    def __init__(self, journal_dir: str, data_paths: list, env_root: str, journal: jr.Journal | None = None) -> None:
        self.dir = os.path.normpath(journal_dir)
        self.data_paths = [os.path.normpath(p) for p in data_paths]
        self.env_root = env_root
        self.journal = journal or jr.Journal(self.dir, self.data_paths)
        self.armed_file = os.path.join(self.dir, ARMED)

    def armed(self) -> str | None:
        try:
            with open(self.armed_file, encoding="utf-8") as fh:
                return json.load(fh).get("invocation")
        except (OSError, ValueError, AttributeError):
            return None

    def start(self) -> bool:
        """Arm the journal; True if it had to be (re)started."""
        running = self.journal.invocation()
        if running and running == self.armed():
            return False
        invocation = self.journal.start_watching_all()
        tmp = self.armed_file + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            json.dump({"invocation": invocation}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.armed_file)
        return True

    def _trusted_events(self) -> tuple[bytes | None, str]:
        """Everything recorded so far (a barrier first), or None and why it cannot vouch."""
        running = self.journal.invocation()
        armed = self.armed()
        if not running:
            return None, "the journal %s is not running" % self.journal.unit
        if armed is not None and running != armed:
            return None, "the journal %s was restarted since it was armed (changes in between are unknown)" % (
                self.journal.unit)
        try:
            self.journal.barrier(timeout=10.0)
            with open(self.journal.events, "rb") as fh:
                return fh.read(), ""
        except (OSError, jr.JournalError) as exc:
            return None, "the journal cannot be read: %s" % exc

    def since_marker(self, marker_name: str) -> Changes:
        data, why = self._trusted_events()
        if data is None:
            return Changes(False, why)
        at = marker_offset(data, os.path.join(self.data_paths[0], marker_name))
        if at is None:
            return Changes(False, "the barrier %s never arrived in %s" % (marker_name, self.data_paths[0]))
        out = changed_after(data, self.env_root, self.data_paths, at)
        out.marker_seen = True
        return out

    def since_last_pass(self) -> Changes:
        """What changed after the end of the last committed pass (the source's journal)."""
        try:
            with open(self.journal.state_file, encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            state = {}
        end = state.get("end_offset") if isinstance(state, dict) else None
        if not isinstance(end, int):
            return Changes(False, "no pass was committed against this journal")
        if self.journal.invocation() != state.get("invocation"):
            return Changes(False, "the journal %s is not the one the last pass used" % self.journal.unit)
        data, why = self._trusted_events()
        if data is None:
            return Changes(False, why)
        return changed_after(data, self.env_root, self.data_paths, end)

    def stop(self) -> bool:
        running = self.journal.invocation() is not None
        self.journal.stop()
        return running
