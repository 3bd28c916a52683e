#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: freeze
short_description: The switch-over freeze on the source, in one call, and its undo
version_added: 0.1.0
description:
  - Runs on the source. O(state=frozen) is the whole freeze with no Ansible round trip inside
    it. It stops the env's unit (the front proxy keeps holding requests, since nothing listens
    on the app port), makes the final rsync pass to the target, then starts a forwarder on
    C(127.0.0.1:<app_port>) to C(<target>:80) (a transient systemd socket unit running
    C(systemd-socket-proxyd)), so held requests and visitors with a stale DNS cache reach the
    target. If the final pass fails, the env's unit is started again and the module fails; the
    source keeps serving.
  - Before it stops anything it makes a catch-up pass (the app still serving), so the final
    pass inside the freeze only copies what changed in the last second or so. Both passes copy
    only what the change journal (M(strackt.move.rsync_pass)) recorded, when it can vouch for it.
  - Hold, don't error. The env's Caddy site checks C(127.0.0.1:<hold port>/<env>) as its
    upstream's health (provisioned by the C(provision) role); while the file C(<hold_dir>/<env>)
    exists that check fails, and Caddy holds new requests instead of sending them to the app.
    The freeze creates that file first, waits until no connection to the app is open (requests
    in flight finish normally, nothing is reset), stops the app, makes the final pass, starts
    the forwarder, then removes the file; the held requests go through the forwarder to the
    target. No proxy reload happens (a reload drops held requests).
  - O(state=thawed) undoes it for a rollback after the switch; optionally pulls the target's
    data back first (O(reverse_sync)), stops the forwarder and starts the env's unit again.
  - C(freeze_s) is the time from holding new requests to releasing them to the forwarder.
  - In check mode nothing is stopped or started; it reports whether it would change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
options:
  env:
    description: The env's name.
    type: str
    required: true
  app_port:
    description: (V(frozen), V(thawed)) The env's app port (the forwarder listens on 127.0.0.1:app_port).
    type: int
  unit:
    description: The env's unit; default C(strackt-env-<env>.service).
    type: str
  forwarder_unit:
    description:
      - Name prefix of the transient forwarder units (socket and service), default
        C(strackt-forward-<env>); each freeze adds a unique suffix.
    type: str
  target_address:
    description: (V(frozen), V(thawed)) The target's address.
    type: str
  target_port:
    description: The target's front proxy port.
    type: int
    default: 80
  env_root:
    description: (V(frozen), V(thawed)) The env's root.
    type: path
  data_paths:
    description: (V(frozen), V(thawed)) The env's data paths.
    type: list
    elements: path
  key_path:
    description: (V(frozen), V(thawed)) The move's private key on the source.
    type: path
  known_hosts_path:
    description: (V(frozen), V(thawed)) The known_hosts pinning the target's host key.
    type: path
  state:
    description:
      - V(frozen) hands traffic to the target; V(thawed) gives it back to the source;
        V(released) only stops the forwarder (the end of a switched move).
    type: str
    choices: [frozen, thawed, released]
    default: frozen
  reverse_sync:
    description: With O(state=thawed), pull the data back from the target before starting the unit.
    type: bool
    default: true
  socket_proxyd:
    description: Path of systemd-socket-proxyd.
    type: path
    default: /usr/lib/systemd/systemd-socket-proxyd
  rsync_timeout:
    description: Seconds the final pass may take before the freeze is abandoned.
    type: float
    default: 600
  hold_dir:
    description: Directory of the hold files the env's Caddy health check looks at.
    type: path
    default: /run/strackt-move/hold
  hold_settle_s:
    description:
      - Seconds from creating the hold file until Caddy is sure to have seen it (its health
        check interval, 50 ms as provisioned, plus a margin).
    type: float
    default: 0.08
  hold_retry_s:
    description:
      - Seconds after the release during which held non-GET requests may still be retried
        (the file C(<hold_dir>/<env>.retry), removed by a transient timer).
    type: float
    default: 5
  drain_timeout:
    description: Seconds to wait for requests in flight to the app to finish before stopping it anyway.
    type: float
    default: 10
  journal:
    description: Use the change journal for the catch-up and final passes (else full passes).
    type: bool
    default: true
  catchup_pass:
    description: Make a catch-up pass before the freeze.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Freeze, final pass, forward to the target
  strackt.move.freeze:
    env: shop
    app_port: 8001
    target_address: 10.77.0.12
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    key_path: /root/.strackt-move/shop-20261125T123456Z/id_ed25519
    known_hosts_path: /root/.strackt-move/shop-20261125T123456Z/known_hosts
  register: freeze
