# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The switch-over freeze on the source, and its undo: the order of the steps and what each
failure leaves behind. The parts it drives live next to it: the hold switch (``hold``), systemd
(``systemd``), the app port (``tcp``) and the passes (``Transfer`` here, over ``rsync`` and
``journal``). The freeze module only wires its arguments to ``Freeze``. Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils import tcp
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd, SystemdError

SOCKET_PROXYD = "/usr/lib/systemd/systemd-socket-proxyd"


class FreezeError(Exception):
    """The freeze (or its undo) cannot go on; the message says what state it left."""


@dataclass(frozen=True)
class FreezeSettings:
    env: str
    unit: str = ""  # default strackt-env-<env>.service
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
    reverse_sync: bool = True

    @property
    def unit_name(self) -> str:
        return self.unit or "strackt-env-%s.service" % self.env

    @property
    def forwarder(self) -> str:
        prefix = self.forwarder_prefix or "strackt-forward-%s" % self.env
        return prefix[:-len(".service")] if prefix.endswith(".service") else prefix

    @property
    def key_dir(self) -> str:
        return os.path.dirname(self.key_path or "")


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
        s = self.s
        if direction == "push" and s.journal:
            res = rs.journaled_pass(self.journal(), list(s.data_paths), s.env_root, s.target_address, s.key_path,
                                    s.known_hosts_path, timeout=s.rsync_timeout, control_path=control_path)
        else:
            res = rs.run_pass(list(s.data_paths), s.env_root, s.target_address, s.key_path, s.known_hosts_path,
                              direction=direction, timeout=s.rsync_timeout, control_path=control_path)
        res["kind"] = kind
        return res

    def stop_journal(self) -> None:
        self.journal().stop()


PASS_ERRORS = (rs.RsyncError, jr.JournalError, ValueError, OSError)


