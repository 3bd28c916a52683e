# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A manifest of an env's data paths, its digest, and the comparison of two manifests.

Entry (one per path, relative to the env root, sorted): ``path``, ``type`` (file|dir|symlink|
other), ``mode``, ``uid``, ``gid``, ``size`` (files), ``mtime_ns`` (files and dirs; directory
and symlink times are not compared nor part of the digest: rsync -H creates hardlinks after it
set directory times, so those differ on a correct copy; they only serve to recognise a source
that kept changing), ``sha256`` (files), ``target`` (symlinks), ``link`` (hardlinks: the first path
of the group, else absent), ``xattrs`` ({name: sha256 of value}, includes POSIX ACLs).
Stdlib only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import stat

from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import BARRIER_PREFIX

_CHUNK = 1 << 20


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[name] = hashlib.sha256(value).hexdigest()
    return out


# strackt.move's own names inside data paths: rsync's partial-transfer directories and the
# barrier files of the switch-over; never part of the data
PARTIAL_DIR = ".strackt-partial"


def own_name(path):
    """True for a path that is or lies inside strackt.move's own working names."""
    for part in path.split(os.sep):
        if part == PARTIAL_DIR or part.startswith(BARRIER_PREFIX):
            return True
    return False


def _walk(top):
    """Yield absolute paths under top (top included), directories before their content."""
    yield top
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield os.path.join(dirpath, name)