"""

RETURN = r"""
freeze_s:
  description: Requests held to requests released to the forwarder, seconds (O(state=frozen)).
  returned: when it froze
  type: float
sync_pass:
  description: The final (or reverse) pass figures, as M(strackt.move.rsync_pass) returns them.
  returned: when a pass ran
  type: dict
catchup_pass:
  description: The catch-up pass before the freeze (figures as M(strackt.move.rsync_pass) returns them).
  returned: when it froze and O(catchup_pass)
  type: dict
frozen_at_ns:
  description: When the freeze began holding requests (ns since the epoch, this server's clock).
  returned: when it froze
  type: int
released_at_ns:
  description:
    - When the held requests were released to the target (ns since the epoch, this server's
      clock). The source was stopped before it, so a target entry modified at or after it was
      written on the target.
  returned: when it froze
  type: int
forwarding:
  description: Whether the forwarder is active after the call.
  returned: always
  type: bool
"""

import datetime
import os
import re
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


class Freeze:
    def __init__(self, module):
        self.m = module
        p = module.params
        self.p = p
        self.unit = p["unit"] or "strackt-env-%s.service" % p["env"]
        fwd = p["forwarder_unit"] or "strackt-forward-%s" % p["env"]
        self.fwd = fwd[:-len(".service")] if fwd.endswith(".service") else fwd
        self.systemctl = module.get_bin_path("systemctl", required=True)

    def sh(self, argv, check=True):
        rc, out, err = self.m.run_command(argv)
        if check and rc != 0:
            raise RuntimeError("%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return rc, out

    def active(self, unit):
        rc, out = self.sh([self.systemctl, "is-active", unit], check=False)
        return out.strip() in ("active", "activating", "reloading")

    def listening(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.p["app_port"]), timeout=0.5):
                    return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)

    def journal(self):
        return jr.Journal(os.path.join(os.path.dirname(self.p["key_path"]), "journal"), self.p["data_paths"])

    def control_path(self):
        return os.path.join(os.path.dirname(self.p["key_path"]), "ssh-master")

    def final_pass(self, direction, kind, control_path=None):
        p = self.p
        if direction == "push" and p["journal"]:
            res = rs.journaled_pass(self.journal(), p["data_paths"], p["env_root"], p["target_address"],
                                    p["key_path"], p["known_hosts_path"], timeout=p["rsync_timeout"],
                                    control_path=control_path)
        else:
            res = rs.run_pass(p["data_paths"], p["env_root"], p["target_address"], p["key_path"],
                              p["known_hosts_path"], direction=direction, timeout=p["rsync_timeout"],
                              control_path=control_path)
        res["kind"] = kind
        res["started_at"] = datetime.datetime.fromtimestamp(
            res["started_at_ns"] / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return res

    def forwarders(self):
        """{unit: active} of this env's forwarder units (sockets and services)."""
        rc, out = self.sh([self.systemctl, "list-units", "--all", "--plain", "--no-legend",
                           "--type=socket,service", self.fwd + "-*"], check=False)
        units = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and re.match(re.escape(self.fwd) + r"-[0-9]+\.(socket|service)$", parts[0]):
                units[parts[0]] = parts[2] == "active"
        return units

    def forwarding(self):
        return any(active for unit, active in self.forwarders().items() if unit.endswith(".socket"))

    def stop_forwarder(self):
        units = sorted(self.forwarders(), key=lambda u: not u.endswith(".socket"))
        if units:
            # sockets first, so nothing re-activates a service
            self.sh([self.systemctl, "stop"] + units, check=False)
            self.sh([self.systemctl, "reset-failed"] + units, check=False)
        return bool(units)

    def start_forwarder(self):
        p = self.p
        # a new name each time: a stopped transient unit may stay loaded (its cgroup lingering)
        name = "%s-%d" % (self.fwd, time.time_ns() // 1000000)
        self.sh([
            self.m.get_bin_path("systemd-run", required=True),
            "--unit=" + name, "--collect",
            "--description=strackt-move: forward %s to %s" % (p["env"], p["target_address"]),
            "--socket-property=ListenStream=127.0.0.1:%d" % p["app_port"],
            "--socket-property=NoDelay=yes",
            p["socket_proxyd"], "%s:%d" % (p["target_address"], p["target_port"]),
        ])

    # ---- holding requests at the front proxy -------------------------------------
    def hold_file(self):
        return os.path.join(self.p["hold_dir"], self.p["env"])

    def hold(self):
        """Hold switch on: Caddy's health check of the app fails (no upstream: requests wait),
        and held non-GET requests may be retried (Caddy 2.6 gives up on them otherwise)."""
        os.makedirs(self.p["hold_dir"], 0o755, exist_ok=True)
        os.chmod(self.p["hold_dir"], 0o755)
        for path in (self.hold_file() + ".retry", self.hold_file()):
            with open(path, "w") as f:
                f.write("strackt-move freeze of %s\n" % self.p["env"])

    def release_hold(self):
        try:
            os.unlink(self.hold_file())
        except FileNotFoundError:
            pass

    def release(self, now=False):
        """Hold switch off. The retry permission stays a few seconds longer (the held requests
        are retried every lb_try_interval and see the upstream healthy at the next check)."""
        self.release_hold()
        self.end_retry(now)

    def end_retry(self, now=False):
        """Remove the retry permission now, or (a transient timer) `hold_retry_s` from now."""
        retry = self.hold_file() + ".retry"
        if now or not os.path.exists(retry):
            if os.path.exists(retry):
                os.unlink(retry)
            return
        rc, _out = self.sh([self.m.get_bin_path("systemd-run", required=True), "--quiet", "--collect",
                            "--unit=strackt-hold-%s-%d" % (self.p["env"], time.time_ns() // 1000000),
                            "--on-active=%d" % max(1, int(round(self.p["hold_retry_s"]))),
                            "--description=strackt-move: end the retry permission of %s" % self.p["env"],
                            self.m.get_bin_path("rm", required=True), "-f", retry], check=False)
        if rc != 0:
            os.unlink(retry)

    def connections(self):
        """TCP connections to the app port in ESTABLISHED state (in flight or queued)."""
        port = "%04X" % self.p["app_port"]
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if fields[1].rsplit(":", 1)[1] == port and fields[3] == "01":
                            count += 1
            except (OSError, StopIteration):
                continue
        return count

    def drain(self):
        """Wait until Caddy holds (the hold file was seen) and the app has answered what it had."""
        time.sleep(self.p["hold_settle_s"])
        deadline = time.monotonic() + self.p["drain_timeout"]
        while self.connections() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.connections()

    def frozen(self):
        forwarding = self.forwarding()
        if forwarding and not self.active(self.unit):
            return dict(changed=False, forwarding=True, msg="already frozen: %s forwards to %s"
                        % (self.fwd, self.p["target_address"]))
        if not forwarding and not self.active(self.unit):
            self.m.fail_json(msg="%s is not running on the source and no forwarder is either: the "
                                 "source may not hold the newest data (a freeze interrupted by a "
                                 "reboot?). Refusing to push it over the target; check both servers"
                             % self.unit)
        if self.m.check_mode:
            return dict(changed=True, forwarding=False)
        # one ssh connection for the passes: its handshake is not paid inside the freeze
        control = self.control_path()
        if not rs.open_master(self.p["key_path"], self.p["known_hosts_path"], self.p["target_address"], control):
            control = None  # each rsync connects on its own: slower, still right
        try:
            return self._frozen(control)
        finally:
            if control:
                rs.close_master(control, self.p["target_address"])

    def _frozen(self, control):
        catchup = None
        if self.p["catchup_pass"]:
            try:
                catchup = self.final_pass("push", "incremental", control)
            except (rs.RsyncError, jr.JournalError, ValueError, OSError) as exc:
                self.m.fail_json(msg="the catch-up pass before the freeze failed, nothing was stopped: %s" % exc)
        # leftovers of an earlier, abandoned freeze go now, not inside this one
        self.stop_forwarder()
        frozen_at_ns = time.time_ns()
        t0 = time.monotonic()
        try:
            self.hold()
            left = self.drain()
            drained = time.monotonic()
            self.sh([self.systemctl, "stop", self.unit])
            stopped = time.monotonic()
            sync_pass = self.final_pass("push", "final", control)
            synced = time.monotonic()
            self.start_forwarder()
            if not self.listening():
                raise RuntimeError("the forwarder %s does not listen on 127.0.0.1:%d"
                                   % (self.fwd, self.p["app_port"]))
        except Exception as exc:
            # give the traffic back to the source before reporting
            self.stop_forwarder()
            rc, out = self.sh([self.systemctl, "start", self.unit], check=False)
            self.listening(timeout=10.0)
            self.release()
            back = "the source serves again" if rc == 0 else "starting %s again FAILED too: %s" % (self.unit, out)
            self.m.fail_json(msg="freeze abandoned: %s; %s (nothing was switched)" % (exc, back))
        self.release_hold()
        released = time.monotonic()
        released_at_ns = time.time_ns()
        self.end_retry()
        # a reboot of the source must not start the env there again while the target serves
        self.sh([self.systemctl, "disable", self.unit], check=False)
        # no more passes from here to the target: the journal has done its work
        self.journal().stop()
        result = dict(changed=True, forwarding=True, freeze_s=round(released - t0, 3),
                      drain_s=round(drained - t0, 3), stop_s=round(stopped - drained, 3),
                      final_sync_s=round(synced - stopped, 3), forwarder_s=round(released - synced, 3),
                      sync_pass=sync_pass, frozen_at_ns=frozen_at_ns, released_at_ns=released_at_ns,
                      undrained_connections=left)
        if catchup is not None:
            result["catchup_pass"] = catchup
        return result

    def released(self):
        """Stop forwarding only (the end of a switched move)."""
        if not self.forwarders():
            return dict(changed=False, forwarding=False)
        if not self.m.check_mode:
            self.stop_forwarder()
            self.release(now=True)
        return dict(changed=True, forwarding=False)

    def thawed(self):
        forwarding = self.forwarding()
        running = self.active(self.unit)
        if running and not forwarding:
            return dict(changed=False, forwarding=False, msg="%s already runs here" % self.unit)
        if self.m.check_mode:
            return dict(changed=True, forwarding=forwarding)
        result = dict(changed=True, forwarding=False)
        if self.p["reverse_sync"]:
            try:
                result["sync_pass"] = self.final_pass("pull", "reverse")
            except (rs.RsyncError, ValueError) as exc:
                self.m.fail_json(msg="pulling the data back from %s failed, nothing was changed here "
                                     "(the forwarder still sends traffic to the target): %s"
                                     % (self.p["target_address"], exc))
        self.stop_forwarder()
        self.sh([self.systemctl, "enable", self.unit], check=False)
        self.sh([self.systemctl, "start", self.unit])
        self.release(now=True)
        return result

    def run(self):
        try:
            result = getattr(self, self.p["state"])()
        except RuntimeError as exc:
            self.m.fail_json(msg=str(exc))
        self.m.exit_json(**result)


NEEDED = ["app_port", "target_address", "env_root", "data_paths", "key_path", "known_hosts_path"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env=dict(type="str", required=True),
            app_port=dict(type="int"),
            unit=dict(type="str"),
            forwarder_unit=dict(type="str"),
            target_address=dict(type="str"),
            target_port=dict(type="int", default=80),
            env_root=dict(type="path"),
            data_paths=dict(type="list", elements="path"),
            key_path=dict(type="path", no_log=False),
            known_hosts_path=dict(type="path"),
            state=dict(type="str", default="frozen", choices=["frozen", "thawed", "released"]),
            reverse_sync=dict(type="bool", default=True),
            socket_proxyd=dict(type="path", default="/usr/lib/systemd/systemd-socket-proxyd"),
            rsync_timeout=dict(type="float", default=600),
            hold_dir=dict(type="path", default="/run/strackt-move/hold"),
            hold_settle_s=dict(type="float", default=0.08),
            hold_retry_s=dict(type="float", default=5),
            drain_timeout=dict(type="float", default=10),
            journal=dict(type="bool", default=True),
            catchup_pass=dict(type="bool", default=True),
        ),
        required_if=[("state", "frozen", NEEDED), ("state", "thawed", NEEDED)],
        supports_check_mode=True,
    )
    Freeze(module).run()


if __name__ == "__main__":
    main()
