# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The switch-over freeze on the source, and its undo: the order of the steps and what each
failure leaves behind. The parts it drives live next to it: the hold switch (``hold``), systemd
(``systemd``), the app port (``tcp``), who could still write (``writers``) and the passes
(``Transfer`` here, over ``rsync`` and ``journal``). The freeze module only wires its arguments
to ``Freeze``. Stdlib only.

The freeze has a budget (``freeze_budget_s``, below the front proxy's 10 s hold limit): a final
pass that would be full or slower than the budget refuses before anything stops, and one seen
over it inside the freeze is killed, the source started again and the move left waiting. Once
the held requests go to the target, a release marker (``<key dir>/released.json``) says so: a
repeated call returns it, and only a released move may ever pull data back (rollback).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ansible_collections.strackt.move.plugins.module_utils import change_journal as cj
from ansible_collections.strackt.move.plugins.module_utils import environment
from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils import follower
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils import rsync_guard
from ansible_collections.strackt.move.plugins.module_utils import tcp
from ansible_collections.strackt.move.plugins.module_utils import writers as wr
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write
from ansible_collections.strackt.move.plugins.module_utils.move_store import flock_exclusive
from ansible_collections.strackt.move.plugins.module_utils.names import FREEZE_LOCK, RELEASED_MARKER
from ansible_collections.strackt.move.plugins.module_utils.systemd import ACTIVE_STATES, Systemd, SystemdError, kill_cgroup

SOCKET_PROXYD = "/usr/lib/systemd/systemd-socket-proxyd"


#: what the module's ``state`` may be: frozen/thawed/released on the old server; held and forwarding
#: on the new one when a rollback after the switch hands the traffic back, and back on the old one
#: between them (its part inside the new server's hold, in one call)
STATES = ("frozen", "thawed", "released", "held", "forwarding", "back")


class FreezeError(Exception):
    """The freeze (or its undo) cannot go on; the message says what state it left.
    ``switched`` is False when nothing was switched (the source serves, or would serve had its
    start not failed: ``source_serves``)."""

    def __init__(self, message: str, switched: bool = False, source_serves: bool = True,
                 refused: bool = False, started: bool = False) -> None:
        Exception.__init__(self, message)
        self.switched = switched
        self.source_serves = source_serves
        self.refused = refused  # refused before anything stopped (the move may wait again)
        self.started = started  # state=back: the env was started here before it failed


RELEASE_MARKER = RELEASED_MARKER
#: the env's ``freeze_stop`` (module_utils/environment.py)
STOP_GRACEFUL = environment.FREEZE_STOP_GRACEFUL
STOP_KILL = environment.FREEZE_STOP_KILL
STOP_MODES = environment.FREEZE_STOPS
#: the barrier files the final pass leaves on the target (named by the target's guard)
BARRIER_PREFIX = rsync_guard.BARRIER_PREFIX
# of the budget, what the final pass may be predicted to take (drain, stop, the writer check,
# the barrier and the forwarder need the rest)
FINAL_PASS_SHARE = 0.5
MAX_CATCHUP_PASSES = 3
#: how long a freeze waits for a reload of the front proxy (one takes well under a second)
PROXY_LOCK_WAIT_S = 30.0


@dataclass(frozen=True)
class FreezeSettings:
    env: str
    target_unit: str = ""  # every process of the env: default strackt-env-<env>.service (one unit)
    unit: str = ""  # the older name of target_unit
    forwarder_prefix: str = ""  # default strackt-forward-<env>
    app_port: int | None = None
    target_address: str | None = None
    target_port: int = 80
    env_root: str | None = None
    data_paths: tuple[str, ...] = ()
    key_path: str | None = None
    known_hosts_path: str | None = None
    socket_proxyd: str = SOCKET_PROXYD
    rsync_timeout: float = 600.0
    hold_dir: str = hd.HOLD_DIR
    hold_settle_s: float = hd.HOLD_SETTLE_S
    hold_retry_s: float = 5.0
    drain_timeout: float = 10.0
    journal: bool = True
    catchup_pass: bool = True
    env_user: int | None = None  # uid: no process of it may run once the env is stopped
    freeze_budget_s: float = 5.0
    # how the env's processes stop inside the freeze (the env's ``freeze_stop``): STOP_GRACEFUL, or
    # STOP_KILL (SIGKILL once nothing is in flight) for apps that acknowledge only durable writes
    stop_mode: str = "graceful"
    barrier: bool = True
    move_id: str = ""  # default: the key directory's name
    lock_wait_s: float = 900.0  # how long a second freeze of the move waits for the running one
    # held, on the new server: its change journal and the barrier's name, read once the env is
    # stopped (what it changed itself, for the pull back); empty: not read
    journal_dir: str = ""
    since_marker: str = ""

    @property
    def unit_name(self) -> str:
        return self.target_unit or self.unit or "strackt-env-%s.service" % self.env

    @property
    def forwarder(self) -> str:
        prefix = self.forwarder_prefix or "strackt-forward-%s" % self.env
        return prefix[:-len(".service")] if prefix.endswith(".service") else prefix

    @property
    def key_dir(self) -> str:
        return os.path.dirname(self.key_path or "")

    @property
    def move(self) -> str:
        return self.move_id or os.path.basename(self.key_dir)

    @property
    def barrier_name(self) -> str:
        return rsync_guard.barrier_name(self.move)

    @property
    def marker_path(self) -> str:
        return os.path.join(self.key_dir, RELEASE_MARKER)

    @property
    def lock_path(self) -> str:
        return os.path.join(self.key_dir, FREEZE_LOCK)


def read_marker(path: str) -> dict[str, Any] | None:
    """The release marker's figures, or None when the freeze never released (or no key dir)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FreezeError("the release marker %s cannot be read (%s): whether the freeze released is unknown; "
                          "look at both servers" % (path, exc), switched=True)
    if not isinstance(data, dict) or not isinstance(data.get("released_at_ns"), int):
        raise FreezeError("the release marker %s is not one strackt.move wrote; look at both servers" % path,
                          switched=True)
    return data


class Transfer:
    """The passes of the freeze, over the move's key: rsync, the change journal and an ssh
    master connection (a handshake costs ~0.3 s, too much inside the freeze)."""

    def __init__(self, settings: FreezeSettings) -> None:
        self.s = settings

    def journal(self) -> jr.Journal:
        return jr.Journal(os.path.join(self.s.key_dir, "journal"), list(self.s.data_paths))

    def open_master(self) -> str | None:
        """The control path of a new master connection to the target, or None (each rsync then
        connects on its own: slower, still right)."""
        path = os.path.join(self.s.key_dir, "ssh-master")
        return path if rs.open_master(self.s.key_path, self.s.known_hosts_path, self.s.target_address, path) else None

    def close_master(self, control_path: str) -> None:
        rs.close_master(control_path, self.s.target_address)

    def run(self, direction: str, kind: str, control_path: str | None = None) -> dict[str, Any]:
        """A catch-up pass (the journal's, or a full one without it)."""
        s = self.s
        if direction == "push" and s.journal:
            res = rs.journaled_pass(self.journal(), list(s.data_paths), s.env_root, s.target_address, s.key_path,
                                    s.known_hosts_path, timeout=s.rsync_timeout, control_path=control_path)
        else:
            res = rs.run_pass(list(s.data_paths), s.env_root, s.target_address, s.key_path, s.known_hosts_path,
                              direction=direction, timeout=s.rsync_timeout, control_path=control_path)
            res["mode"] = "full"
        res["kind"] = kind
        return res

    def final(self, control_path: str | None, timeout: float) -> dict[str, Any]:
        """The final pass inside the freeze: only what the journal names, within ``timeout``
        (rsync is killed then). A journal that cannot vouch refuses instead of a full pass (a
        full pass is O(files): it does not fit the budget). With ``barrier`` its last rsync run
        leaves the barrier (the figures' ``barrier`` says whether one ran)."""
        s = self.s
        if not s.journal:
            res = rs.run_pass(list(s.data_paths), s.env_root, s.target_address, s.key_path, s.known_hosts_path,
                              timeout=timeout, control_path=control_path, barrier=s.barrier)
            res.update(kind="final", mode="full", journal="journal off")
            return res
        journal = self.journal()
        # a pass still holding the journal (a sync run by hand) must not keep the requests held:
        # a bounded wait, then the freeze gives up and the source serves again
        with journal.pass_lock(timeout=max(0.0, timeout / 2)):
            plan = journal.plan()
            if plan["mode"] != "incremental":
                raise FreezeError("the final pass would be a full one (%s)" % plan["reason"])
            # a pass that fails keeps the journal: the next one reads again from the last committed offset
            res = rs.run_pass(list(s.data_paths), s.env_root, s.target_address, s.key_path, s.known_hosts_path,
                              timeout=timeout, changes=plan["changes"], control_path=control_path,
                              barrier=s.barrier)
            try:
                journal.committed(plan["token"])
            except Exception:  # the pass is fine; the next one (a repair) is full
                journal.forget()
        res.update(kind="final", mode="incremental", journal=plan["reason"])
        return res

    def push_barrier(self, control_path: str | None, timeout: float) -> str:
        """Push the barrier file into the target's first data path, after the final pass: the
        target's change journal records its arrival, and what it records after that is the new
        server's own doing. Returns the file's name."""
        s = self.s
        name = s.barrier_name
        work = tempfile.mkdtemp(prefix="barrier-", dir=s.key_dir or None)
        try:
            with open(os.path.join(work, name), "w", encoding="utf-8") as fh:
                fh.write("%s %d\n" % (s.move, time.time_ns()))
            listing = os.path.join(work, "list")
            with open(listing, "wb") as fh:
                fh.write(name.encode("utf-8") + b"\0")
            argv = rs.build_argv(os.path.join(work, ""), s.target_address, rs.remote_rel(s.env_root, s.data_paths[0]),
                                 s.key_path, s.known_hosts_path, files_from=listing, control_path=control_path)
            # the list file itself is not in the list: only the barrier is sent
            rs.run(argv, timeout=timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return name

    def stop_journal(self) -> None:
        self.journal().stop()


PASS_ERRORS = (rs.RsyncError, jr.JournalError, ValueError, OSError)


class DatabaseSwitch(Protocol):
    """The database's part of the freeze (module_utils/pg_handover.py): connected before
    anything stops, switched once the app is down, undone when the freeze gives up after it."""

    def open(self) -> float: ...

    def switch(self, timeout_s: float | None = None) -> dict[str, Any]: ...

    def undo(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TakeBack:
    """The old server's part of a rollback after the switch, inside the new server's hold
    (state=back): each step a callable the module wires, so the order is here and testable."""
    pull: Callable[[], dict[str, Any]] | None  # what the new server changed (None: never released)
    database: Callable[[], dict[str, Any]] | None  # pg back (None: the database stayed here)
    healthy: Callable[[], tuple[bool, list]]  # waits until the env answers healthy here


class Freeze:
    """``frozen()``, ``thawed()`` and ``released()`` return the module's result; a failure raises
    FreezeError (or SystemdError) after putting back what it can."""

    def __init__(self, settings: FreezeSettings, systemd: Systemd, transfer: Transfer | None = None,
                 check_mode: bool = False, listening: Callable[..., bool] = tcp.wait_listening,
                 connections: Callable[[int], int] = tcp.established,
                 find_writers: Callable[..., list] = wr.find, database: DatabaseSwitch | None = None,
                 take_back: TakeBack | None = None,
                 kill_cgroup: Callable[[str, float], list[int]] = kill_cgroup) -> None:
        self.s = settings
        self.database = database
        self.take_back = take_back
        self.systemd = systemd
        self.transfer = transfer or Transfer(settings)
        self.check_mode = check_mode
        self.switch = hd.HoldSwitch(settings.hold_dir, settings.env)
        self._listening = listening
        self._connections = connections
        self._find_writers = find_writers
        self._kill_cgroup = kill_cgroup

    # ---- the forwarder: the old app port, forwarded to the target's front proxy -------------
    def forwarders(self) -> dict[str, bool]:
        return self.systemd.units(self.s.forwarder)

    def forwarding(self) -> bool:
        return any(active for unit, active in self.forwarders().items() if unit.endswith(".socket"))

    def stop_forwarder(self) -> bool:
        # sockets first, so nothing re-activates a service
        units = sorted(self.forwarders(), key=lambda unit: not unit.endswith(".socket"))
        if units:
            self.systemd.stop(*units, check=False)
            self.systemd.reset_failed(*units)
        return bool(units)

    def start_forwarder(self) -> None:
        s = self.s
        # a new name each time: a stopped transient unit may stay loaded (its cgroup lingering)
        self.systemd.run_transient(
            "%s-%d" % (s.forwarder, time.time_ns() // 1000000),
            [s.socket_proxyd, "%s:%d" % (s.target_address, s.target_port)],
            "strackt-move: forward %s to %s" % (s.env, s.target_address),
            socket_properties=("ListenStream=127.0.0.1:%d" % s.app_port, "NoDelay=yes"))

    # ---- the hold switch ------------------------------------------------------------------
    def release(self, now: bool = False) -> None:
        """Hold switch off. The retry permission stays a few seconds longer (held requests are
        retried every lb_try_interval and see the upstream healthy at the next check)."""
        self.switch.release()
        self.end_retry(now)

    @property
    def retry_timer_prefix(self) -> str:
        return "strackt-hold-%s" % self.s.env

    def end_retry(self, now: bool = False) -> None:
        """Remove the retry permission now, or by a transient timer ``hold_retry_s`` from now."""
        if now or not self.switch.retry_allowed():
            self.switch.end_retry()
            return
        rc = self.systemd.run_transient(
            "%s-%d" % (self.retry_timer_prefix, time.time_ns() // 1000000),
            [shutil.which("rm") or "/bin/rm", "-f", self.switch.retry_file],
            "strackt-move: end the retry permission of %s" % self.s.env,
            on_active_s=self.s.hold_retry_s, check=False)
        if rc != 0:
            self.switch.end_retry()

    def cancel_retry_timers(self) -> None:
        """Before a new hold: an earlier release's timer still pending would remove the new hold's
        retry permission when it fires, and Caddy 2.6 then answers every held request 503 at once
        (GETs too: with a retry matcher it retries nothing the matcher refuses). A freeze given up
        inside and confirmed again within ``hold_retry_s`` did that."""
        timers = self.systemd.units(self.retry_timer_prefix, types=("timer", "service"))
        if timers:
            self.systemd.stop(*timers, check=False)

    def drain(self, deadline: float) -> int:
        """Wait until Caddy holds (it saw the hold file) and the app answered what it had;
        returns the connections still open at ``drain_timeout`` or the budget's ``deadline``."""
        time.sleep(self.s.hold_settle_s)
        deadline = min(deadline, time.monotonic() + self.s.drain_timeout)
        while self._connections(self.s.app_port) and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._connections(self.s.app_port)

    def stop_env(self, deadline: float, in_flight: int = 0, groups: list[str] | None = None) -> str:
        """Stop every process of the env (its target) by ``deadline``; returns how (STOP_KILL or
        STOP_GRACEFUL). The stop job of the target ends once every part has stopped (it is
        ordered before them): waiting for that job is exact, where polling systemctl cost a
        poll's lag and two systemctl runs a round on a busy server. Then it is checked down,
        polled if need be (units written without that order).

        With ``stop_mode`` STOP_KILL and nothing in flight at the app port, the stop job is queued
        and then every process in the env's services' cgroups gets SIGKILL (its graceful stop
        took 0.15 s quiet, seconds under load): only for apps that acknowledge a write once it is
        durable. A request still in flight makes it the graceful stop. The stop job comes first so
        that systemd restarts nothing it sees die (Restart=on-failure). The cgroups are read and
        killed here, not by ``systemctl kill``, which reaches only a unit's main process where the
        cgroup cannot be killed (seen in nspawn containers: "Failed to send signal SIGKILL to
        auxiliary processes"). A process of the env's user outside its units is not touched: the
        writer check reports it, as with a graceful stop. ``groups``: the cgroups, read before the
        hold (``service_cgroups``); read here when not given."""
        unit = self.s.unit_name
        how = STOP_GRACEFUL
        if self.s.stop_mode == STOP_KILL and not in_flight:
            groups = self.service_cgroups() if groups is None else groups
            self.systemd.systemctl("stop", "--no-block", unit)
            for group in groups:
                self._kill_cgroup(group, max(0.0, deadline - time.monotonic()))
            how = STOP_KILL
        self.systemd.stop_within(unit, deadline - time.monotonic())
        while not self.env_down():
            if time.monotonic() >= deadline:
                raise FreezeError("%s did not stop within the freeze budget of %.1f s" % (unit, self.s.freeze_budget_s))
            time.sleep(0.01)
        return how

    def cgroups_before_the_hold(self) -> list[str] | None:
        """``service_cgroups`` for a kill stop, read before the requests are held: the systemctl
        runs cost 0.1-0.2 s, and a unit's cgroup is named after the unit (one that starts
        meanwhile the stop job still stops). None when the stop is graceful or they cannot be
        read here (``stop_env`` reads them itself then)."""
        if self.s.stop_mode != STOP_KILL:
            return None
        try:
            return self.service_cgroups()
        except Exception:  # nothing is held yet: no reason to fail the hold for it
            return None

    def service_cgroups(self) -> list[str]:
        """The cgroups of the env's services that run (``strackt-env-<env>-*.service``)."""
        pattern = "strackt-env-%s-*.service" % self.s.env
        _rc, out = self.systemd.systemctl("list-units", "--plain", "--no-legend", "--state=active", pattern)
        units = [line.split()[0] for line in out.splitlines() if line.split()]
        groups = []
        for service in units:
            _rc, group = self.systemd.systemctl("show", "-p", "ControlGroup", "--value", service)
            if group.strip():
                groups.append(group.strip())
        return groups

    def env_down(self) -> bool:
        """The env's unit is neither up nor going down, and no job of any unit of the env is
        pending (a target goes inactive before its PartOf services have stopped)."""
        _rc, out = self.systemd.systemctl("is-active", self.s.unit_name)
        if out.strip() in ACTIVE_STATES + ("deactivating",):
            return False
        prefix = "strackt-env-%s" % self.s.env
        _rc, jobs = self.systemd.systemctl("list-jobs", "--plain", "--no-legend")
        return not any(len(line.split()) > 1 and line.split()[1].startswith(prefix) for line in jobs.splitlines())

    def check_writers(self) -> None:
        """Nothing may still write the data once the env is stopped (a process of the env's
        user outside its target, a file held open for writing or mapped writable)."""
        found = self._find_writers(list(self.s.data_paths), uid=self.s.env_user)
        if found:
            more = "; and %d more" % (len(found) - 5) if len(found) > 5 else ""
            shown = "; ".join(w.describe() for w in found[:5]) + more
            raise FreezeError("%s stopped, but the data could still change: %s. Make it a process or schedule of "
                              "the env, or stop it" % (self.s.unit_name, shown))

    # ---- the states -------------------------------------------------------------------------
    def _one_at_a_time(self, state: Callable[[], dict[str, Any]], again: str) -> dict[str, Any]:
        """One freeze (or take-back) of the move at a time: a controller killed during the freeze
        leaves the module running here, and its resume (or a rollback) calls again (seen: the second
        call found the source held and stopped, no marker yet, and refused). The second waits
        for the first, then sees what it left: the release marker, or a source serving again."""
        if not self.s.key_path or self.check_mode or not os.path.isdir(self.s.key_dir):
            # no key dir: no freeze of the move can run here (it works in it), e.g. a rollback
            # run again after its first run removed the move's key
            return state()
        fd = flock_exclusive(self.s.lock_path, timeout=self.s.lock_wait_s, poll=0.05)
        if fd is None:
            raise FreezeError("another freeze of %s still runs on this server after %g s (a controller killed "
                              "during the freeze?); this call did nothing. Look at the source, then run the "
                              "%s again once that freeze ended" % (self.s.move, self.s.lock_wait_s, again),
                              source_serves=False)
        try:
            return state()
        finally:
            os.close(fd)

    def frozen(self) -> dict[str, Any]:
        return self._one_at_a_time(self._frozen_once, "switch-over")

    def _frozen_once(self) -> dict[str, Any]:
        marker = read_marker(self.s.marker_path) if self.s.key_path else None
        if marker is not None:
            return self._released_already(marker)
        unit = self.s.unit_name
        forwarding = self.forwarding()
        if forwarding and not self.systemd.is_active(unit):
            return dict(changed=False, forwarding=True,
                        msg="already frozen: %s forwards to %s" % (self.s.forwarder, self.s.target_address))
        if not forwarding and not self.systemd.is_active(unit):
            raise FreezeError("%s is not running on the source and no forwarder is either: the source may not "
                              "hold the newest data (a freeze interrupted by a reboot?). Refusing to push it "
                              "over the target; check both servers" % unit, source_serves=False, refused=True)
        if self.check_mode:
            return dict(changed=True, forwarding=False)
        # no pass of the follower may run into the freeze or after the release: it ends first
        try:
            follower.stop_for_move(self.s.move, self.systemd)
        except follower.FollowError as exc:
            raise FreezeError("%s; nothing was stopped or switched" % exc, refused=True)
        control = self.transfer.open_master()
        try:
            return self._frozen(control)
        finally:
            if control:
                self.transfer.close_master(control)

    def _released_already(self, marker: dict[str, Any]) -> dict[str, Any]:
        """A repeated call (resume) after the release: the same figures, and the hold off (a
        crash between the marker and the hold file's removal left it on)."""
        if not self.check_mode and self.switch.is_held():
            self.release()
        result = dict(marker)
        result.update(changed=False, forwarding=self.forwarding(), released=True,
                      msg="released already at %d (release marker %s)" % (marker["released_at_ns"], self.s.marker_path))
        return result

    def _catch_up(self, control: str | None) -> list[dict[str, Any]]:
        """Catch-up passes while the app serves, until one is incremental and within the final
        pass's share of the budget (the final pass copies what changed during about that long);
        refuses, nothing stopped, when none is."""
        s = self.s
        share = s.freeze_budget_s * FINAL_PASS_SHARE
        passes = []
        for _attempt in range(MAX_CATCHUP_PASSES):
            try:
                res = self.transfer.run("push", "incremental", control)
            except PASS_ERRORS as exc:
                raise FreezeError("the catch-up pass before the freeze failed, nothing was stopped: %s" % exc,
                                  refused=True)
            passes.append(res)
            full = s.journal and res.get("mode") == "full"
            if not full and float(res.get("duration_s", 0)) <= share:
                return passes
        last = passes[-1]
        why = ("would be a full one (the change journal: %s)" % last.get("journal", "cannot vouch")
               if s.journal and last.get("mode") == "full" else
               "would take about %g s (the last catch-up pass took that long), over its share %g s of the "
               "freeze budget %g s" % (round(float(last.get("duration_s", 0)), 3), round(share, 3), s.freeze_budget_s))
        raise FreezeError("the final pass %s; nothing was stopped or switched. Run sync (or wait for a quieter "
                          "moment) and confirm again" % why, refused=True)

    def _frozen(self, control: str | None) -> dict[str, Any]:
        s = self.s
        catchups = self._catch_up(control) if s.catchup_pass else []
        # leftovers of an earlier, abandoned freeze go now, not inside this one
        self.stop_forwarder()
        if self.database is not None:
            try:
                self.database.open()
            except Exception as exc:
                raise FreezeError("the database's servers cannot be reached: %s; nothing was stopped or switched"
                                  % exc, refused=True)
        try:
            return self._frozen_locked(control, catchups)
        finally:
            if self.database is not None:
                self.database.close()

    def _frozen_locked(self, control: str | None, catchups: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.s
        # no reload of the proxy (another env's site changing) may fall into the hold: it would
        # drop the held requests
        lock = hd.ProxyLock(s.hold_dir)
        try:
            lock.acquire(exclusive=False, timeout_s=PROXY_LOCK_WAIT_S)
        except hd.ProxyBusy as exc:
            raise FreezeError("the front proxy is being reloaded (%s); nothing was stopped or switched. "
                              "Confirm again" % exc, refused=True)
        try:
            self.cancel_retry_timers()
            return self._hand_over(control, catchups)
        finally:
            lock.release()

    def _hand_over(self, control: str | None, catchups: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.s
        groups = self.cgroups_before_the_hold()
        held_at_ns = time.time_ns()
        t0 = time.monotonic()
        deadline = t0 + s.freeze_budget_s
        figures: dict[str, Any] = {}
        try:
            self.switch.hold()
            left = self.drain(deadline)
            drained = time.monotonic()
            stop_mode = self.stop_env(deadline, in_flight=left, groups=groups)
            stopped = time.monotonic()
            self.check_writers()
            checked = time.monotonic()
            sync_pass = self.transfer.final(control, max(0.1, deadline - time.monotonic()))
            synced = time.monotonic()
            if synced > deadline:
                parts = (s.freeze_budget_s, drained - t0, stopped - drained, checked - stopped, synced - checked)
                raise FreezeError("the freeze budget of %g s was used up (drain %.2f s, stop %.2f s, "
                                  "writer check %.2f s, final pass %.2f s)" % parts)
            # the final pass's last run left the barrier; a pass with nothing to copy ran none
            carried = bool(sync_pass.get("barrier"))
            barrier = None
            if s.barrier:
                barrier = s.barrier_name if carried else self.transfer.push_barrier(control, max(1.0, deadline - synced))
            barriered = time.monotonic()
            database = None
            if self.database is not None:
                # the app is down on both servers: what the old database got is all there is
                database = self.database.switch(max(1.0, deadline - barriered))
            databased = time.monotonic()
            self.start_forwarder()
            if not self._listening(s.app_port):
                raise FreezeError("the forwarder %s does not listen on 127.0.0.1:%d" % (s.forwarder, s.app_port))
            released_at_ns = time.time_ns()
            released = time.monotonic()
            figures = dict(freeze_s=round(released - t0, 3), drain_s=round(drained - t0, 3),
                           stop_s=round(stopped - drained, 3), writers_s=round(checked - stopped, 3),
                           final_sync_s=round(synced - checked, 3), barrier_s=round(barriered - synced, 3),
                           forwarder_s=round(released - databased, 3), held_at_ns=held_at_ns,
                           frozen_at_ns=held_at_ns, released_at_ns=released_at_ns, barrier=barrier,
                           barrier_with_final_pass=carried,
                           undrained_connections=left, budget_s=s.freeze_budget_s, stop_mode=stop_mode,
                           sync_pass=sync_pass)
            if database is not None:
                figures.update(database_s=round(databased - barriered, 3), database=database)
            # the hand-over is a fact from here on: a rollback may pull back what the target changes
            self.write_marker(figures)
        except Exception as exc:
            undone = "; " + self.database.undo() if self.database is not None else ""
            back, serves = self._back_to_source()
            raise FreezeError("freeze abandoned: %s%s; %s (nothing was switched)" % (exc, undone, back),
                              source_serves=serves)
        self.switch.release()
        self.end_retry()
        # a reboot of the source must not start the env there again while the target serves
        rc, out = self.systemd.systemctl("disable", s.unit_name)
        if rc != 0:
            figures["warning"] = "%s could not be disabled on the source: %s" % (s.unit_name, out.strip())
        # the source's journal runs on: the check after the switch asks it whether anything wrote
        # here after the final pass
        result = dict(figures, changed=True, forwarding=True, released=True)
        if catchups:
            result["catchup_pass"] = catchups[-1]
            result["catchup_passes"] = len(catchups)
        return result

    def write_marker(self, figures: dict[str, Any]) -> None:
        data = {k: v for k, v in figures.items() if k != "sync_pass"}
        kept = ("files_changed", "bytes_changed", "mode", "duration_s")
        data["final_pass"] = {k: figures["sync_pass"].get(k) for k in kept if k in figures["sync_pass"]}
        atomic_write(self.s.marker_path, json.dumps(data, sort_keys=True) + "\n", mode=0o600)

    def _back_to_source(self) -> tuple[str, bool]:
        """Give the traffic back to the source after a failure inside the freeze."""
        self.stop_forwarder()
        rc, out = self.systemd.start(self.s.unit_name, check=False)
        # a target starts (rc 0) even when a process it wants fails: the web port says
        listening = self._listening(self.s.app_port, timeout=10.0)
        # the retry permission lingers as after a switch: a held POST is retried until Caddy's
        # health check sees the app again (ended at once, it was answered 503 "no upstreams")
        self.release()
        if rc == 0 and listening:
            return "the source serves again", True
        why = out.strip() if rc != 0 else "nothing listens on 127.0.0.1:%d" % self.s.app_port
        return "starting %s again FAILED too: %s" % (self.s.unit_name, why), False

    def released(self) -> dict[str, Any]:
        """Stop forwarding only (the end of a switched move). With ``app_port``, requests in flight
        through the forwarder finish first (bounded by ``drain_timeout``): stopping it cuts them."""
        if not self.forwarders():
            return dict(changed=False, forwarding=False)
        if not self.check_mode:
            if self.s.app_port:
                self.drain(time.monotonic() + self.s.drain_timeout)
            self.stop_forwarder()
            self.release(now=True)
        return dict(changed=True, forwarding=False)

    def thawed(self) -> dict[str, Any]:
        """Serve from here again: the source at a rollback (inside V(back)), or the new server when
        the old one could not take the env back. No data moves here."""
        unit = self.s.unit_name
        forwarding = self.forwarding()
        if self.systemd.is_active(unit) and not forwarding:
            if self.switch.is_held() and not self.check_mode:
                self.release()  # a rollback run again after a crash in its hold (held on a running env)
                return dict(changed=True, forwarding=False, msg="%s runs here; its requests are released" % unit)
            return dict(changed=False, forwarding=False, msg="%s already runs here" % unit)
        if self.check_mode:
            return dict(changed=True, forwarding=forwarding)
        self.stop_forwarder()
        self.systemd.enable(unit)
        self.systemd.start(unit)
        self.release()  # what a crashed freeze left held goes to the source, POSTs retried a while
        return dict(changed=True, forwarding=False)

    # ---- a rollback after the switch: the new server hands the traffic back ------------------
    def held(self) -> dict[str, Any]:
        """Hold the env's requests here and stop the env if it runs (the new server, at a rollback
        after the switch): no write is made here any more, and no visitor gets an error while the
        data and the database come back - the front proxy holds them until ``forwarding``
        releases them, which must come within its 10 s hold limit."""
        unit = self.s.unit_name
        if self.switch.is_held() and not self.systemd.is_active(unit):
            return dict(changed=False, held=True, msg="%s is stopped here and its requests are held" % unit,
                        **self._target_changes())
        if self.check_mode:
            return dict(changed=True, held=True)
        self.cancel_retry_timers()
        groups = self.cgroups_before_the_hold()
        held_at_ns = time.time_ns()
        t0 = time.monotonic()
        deadline = t0 + self.s.freeze_budget_s
        self.switch.hold()
        try:
            left = self.drain(deadline)
            drained = time.monotonic()
            self.stop_env(deadline, in_flight=left, groups=groups)
        except Exception as exc:
            # half held is the worst: requests wait out the proxy's limit, the env may still write
            raise FreezeError("%s; %s" % (exc, self._serve_here_again()), source_serves=False)
        stopped = time.monotonic()
        changes = self._target_changes()
        return dict(changed=True, held=True, held_at_ns=held_at_ns, undrained_connections=left,
                    drain_s=round(drained - t0, 3), stop_s=round(stopped - drained, 3),
                    journal_s=round(time.monotonic() - stopped, 3), **changes)

    def _target_changes(self) -> dict[str, Any]:
        """What this (new) server changed itself since the barrier, read once the env is stopped,
        as M(strackt.move.change_journal) state=changes returns it (under ``target_changes``); in the
        same call as the hold, which saves a module round trip inside it. A journal that cannot be
        read cannot vouch: the pull back then takes the whole tree (with its backup)."""
        s = self.s
        if not s.since_marker or not s.journal_dir:
            return {}
        paths = list(s.data_paths) or ["/"]
        root = s.env_root or "/"
        try:
            found = cj.ServerJournal(s.journal_dir, paths, root,
                                     jr.Journal(s.journal_dir, paths, self.systemd)).since_marker(s.since_marker)
        except Exception as exc:  # any failure to read: not trustworthy, never a failed hold
            return dict(target_changes=dict(trustworthy=False, reason="the change journal cannot be read: %s" % exc,
                                            changed_paths=[], changes={}))
        return dict(target_changes=dict(
            trustworthy=found.trustworthy, reason=found.reason, marker_seen=found.marker_seen,
            changed_paths=found.changed, changes=found.by_data_path(root, paths) if found.trustworthy else {}))

    def _serve_here_again(self) -> str:
        """After ``held`` failed: the env starts again and the hold ends (this server serves as
        before the rollback began)."""
        rc, out = self.systemd.start(self.s.unit_name, check=False)
        listening = rc == 0 and self._listening(self.s.app_port, timeout=10.0)
        self.release()
        if listening:
            return "its requests are released and it serves again"
        why = out.strip() if rc != 0 else "nothing listens on 127.0.0.1:%d" % self.s.app_port
        return "its requests are released, but starting %s again FAILED: %s" % (self.s.unit_name, why)

    def forwarding_on(self) -> dict[str, Any]:
        """Forward the env's app port to ``target_address`` and release what is held (the new
        server, at a rollback after the switch, once the old one serves again; holding and
        stopping first, as ``held``, if the env still runs): held requests and visitors with the
        new address cached reach the old server."""
        s = self.s
        if self.forwarding() and not self.switch.is_held():
            return dict(changed=False, forwarding=True, msg="%s forwards to %s" % (s.forwarder, s.target_address))
        if self.check_mode:
            return dict(changed=True, forwarding=True)
        held = self.held()
        if not self.forwarding():
            self.stop_forwarder()
            self.start_forwarder()
            if not self._listening(s.app_port):
                raise FreezeError("the forwarder %s does not listen on 127.0.0.1:%d; the requests stay held"
                                  % (s.forwarder, s.app_port), source_serves=False)
        self.release()
        return dict(held, changed=True, forwarding=True, released_at_ns=time.time_ns())

    def back(self) -> dict[str, Any]:
        return self._one_at_a_time(self._back_once, "rollback")

    def _back_once(self) -> dict[str, Any]:
        """The old server takes the env back, inside the new server's hold (rollback after the
        switch), in one call: pull back what the new server changed (with a backup), bring the
        database back, start the env, wait until it answers healthy. A failure before the start
        leaves the env stopped here (``started`` false: the new server may serve again, it lost
        nothing); one after it says the env was started."""
        steps = self.take_back
        if steps is None:
            raise ValueError("state=back needs its steps (pull, database, health)")
        if self.check_mode:
            return dict(changed=True, forwarding=self.forwarding())
        if steps.pull is None and self.s.key_path and os.path.exists(self.s.marker_path):
            # the rollback looked for the release before a freeze that outlived its controller
            # released: starting here would serve an old copy beside what the new server was sent
            raise FreezeError("the freeze of %s handed the traffic to the new server after this rollback looked "
                              "for it (a freeze that ran on after its controller was killed); nothing was "
                              "started here. Run the rollback again: it pulls back what the new server "
                              "changed, then starts the env here" % self.s.move, switched=True, source_serves=False)
        timings: dict[str, float] = {}
        out: dict[str, Any] = {}
        t0 = last = time.monotonic()

        def mark(name: str) -> None:
            nonlocal last
            now = time.monotonic()
            timings[name] = round(now - last, 3)
            last = now

        try:
            if steps.pull is not None:
                out["sync_pass"] = steps.pull()
                mark("pull_s")
            if steps.database is not None:
                out["database"] = steps.database()
                mark("database_s")
        except Exception as exc:
            raise FreezeError("taking %s back failed before it started here: %s; it is stopped here and the new "
                              "server still holds everything" % (self.s.env, exc), source_serves=False)
        try:
            thawed = self.thawed()
            mark("start_s")
            healthy, answers = steps.healthy()
            mark("health_s")
        except Exception as exc:
            raise FreezeError("%s was started here but: %s" % (self.s.env, exc), source_serves=False, started=True)
        if not healthy:
            raise FreezeError("%s was started here but does not answer healthy: %s" % (
                self.s.env, "; ".join("%s %s" % (a.get("domain"), a.get("status") or a.get("error")) for a in answers)),
                source_serves=False, started=True)
        out.update(thawed, changed=True, timings=timings, back_s=round(time.monotonic() - t0, 3), answers=answers)
        return out

    def run(self, state: str) -> dict[str, Any]:
        if state not in STATES:
            raise ValueError("state must be one of %s, not %r" % (", ".join(STATES), state))
        if state == "forwarding":
            return self.forwarding_on()
        try:
            return getattr(self, state)()
        except FreezeError:
            raise
        except Exception as exc:
            # whatever failed, a release marker means the target has the traffic: say so
            if state == "frozen" and self.s.key_path and os.path.exists(self.s.marker_path):
                raise FreezeError("after the release: %s" % exc, switched=True, source_serves=False)
            raise


__all__ = ["Freeze", "FreezeError", "FreezeSettings", "TakeBack", "Transfer", "SystemdError", "read_marker",
           "RELEASE_MARKER", "BARRIER_PREFIX"]
