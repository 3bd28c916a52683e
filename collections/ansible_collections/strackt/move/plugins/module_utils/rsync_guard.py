# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The forced command of a move's key on the target: rsync into the env's data paths, nothing else.

``move_key`` (side=target) writes this file's source to the target and names it in the key's
``command=`` option, with the env root, the data paths (relative to the root) and the move id.
It replaces rrsync, which confines a key to one directory (the env root, code included), lets
device files and setuid bits through in both directions, and allows one run per directory.

The guard accepts only what strackt.move's own passes send (``rsync --server [--sender] …``),
refuses path arguments outside the data paths, a ``--backup-dir`` outside the move's backup
directory, a ``--partial-dir`` that is not a plain name, and options that read or write
outside (log files, temp dirs, devices); then it runs rsync with ``--no-devices --no-specials
--chmod=Fug-s`` appended after the client's options, so they win over the client's ``-D``:
no device, fifo, socket or setuid/setgid file crosses, whichever side sends.

A push may ask for the freeze's barrier (``--rsync-path`` set to ``BARRIER_REMOTE_COMMAND``):
the guard then runs rsync as its child and, once it exited 0 (or 24: files vanished on the
sender, which the pass counts as done), writes ``.strackt-barrier-<move id>`` into the first data
path itself. The final pass's last run carries it, so the barrier costs the freeze no ssh session
and rsync run of its own; it is written only after everything that run received, and only when
the run succeeded.

Stdlib only; runs with the target's python3 outside Ansible too (``main``).
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import time

RSYNC = "/usr/bin/rsync"
# appended after the client's options (later options win over the client's -D)
FORCED = ("--no-devices", "--no-specials", "--chmod=Fug-s")
# the remote command (rsync's --rsync-path) of a push that asks for the barrier afterwards
BARRIER_WORD = "strackt-barrier"
BARRIER_REMOTE_COMMAND = BARRIER_WORD + " rsync"
# the freeze's barrier files (``barrier_name``); the manifest and the change journals skip them
BARRIER_PREFIX = ".strackt-barrier-"
# backups of what a pass replaces or deletes: <root>/.strackt-backup/<move_id>/ (outside the data)
BACKUP_ROOT = ".strackt-backup"
# short options strackt.move's passes use (-rlptgoHAXS, -I, -R for --files-from, -b for backups,
# -v/-i for itemizing, -D tolerated: FORCED turns it off); K, L, k (following symlinks on the
# receiver) and s (protect-args) are refused (as rrsync does for a subdirectory)
SHORT_ALLOWED = set("ACDHIORSXbcdgilnoprtuvxyz")
# e.g. -logDtprze.iLsfxCIvu: letters, then e<protocol>.<capability flags>
SHORT_RE = re.compile(r"^-(?P<letters>[A-Za-z]*)(?:e\d*\.[A-Za-z]*)?$")
LONG_RE = re.compile(r"^--(?P<name>[a-z0-9-]+)(?:=(?P<value>.*))?$")
# long options that take no value or a value that needs no check
LONG_PLAIN = frozenset((
    "delete", "delete-before", "delete-during", "delete-after", "delete-delay", "delete-excluded",
    "numeric-ids", "stats", "ignore-times", "ignore-errors", "ignore-missing-args", "from0",
    "no-devices", "no-specials", "partial", "fsync", "force", "size-only", "no-implied-dirs",
    "backup", "timeout", "log-format", "info", "debug", "checksum-seed", "checksum-choice",
    "compress-choice", "compress-level", "bwlimit", "block-size", "modify-window", "max-delete",
    "chmod", "suffix", "no-W", "whole-file", "mkpath", "delay-updates", "msgs2stderr",
    "no-msgs2stderr",
))
LONG_NEED_VALUE = frozenset(("timeout", "log-format", "info", "debug", "checksum-seed", "checksum-choice",
                             "compress-choice", "compress-level", "bwlimit", "block-size",
                             "modify-window", "max-delete", "chmod", "suffix"))
