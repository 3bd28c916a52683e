# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The follower: changes stream to the target while the move waits for its confirmation.

Between the verify stage and the operator's confirmation the source keeps serving and writing.
Pass by pass (the controller's sync loop, every few minutes) the target falls minutes behind and
the freeze's final pass carries all of it. The follower is a loop on the source, a transient unit
``strackt-follow-<move_id>``: it polls the change journal (module_utils/journal.py) every
``interval_s`` and, when something besides its own barriers was recorded since the last committed
pass, runs an incremental pass (``rsync.journaled_pass``) over one kept-open ssh connection. So the
target stays within about a second of the source, and the final pass carries only the last instant.

Safety, in this order:

- the follower only ever pushes source -> target, and only before the release: it will not start
  once the freeze's release marker (``released.json``) exists, and it ends by itself when it
  appears (checked before every pass);
- the freeze stops it (and waits for it) before anything else (module_utils/freeze.py), so no
  pass of it runs into or after the switch, whichever playbook or control node runs the freeze;
  a rollback and the finish stop it too;
- every pass holds the journal's pass lock from plan to commit, like the sync passes and the
  freeze's final pass: one pass at a time against the journal;
- SIGTERM (``systemctl stop``) lets the running pass end (an incremental pass is short) and then
  ends the loop; systemd kills what is left after ``STOP_TIMEOUT_S``. A pass cut short is not
  committed: the next pass (or the freeze's) copies it again.

Its figures (passes, files, the last pass, the last error) are in ``<move dir>/follow/status.json``,
rewritten after every pass. The unit runs this file from a copy of the collection's module_utils
it is given at its start (``install``), with the stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.holder_lock import flock_exclusive
from ansible_collections.strackt.move.plugins.module_utils.names import FREEZE_LOCK, RELEASED_MARKER
from ansible_collections.strackt.move.plugins.module_utils.systemd import ACTIVE_STATES, TIMED_OUT, Systemd, kill_cgroup

PACKAGE = "ansible_collections.strackt.move.plugins.module_utils"
UNIT_PREFIX = "strackt-follow-"
#: how long a stop waits for the running pass before systemd kills the unit
STOP_TIMEOUT_S = 30
DEFAULT_INTERVAL_S = 0.25
#: a pass at least this often even when the journal shows nothing: a journal that stopped records
#: nothing, and only a pass's plan notices (and restarts it)
HEARTBEAT_S = 10.0
#: an incremental pass starts at least this long after the last one ended: changes still reach
#: the target within a second, and a source that writes all the time costs two passes a second
#: instead of one per poll (each pass starts rsync on both servers and the key's guard on the
#: target: a follower passing every poll cost a tenth of a core on a busy testbed)
MIN_PASS_SPACING_S = 0.5
BACKOFF_MAX_S = 30.0
#: full passes in a row (a journal that cannot vouch, e.g. at the inotify watch limit) wait longer
#: and longer after each other, up to this
FULL_PASS_PAUSE_MAX_S = 300.0
#: the follower's ssh master connection ends by itself after this long unused
MASTER_PERSIST_S = 300


class FollowError(Exception):
    pass


@dataclass(frozen=True)
class FollowSettings:
    move_id: str
    move_dir: str            # <key_dir>/<move_id>: the move's key, journal and markers on the source
    env_root: str
    data_paths: tuple[str, ...]
    target_address: str
    key_path: str
    known_hosts_path: str
    ssh_port: int = 22
    interval_s: float = DEFAULT_INTERVAL_S
    idle_timeout: int = 60   # rsync --timeout of a pass: a link that hangs ends the pass

    @property
    def dir(self) -> str:
        return os.path.join(self.move_dir, "follow")

    @property
    def unit(self) -> str:
        return unit_name(self.move_id)

    @property
    def settings_path(self) -> str:
        return os.path.join(self.dir, "settings.json")

    @property
    def status_path(self) -> str:
        return os.path.join(self.dir, "status.json")

    @property
    def lib_dir(self) -> str:
        return os.path.join(self.dir, "lib")

    @property
    def control_path(self) -> str:
        return os.path.join(self.dir, "ssh")

    @property
    def released_marker(self) -> str:
        return os.path.join(self.move_dir, RELEASED_MARKER)

    @property
    def freeze_lock(self) -> str:
        return os.path.join(self.move_dir, FREEZE_LOCK)

    def journal(self) -> jr.Journal:
        return jr.Journal(os.path.join(self.move_dir, "journal"), list(self.data_paths))

    def to_json(self) -> str:
        return json.dumps(dict(asdict(self), data_paths=list(self.data_paths)), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FollowSettings":
        data = json.loads(text)
        data["data_paths"] = tuple(data["data_paths"])
        return cls(**data)


@dataclass
class FollowStatus:
    """What the follower did, as ``status.json`` holds it."""
    started_at: str = ""
    state: str = "running"           # running | stopped | released (ended by the freeze's marker)
    passes: int = 0
    files_copied: int = 0
    bytes_sent: int = 0
    full_passes: int = 0
    last_pass_at: str = ""
    last_pass_s: float | None = None
    failures: int = 0                # failed passes in all
    failing: int = 0                 # failed passes in a row now
    last_error: str = ""
    ended_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unit_name(move_id: str) -> str:
    return UNIT_PREFIX + "".join(c if c.isalnum() or c in "_.-" else "_" for c in move_id) + ".service"


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.replace(tmp, path)


def read_status(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


# ---- the loop (runs in the unit) ----------------------------------------------------------------
@dataclass
class Loop:
    settings: FollowSettings
    stop: threading.Event = field(default_factory=threading.Event)
    journal: jr.Journal | None = None
    run_pass: Callable[..., dict[str, Any]] = rs.journaled_pass
    now: Callable[[], float] = time.monotonic
    status: FollowStatus = field(default_factory=FollowStatus)
    full_in_a_row: int = 0
    ensure_master: Callable[["FollowSettings"], str | None] | None = None

    def released(self) -> bool:
        return os.path.exists(self.settings.released_marker)

    def save(self) -> None:
        try:
            write_json(self.settings.status_path, self.status.to_dict())
        except OSError:
            pass  # the figures are for reading only: a full disk must not end the loop

    def one_pass(self, control: str | None) -> None:
        s = self.settings
        journal = self.journal or s.journal()
        began = self.now()
        res = self.run_pass(journal, list(s.data_paths), s.env_root, s.target_address, s.key_path,
                            s.known_hosts_path, ssh_port=s.ssh_port, control_path=control,
                            idle_timeout=s.idle_timeout)
        st = self.status
        full = res.get("mode") == "full"
        self.full_in_a_row = self.full_in_a_row + 1 if full else 0
        st.passes += 1
        st.files_copied += int(res.get("files_changed") or 0)
        st.bytes_sent += int(res.get("bytes_sent") or 0)
        st.full_passes += full
        st.last_pass_at = clock.format_ts(clock.utcnow())
        st.last_pass_s = round(self.now() - began, 3)
        st.failing = 0

    def pause_after(self) -> float:
        """Seconds the next pass waits at least after the last one ended: MIN_PASS_SPACING_S
        after an incremental pass; after full passes in a row longer and longer (they copy the
        whole tree and would otherwise follow each other)."""
        if not self.full_in_a_row:
            return MIN_PASS_SPACING_S
        return min(FULL_PASS_PAUSE_MAX_S, HEARTBEAT_S * 2.0 ** (self.full_in_a_row - 1))

    def run(self) -> str:
        """Follow until stopped or released; returns why it ended."""
        s = self.settings
        self.status.started_at = clock.format_ts(clock.utcnow())
        self.save()
        journal = self.journal or s.journal()
        ensure = self.ensure_master or ensure_master
        control = None
        last_end = None  # when the last pass ended
        try:
            while not self.stop.is_set():
                if self.released():
                    self.status.state = "released"
                    return "released"
                since = None if last_end is None else self.now() - last_end
                due = since is None or since >= max(HEARTBEAT_S, self.pause_after())
                if due or (since >= self.pause_after() and journal.pending()):
                    try:
                        control = ensure(s)
                        self.one_pass(control)
                    except Exception as exc:  # a failed pass is retried; the freeze's pass catches up anyway
                        self.status.failures += 1
                        self.status.failing += 1
                        self.status.last_error = str(exc)[:500]
                        self.save()
                        last_end = self.now()
                        if self.stop.wait(min(BACKOFF_MAX_S, 2.0 ** min(self.status.failing, 5))):
                            break
                        continue
                    last_end = self.now()
                    self.save()
                self.stop.wait(s.interval_s)
            self.status.state = "stopped"
            return "stopped"
        finally:
            self.status.ended_at = clock.format_ts(clock.utcnow())
            self.save()
            if control:
                rs.close_master(control, s.target_address)


def ensure_master(s: FollowSettings) -> str | None:
    """The control path of a live ssh master connection to the target, opened when there is
    none; None when it cannot be opened (rsync then connects by itself). A socket left by a
    master that ended (idle, a reboot, a kill) is removed first: ssh would otherwise "disable
    multiplexing" and leave a plain connection behind for good."""
    path = s.control_path
    if os.path.exists(path):
        check = subprocess.run(["ssh", "-o", "ControlPath=" + path, "-O", "check", "root@%s" % s.target_address],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10, check=False)
        if check.returncode == 0:
            return path
        try:
            os.unlink(path)
        except OSError:
            pass
    opened = rs.open_master(s.key_path, s.known_hosts_path, s.target_address, path, ssh_port=s.ssh_port,
                            persist_s=MASTER_PERSIST_S)
    return path if opened else None


def main(argv: list[str] | None = None) -> int:
    """``follower SETTINGS_JSON``: the unit's entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with open(argv[0]) as f:
        settings = FollowSettings.from_json(f.read())
    loop = Loop(settings)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop.set())
    signal.signal(signal.SIGINT, lambda *_: loop.stop.set())
    why = loop.run()
    sys.stdout.write("strackt-move follower of %s ended: %s after %d passes\n" % (settings.move_id, why, loop.status.passes))
    return 0


# ---- the unit (the module's side) ----------------------------------------------------------------
def install(settings: FollowSettings) -> None:
    """Write the settings and a copy of the module_utils this file needs into ``settings.dir``.

    Inside an Ansible module payload the files are in a zip archive, not on disk: they are read
    through their loaders (as rsync_guard.script_text does)."""
    os.makedirs(settings.dir, 0o700, exist_ok=True)
    package_dir = os.path.join(settings.lib_dir, *PACKAGE.split("."))
    os.makedirs(package_dir, 0o700, exist_ok=True)
    parts = PACKAGE.split(".")
    for depth in range(1, len(parts) + 1):
        init = os.path.join(settings.lib_dir, *parts[:depth], "__init__.py")
        if not os.path.exists(init):
            with open(init, "w"):
                pass
    for name, module in sorted(sys.modules.items()):
        if not name.startswith(PACKAGE + ".") or module is None:
            continue
        loader = getattr(module, "__loader__", None)
        source = None
        if loader is not None and hasattr(loader, "get_source"):
            try:
                source = loader.get_source(name)
            except (ImportError, OSError):
                source = None
        if source is None:
            path = getattr(module, "__file__", None)
            if not path or not path.endswith(".py"):
                continue
            with open(path, encoding="utf-8") as handle:
                source = handle.read()
        with open(os.path.join(package_dir, name.rsplit(".", 1)[1] + ".py"), "w", encoding="utf-8") as handle:
            handle.write(source)
    write_json(settings.settings_path, json.loads(settings.to_json()))


def command(settings: FollowSettings, python: str | None = None) -> list[str]:
    code = ("import sys; sys.path.insert(0, %r); from %s import follower; sys.exit(follower.main())"
            % (settings.lib_dir, PACKAGE))
    # -I -S: the stdlib and the copy only, nothing from the environment or site packages
    return [python or sys.executable or "/usr/bin/python3", "-I", "-S", "-c", code, settings.settings_path]


@dataclass
class Follower:
    """Start, stop and read the follower unit of one move on this server."""
    settings: FollowSettings
    systemd: Systemd = field(default_factory=Systemd)

    def running(self) -> bool:
        return self.systemd.is_active(self.settings.unit)

    def status(self) -> dict[str, Any]:
        out = read_status(self.settings.status_path) or {}
        out["running"] = self.running()
        out["unit"] = self.settings.unit
        return out

    def start(self) -> bool:
        """Start the unit; False when it runs already. FollowError once the move was released,
        or while a freeze of the move runs (its lock: the freeze stopped the follower and must
        not meet a new one)."""
        s = self.settings
        lock = flock_exclusive(s.freeze_lock, timeout=0) if os.path.isdir(s.move_dir) else None
        if lock is None and os.path.isdir(s.move_dir):
            raise FollowError("a switch-over of %s is running (%s is held): the follower stays stopped"
                              % (s.move_id, s.freeze_lock))
        try:
            if os.path.exists(s.released_marker):
                raise FollowError("the switch-over of %s handed the traffic to the target already (%s): nothing "
                                  "follows the source any more" % (s.move_id, s.released_marker))
            if self.running():
                return False
            install(s)
            self.systemd.reset_failed(s.unit)
            self.systemd.run_transient(s.unit, command(s), "strackt-move: changes of %s streaming to %s"
                                       % (", ".join(s.data_paths), s.target_address),
                                       properties=("Nice=10", "TimeoutStopSec=%d" % STOP_TIMEOUT_S, "KillMode=mixed"))
            return True
        finally:
            if lock is not None:
                os.close(lock)

    def stop(self) -> bool:
        """Stop the unit and wait for it; False when it was not running."""
        return stop_for_move(self.settings.move_id, self.systemd)


def stop_for_move(move_id: str, systemd: Systemd | None = None) -> bool:
    """Stop a move's follower knowing only its move (the freeze, a rollback, the finish): True if
    one was running. Waits for its running pass to end; then kills whatever is left in its
    cgroup (an rsync that outlived a killed loop would push unlocked). FollowError when
    something of it would not end (a pass cut short is not committed: the next copies it again)."""
    systemd = systemd or Systemd()
    unit = unit_name(move_id)
    state = systemd.show(unit, "ActiveState", "ControlGroup")
    if state.get("ActiveState") not in ACTIVE_STATES + ("deactivating",):
        systemd.reset_failed(unit)
        return False
    rc, out = systemd.stop_within(unit, STOP_TIMEOUT_S + 10)
    if rc == TIMED_OUT or systemd.is_active(unit):
        systemd.systemctl("kill", "--signal=SIGKILL", unit)
        systemd.stop(unit, check=False)
    left = kill_cgroup(state.get("ControlGroup") or "")
    if systemd.is_active(unit) or left:
        raise FollowError("the follower %s of %s does not stop (%s): %s" % (
            unit, move_id, "processes %s left" % left if left else "still active", out.strip()))
    systemd.reset_failed(unit)
    return True