def build(paths, root, hash_files=True, skipped=None):
    """The manifest entries of the data paths (absolute, under root), sorted by path. Special
    files are left out (their paths go to ``skipped`` when a list is given), and so are
    strackt.move's own working names (``own_name``)."""
    root = os.path.normpath(root)
    entries = []
    inodes = {}
    for top in paths:
        top = os.path.normpath(top)
        if not top.startswith(root + os.sep):
            raise ValueError("data path %s is not under the env root %s" % (top, root))
        if not os.path.lexists(top):
            raise ValueError("data path %s does not exist" % top)
        for path in _walk(top):
            if own_name(path):
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # vanished while walking a live tree
            rel = os.path.relpath(path, root)
            entry = {"path": rel, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                entry.update(type="file", size=st.st_size, mtime_ns=st.st_mtime_ns)
                if hash_files:
                    try:
                        entry["sha256"] = _sha256_file(path)
                    except FileNotFoundError:
                        continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    inodes.setdefault(key, []).append(entry)
            elif stat.S_ISDIR(st.st_mode):
                entry.update(type="dir", mtime_ns=st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", target=os.readlink(path))
            else:
                # devices, fifos, sockets: a move never carries them (rsync runs without -D)
                if skipped is not None:
                    skipped.append(rel)
                continue
            xa = _xattrs(path)
            if xa:
                entry["xattrs"] = xa
            entries.append(entry)
    # hardlink groups: name every member of a group after its first path (host independent)
    for group in inodes.values():
        if len(group) > 1:
            first = min(e["path"] for e in group)
            for e in group:
                e["link"] = first
    entries.sort(key=lambda e: e["path"])
    return entries


def comparable(entry):
    """What must be equal on both sides: directory times are not (rsync -H re-touches
    directories), nor a file's setuid/setgid bits (moves never carry them: the move key's guard
    strips them in both directions)."""
    if entry is None:
        return None
    if entry.get("type") == "dir" and "mtime_ns" in entry:
        entry = dict(entry)
        del entry["mtime_ns"]
    if entry.get("type") == "file" and int(entry.get("mode", "0"), 8) & 0o6000:
        entry = dict(entry, mode="%04o" % (int(entry["mode"], 8) & ~0o6000))
    return entry


_comparable = comparable


def digest(entries):
    h = hashlib.sha256()
    for e in entries:
        h.update(json.dumps(_comparable(e), sort_keys=True, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def summary(entries):
    files = [e for e in entries if e["type"] == "file"]
    return {"entries": len(entries), "files": len(files), "bytes": sum(e["size"] for e in files)}


def _parent(path):
    return os.path.dirname(path)


def compare(source, target, changed_since_ns=None, limit=20, sides=("source", "target"), complete=False):
    """Differences between two manifests (lists of entries), first ``limit`` of them.

    With ``changed_since_ns`` (the start of the last sync pass, on the source's clock) a source
    that kept serving is allowed to be ahead: differences explained by a source entry (or, for
    entries the source deleted, its parent directory) modified at or after that instant are
    counted as ``settling``, not as differences.
    With ``complete`` every entry of ``target`` must be in ``source``: one that is not is a
    difference even when its parent directory changed there since (after a switch-over,
    ``target`` is the stopped old server and ``source`` the new one, busy writing into the very
    directories a missed file would be in).
    Returns {"equal": bool, "differences": [...], "difference_count": N, "settling": N}.
    """
    src = {e["path"]: e for e in source}
    dst = {e["path"]: e for e in target}
    diffs = []
    settling = 0

    def recent(entry):
        return (changed_since_ns is not None and entry is not None
                and entry.get("mtime_ns") is not None and entry["mtime_ns"] >= changed_since_ns)

    for path in sorted(set(src) | set(dst)):
        s, t = _comparable(src.get(path)), _comparable(dst.get(path))
        if s == t:
            continue
        if s is None:
            why = "only on %s" % sides[1]
            excused = not complete and recent(src.get(_parent(path)))
        elif t is None:
            why = "missing on %s" % sides[1]
            excused = recent(s) or recent(src.get(_parent(path)))
        else:
            fields = sorted(k for k in set(s) | set(t) if s.get(k) != t.get(k))
            why = "differs in " + ", ".join("%s (%s %r, %s %r)" % (k, sides[0], s.get(k), sides[1], t.get(k))
                                            for k in fields)
            excused = recent(s) or (fields == ["link"] and recent(src.get(s.get("link") or t.get("link"))))
        if excused:
            settling += 1
            continue
        diffs.append("%s: %s" % (path, why))
    return {
        "equal": not diffs and settling == 0,
        "consistent": not diffs,
        "difference_count": len(diffs),
        "differences": diffs[:limit],
        "settling": settling,
    }


def verdict(comparison, strict=False, sides=("source", "target")):
    """Why a comparison fails a task (None: it passes). Settling entries fail only when ``strict``
    (the source was stopped)."""
    if comparison["consistent"] and not (strict and not comparison["equal"]):
        return None
    if comparison["consistent"]:
        first = "%d entries still settling (changed on the %s after the last pass)" % (
            comparison["settling"], sides[0])
    else:
        first = "; ".join(comparison["differences"])
    return ("the data on the %s differs from the %s in %d entries (%s ahead: %d). First: %s. Run "
            "another sync pass and verify again" % (
                sides[1], sides[0], comparison["difference_count"], sides[0], comparison["settling"], first))


# A manifest kept in a file on the control node (see the manifest action plugin): entries of
# tens of thousands of paths cost Ansible seconds per task as variables and module arguments,
# and nothing as a file.
FILE_FORMAT = "strackt.move manifest 1"


def write(entries, path, host):
    """Write ``entries`` (as build() returns them) to ``path`` as a manifest file, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"format": FILE_FORMAT, "host": host, "entries": entries}, fh, separators=(",", ":"))


def new_file(directory, host):
    """A new empty 0600 file in ``directory`` for the manifest of ``host``: its path."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="manifest-%s-" % host.replace(os.sep, "_"), suffix=".json", dir=directory)
    os.close(fd)
    return path


def load(path):
    """The entries of a file write() wrote; ValueError naming the path for anything else."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ValueError("cannot read the manifest file %s: %s" % (path, exc))
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or not isinstance(data.get("entries"), list):
        raise ValueError("%s is not a manifest file strackt.move.manifest saved (save: true)" % path)
    return data["entries"]