TAKES_VALUE = LONG_NEED_VALUE | {"backup-dir", "partial-dir", "files-from"}
PARTIAL_DIR_RE = re.compile(r"^\.?[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
MOVE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TOKEN_RE = re.compile(r"(?:[^\s\\]+|\\.[^\s\\]*)+")
_UNESCAPE_RE = re.compile(r"\\(.)")


class GuardError(Exception):
    """The command is not one strackt.move's passes send; the message says why."""


def _norm_rel(path):
    """A path relative to the env root, normalised; GuardError if it could leave the root."""
    if path.startswith("./"):
        path = path[2:]
    stripped = path.rstrip("/")
    parts = [p for p in stripped.split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise GuardError("path %r is not relative to the env root or contains '..'" % path)
    return "/".join(parts)


def _inside(rel, allowed):
    return any(rel == a or rel.startswith(a + "/") for a in allowed)


def check_command(command, root, data_paths, move_id):
    """The argv to run for SSH_ORIGINAL_COMMAND ``command``; GuardError if it is not allowed.

    ``data_paths``: the env's data paths relative to ``root`` (e.g. ``["data"]``)."""
    if not command:
        raise GuardError("no command: this key only runs strackt.move's rsync passes")
    if not MOVE_ID_RE.match(move_id or ""):
        raise GuardError("the guard was installed with an invalid move id %r" % (move_id,))
    allowed = [_norm_rel(p) for p in data_paths]
    if not allowed or "" in allowed:
        raise GuardError("the guard was installed without data paths")
    backup_dir = posixpath.join(BACKUP_ROOT, move_id)
    root_abs = posixpath.normpath(root)
    tokens = [_UNESCAPE_RE.sub(r"\1", t) for t in _TOKEN_RE.findall(command)]
    if tokens[:2] != ["rsync", "--server"]:
        raise GuardError("only `rsync --server` may run with this key, not %r" % command[:80])
    opts = ["--server"]
    args = []
    rest = tokens[2:]
    if rest[:1] == ["--sender"]:
        opts.append("--sender")
        rest = rest[1:]
    saw_dot = False
    pending = list(rest)
    while pending:
        token = pending.pop(0)
        if saw_dot:
            rel = _norm_rel(token)
            if not _inside(rel, allowed):
                raise GuardError("%r is outside the env's data paths (%s)" % (token, ", ".join(allowed)))
            args.append(token)
            continue
        if token == ".":
            saw_dot = True
            continue
        if token == "--":
            continue
        short = SHORT_RE.match(token)
        if short and not token.startswith("--"):
            bad = sorted(set(short.group("letters")) - SHORT_ALLOWED)
            if bad:
                raise GuardError("option -%s is not allowed with this key" % "".join(bad))
            opts.append(token)
            continue
        long_ = LONG_RE.match(token)
        if not long_:
            raise GuardError("unexpected argument %r before '.'" % token)
        name, value = long_.group("name"), long_.group("value")
        if value is None and name in TAKES_VALUE and pending:
            value = pending.pop(0)  # rsync sends some values as the next argument
            token = "--%s=%s" % (name, value)
        if name == "backup-dir":
            # absolute: a relative one is taken relative to the destination (inside the data)
            wanted = posixpath.join(root_abs, backup_dir)
            norm = posixpath.normpath(value or "")
            if not value or ".." in value.split("/") or not (norm == wanted or norm.startswith(wanted + "/")):
                raise GuardError("--backup-dir must be %s or under it, not %r" % (wanted, value))
            opts.append("--backup-dir=" + norm)
        elif name == "partial-dir":
            if value is None or not PARTIAL_DIR_RE.match(value):
                raise GuardError("--partial-dir must be a plain directory name, not %r" % (value,))
            opts.append(token)
        elif name == "files-from":
            if value != "-":
                raise GuardError("--files-from must come over the connection (-), not %r" % (value,))
            opts.append(token)
        elif name in LONG_PLAIN:
            if name in LONG_NEED_VALUE and value is None:
                raise GuardError("--%s needs =VALUE" % name)
            if name not in LONG_NEED_VALUE and value is not None:
                raise GuardError("--%s takes no value" % name)
            opts.append(token)
        else:
            raise GuardError("option --%s is not allowed with this key" % name)
    if not saw_dot:
        raise GuardError("malformed rsync server command (no '.' argument)")
    if not args:
        raise GuardError("no path given: name a data path of the env")
    return [RSYNC] + opts + list(FORCED) + ["--", "."] + args


def _dry_run(argv):
    """Whether rsync's server options (``-n`` among the short ones) ask for a dry run."""
    for token in argv[1:]:
        if token == ".":
            break
        short = SHORT_RE.match(token)
        if token == "--dry-run" or (short and not token.startswith("--") and "n" in short.group("letters")):
            return True
    return False


def split_barrier(command):
    """(the rsync command, whether the barrier is asked for after it)."""
    if command.startswith(BARRIER_WORD + " "):
        return command[len(BARRIER_WORD) + 1:], True
    return command, False


def barrier_name(move_id):
    """The freeze's barrier file of a move, in the target's first data path."""
    return BARRIER_PREFIX + move_id


def write_barrier(data_dir, move_id):
    """The barrier, written in place of whatever has its name (a link is replaced, not
    followed): a temp file named as rsync names its own, then renamed (its arrival)."""
    name = barrier_name(move_id)
    tmp = os.path.join(data_dir, ".%s.%d" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        try:
            os.write(fd, ("%s %d\n" % (move_id, time.time_ns())).encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(data_dir, name))
    except BaseException:
        os.unlink(tmp)
        raise
    return name


# rsync's "some files vanished before they could be transferred": on a push the receiver exits
# with it too, having got all there was, and the client counts the pass as done
RC_VANISHED = 24


def run_then_barrier(command, data_dir, move_id):
    """Run rsync as a child; once it exited 0 (or 24, files vanished on the sender), write the
    barrier. Returns rsync's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child becomes rsync
        try:
            os.execv(command[0], command)
        finally:
            os._exit(127)
    _pid, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, RC_VANISHED):
        return rc
    try:
        write_barrier(data_dir, move_id)
    except OSError as exc:
        sys.stderr.write("strackt-move rsync guard: the barrier cannot be written in %s: %s\n" % (data_dir, exc))
        return 1
    return rc


def script_text(python="/usr/bin/python3"):
    """This file as the standalone script ``move_key`` installs on the target (a shebang in
    front, the call of ``main`` at the end). Read through the module's loader: inside an Ansible
    module payload the file is in a zip archive, not on disk."""
    source = None
    loader = globals().get("__loader__")
    if loader is not None and hasattr(loader, "get_source"):
        try:
            source = loader.get_source(__name__)
        except (ImportError, OSError):
            source = None
    if source is None:
        with open(__file__, encoding="utf-8") as handle:
            source = handle.read()
    # -I -S: no site packages or environment variables (the guard needs only the stdlib): a
    # quicker start (it runs before every rsync, three of them inside the freeze) and nothing
    # from the environment changes what it does
    return ("#!%s -IS\n%s\n\nif __name__ == \"__main__\":\n    sys.exit(main())\n"
            % (python, source.rstrip("\n")))


def main(argv=None):
    """``rsync_guard.py ROOT MOVE_ID DATA_PATH...`` as a key's forced command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3:
        sys.stderr.write("usage: rsync_guard.py ROOT MOVE_ID DATA_PATH...\n")
        return 2
    root, move_id, data_paths = argv[0], argv[1], argv[2:]
    try:
        requested, barrier = split_barrier(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
        command = check_command(requested, root, data_paths, move_id)
        if barrier and "--sender" in command:
            raise GuardError("the barrier is written only after a push, not a pull")
        if barrier and _dry_run(command):
            raise GuardError("the barrier is written after a real push, not after a dry run")
        os.chdir(root)
    except (GuardError, OSError) as exc:
        sys.stderr.write("strackt-move rsync guard: refused: %s\n" % exc)
        return 1
    if barrier:
        return run_then_barrier(command, _norm_rel(data_paths[0]), move_id)
    os.execv(command[0], command)
    return 1  # not reached