class Freeze:
    """``frozen()``, ``thawed()`` and ``released()`` return the module's result; a failure raises
    FreezeError (or SystemdError) after putting back what it can."""

    def __init__(self, settings: FreezeSettings, systemd: Systemd, transfer: Transfer | None = None,
                 check_mode: bool = False, listening: Callable[..., bool] = tcp.wait_listening,
                 connections: Callable[[int], int] = tcp.established) -> None:
        self.s = settings
        self.systemd = systemd
        self.transfer = transfer or Transfer(settings)
        self.check_mode = check_mode
        self.switch = hd.HoldSwitch(settings.hold_dir, settings.env)
        self._listening = listening
        self._connections = connections

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

    def end_retry(self, now: bool = False) -> None:
        """Remove the retry permission now, or by a transient timer ``hold_retry_s`` from now."""
        if now or not self.switch.retry_allowed():
            self.switch.end_retry()
            return
        rc = self.systemd.run_transient(
            "strackt-hold-%s-%d" % (self.s.env, time.time_ns() // 1000000),
            [shutil.which("rm") or "/bin/rm", "-f", self.switch.retry_file],
            "strackt-move: end the retry permission of %s" % self.s.env,
            on_active_s=self.s.hold_retry_s, check=False)
        if rc != 0:
            self.switch.end_retry()

    def drain(self) -> int:
        """Wait until Caddy holds (it saw the hold file) and the app answered what it had;
        returns the connections still open when ``drain_timeout`` ran out."""
        time.sleep(self.s.hold_settle_s)
        deadline = time.monotonic() + self.s.drain_timeout
        while self._connections(self.s.app_port) and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._connections(self.s.app_port)

    # ---- the states -------------------------------------------------------------------------
    def frozen(self) -> dict[str, Any]:
        unit = self.s.unit_name
        forwarding = self.forwarding()
        if forwarding and not self.systemd.is_active(unit):
            return dict(changed=False, forwarding=True,
                        msg="already frozen: %s forwards to %s" % (self.s.forwarder, self.s.target_address))
        if not forwarding and not self.systemd.is_active(unit):
            raise FreezeError("%s is not running on the source and no forwarder is either: the source may not "
                              "hold the newest data (a freeze interrupted by a reboot?). Refusing to push it "
                              "over the target; check both servers" % unit)
        if self.check_mode:
            return dict(changed=True, forwarding=False)
        control = self.transfer.open_master()
        try:
            return self._frozen(control)
        finally:
            if control:
                self.transfer.close_master(control)

    def _frozen(self, control: str | None) -> dict[str, Any]:
        s = self.s
        catchup = None
        if s.catchup_pass:
            try:
                catchup = self.transfer.run("push", "incremental", control)
            except PASS_ERRORS as exc:
                raise FreezeError("the catch-up pass before the freeze failed, nothing was stopped: %s" % exc)
        # leftovers of an earlier, abandoned freeze go now, not inside this one
        self.stop_forwarder()
        frozen_at_ns = time.time_ns()
        t0 = time.monotonic()
        try:
            self.switch.hold()
            left = self.drain()
            drained = time.monotonic()
            self.systemd.stop(s.unit_name)
            stopped = time.monotonic()
            sync_pass = self.transfer.run("push", "final", control)
            synced = time.monotonic()
            self.start_forwarder()
            if not self._listening(s.app_port):
                raise FreezeError("the forwarder %s does not listen on 127.0.0.1:%d" % (s.forwarder, s.app_port))
        except Exception as exc:
            raise FreezeError("freeze abandoned: %s; %s (nothing was switched)" % (exc, self._back_to_source()))
        self.switch.release()
        released = time.monotonic()
        released_at_ns = time.time_ns()
        self.end_retry()
        # a reboot of the source must not start the env there again while the target serves
        self.systemd.disable(s.unit_name)
        # no more passes from here to the target: the journal has done its work
        self.transfer.stop_journal()
        result = dict(changed=True, forwarding=True, freeze_s=round(released - t0, 3),
                      drain_s=round(drained - t0, 3), stop_s=round(stopped - drained, 3),
                      final_sync_s=round(synced - stopped, 3), forwarder_s=round(released - synced, 3),
                      sync_pass=sync_pass, held_at_ns=frozen_at_ns, frozen_at_ns=frozen_at_ns,
                      released_at_ns=released_at_ns,
                      undrained_connections=left)
        if catchup is not None:
            result["catchup_pass"] = catchup
        return result

    def _back_to_source(self) -> str:
        """Give the traffic back to the source after a failure inside the freeze."""
        self.stop_forwarder()
        rc, out = self.systemd.start(self.s.unit_name, check=False)
        self._listening(self.s.app_port, timeout=10.0)
        self.release(now=True)
        return "the source serves again" if rc == 0 else "starting %s again FAILED too: %s" % (self.s.unit_name, out)

    def released(self) -> dict[str, Any]:
        """Stop forwarding only (the end of a switched move)."""
        if not self.forwarders():
            return dict(changed=False, forwarding=False)
        if not self.check_mode:
            self.stop_forwarder()
            self.release(now=True)
        return dict(changed=True, forwarding=False)

    def thawed(self) -> dict[str, Any]:
        unit = self.s.unit_name
        forwarding = self.forwarding()
        if self.systemd.is_active(unit) and not forwarding:
            return dict(changed=False, forwarding=False, msg="%s already runs here" % unit)
        if self.check_mode:
            return dict(changed=True, forwarding=forwarding)
        result: dict[str, Any] = dict(changed=True, forwarding=False)
        if self.s.reverse_sync:
            try:
                result["sync_pass"] = self.transfer.run("pull", "reverse")
            except (rs.RsyncError, ValueError) as exc:
                raise FreezeError("pulling the data back from %s failed, nothing was changed here (the forwarder "
                                  "still sends traffic to the target): %s" % (self.s.target_address, exc))
        self.stop_forwarder()
        self.systemd.enable(unit)
        self.systemd.start(unit)
        self.release(now=True)
        return result

    def run(self, state: str) -> dict[str, Any]:
        if state not in ("frozen", "thawed", "released"):
            raise ValueError("state must be frozen, thawed or released, not %r" % state)
        return getattr(self, state)()


__all__ = ["Freeze", "FreezeError", "FreezeSettings", "Transfer", "SystemdError"]
