"""The freeze's parts, each on its own: the hold switch's files, the systemd wrapper, the
/proc/net/tcp reader, and the order of the freeze's steps with fake systemd and passes."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils import tcp
from ansible_collections.strackt.move.plugins.module_utils import writers as wr
from ansible_collections.strackt.move.plugins.module_utils.environment import parse_environment
from ansible_collections.strackt.move.plugins.module_utils.freeze import (
    FREEZE_LOCK,
    Freeze,
    FreezeError,
    FreezeSettings,
    TakeBack,
    read_marker,
)
from ansible_collections.strackt.move.plugins.module_utils.move_store import flock_exclusive
from ansible_collections.strackt.move.plugins.module_utils.systemd import (
    TIMED_OUT,
    Systemd,
    SystemdError,
    parse_list_units,
    transient_argv,
)

# ---- the hold switch ----------------------------------------------------------------------


def test_hold_switch_files(tmp_path):
    switch = hd.HoldSwitch(str(tmp_path / "hold"), "shop")
    assert not switch.is_held()
    switch.hold()
    assert switch.is_held() and switch.retry_allowed()
    assert (tmp_path / "hold" / "shop").exists() and (tmp_path / "hold" / "shop.retry").exists()
    assert oct((tmp_path / "hold").stat().st_mode & 0o777) == "0o755"  # Caddy's file matcher reads it
    switch.release()
    assert not switch.is_held() and switch.retry_allowed()
    switch.end_retry()
    switch.release()  # again: nothing left, no error
    assert not switch.retry_allowed()


def test_hold_settings_reach_the_env_definition():
    """One place: the templates (through to_dict) and the freeze (its defaults) read hold.py."""
    env = parse_environment("shop", {
        "server": "srv1", "repo": "git://h/shop.git", "branch": "main", "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test"], "port": 8001, "user": "shop",
        "uid": 1100, "memory_mb": 1, "disk_headroom_mb": 0, "processes": {"web": "gunicorn app:app"}})
    data = env.to_dict()
    assert (data["hold_dir"], data["hold_port"], data["hold_check_interval"]) == \
        (hd.HOLD_DIR, hd.HOLD_PORT, hd.HOLD_CHECK_INTERVAL)
    settings = FreezeSettings(env="shop")
    assert settings.hold_dir == hd.HOLD_DIR
    assert settings.hold_settle_s > hd.HOLD_CHECK_INTERVAL_MS / 1000.0  # one check always falls in it


# ---- systemd -------------------------------------------------------------------------------

class FakeRun:
    """Answers argv by prefix; records every call."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        for prefix, answer in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return answer
        return 0, "", ""


def test_list_units_and_forwarder_units_by_prefix():
    out = ("strackt-forward-shop-1700.socket loaded active listening forward\n"
           "strackt-forward-shop-1700.service loaded inactive dead forward\n"
           "strackt-forward-shopx-1.socket loaded active listening other env\n")
    assert parse_list_units(out)["strackt-forward-shop-1700.service"] == "inactive"
    systemd = Systemd(FakeRun({("systemctl", "list-units"): (0, out, "")}))
    assert systemd.units("strackt-forward-shop") == {"strackt-forward-shop-1700.socket": True,
                                                     "strackt-forward-shop-1700.service": False}


def test_transient_argv_socket_and_timer():
    argv = transient_argv("fwd-1", ["/proxyd", "10.0.0.2:80"], "forward", socket_properties=["ListenStream=1"])
    assert argv[:2] == ["systemd-run", "--unit=fwd-1"] and "--collect" in argv
    assert "--socket-property=ListenStream=1" in argv and argv[-2:] == ["/proxyd", "10.0.0.2:80"]
    assert "--on-active=5" in transient_argv("t", ["rm"], "x", on_active_s=4.6)
    assert "--on-active=1" in transient_argv("t", ["rm"], "x", on_active_s=0.2)  # never 0: that means now


def test_failed_command_names_itself():
    systemd = Systemd(FakeRun({("systemctl", "stop"): (5, "", "Unit x.service not loaded.")}))
    with pytest.raises(SystemdError, match=r"systemctl stop x.service failed \(rc 5\): Unit x.service not loaded"):
        systemd.stop("x.service")
    assert systemd.stop("x.service", check=False)[0] == 5


def test_stop_within_waits_for_the_stop_job_bounded_by_timeout():
    run = FakeRun({("timeout",): (TIMED_OUT, "", "")})
    systemd = Systemd(run)
    assert systemd.stop_within("strackt-env-shop.target", 0.25) == (TIMED_OUT, "")
    assert run.calls == [["timeout", "0.250", "systemctl", "stop", "strackt-env-shop.target"]]
    systemd.stop_within("x.target", -1.0)  # a budget used up already: the shortest wait, never none
    assert run.calls[-1][1] == "0.001"


class LingeringUnit:
    """systemd as seen right after ``systemctl stop`` of a transient unit: it stays loaded
    (inactive) until systemd's garbage collection unloads it, ``unload_after`` queries later."""

    ALREADY = "Failed to start transient service unit: Unit j.service was already loaded or has a fragment file."

    def __init__(self, unload_after: int, active: str = "inactive") -> None:
        self.unload_after = unload_after
        self.active = active
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        loaded = self.unload_after > 0
        if argv[:2] == ["systemctl", "show"]:
            self.unload_after -= 1
            return 0, "LoadState=%s\nActiveState=%s\n" % ("loaded" if loaded else "not-found", self.active), ""
        if argv[0] == "systemd-run":
            return (1, "", self.ALREADY) if loaded else (0, "", "")
        return 0, "", ""


def test_a_transient_unit_restarted_under_its_name_waits_for_the_stopped_one_to_be_unloaded():
    # seen in CI: the change journal's restart right after its stop met the old unit still loaded
    run = LingeringUnit(unload_after=3)
    naps: list[float] = []
    systemd = Systemd(run, sleep=naps.append)
    assert systemd.run_transient("j.service", ["/bin/true"], "journal") == 0
    assert [c[0] for c in run.calls].count("systemd-run") == 2 and naps


def test_a_transient_unit_that_never_unloads_fails_naming_it_after_a_bounded_wait():
    run = LingeringUnit(unload_after=10 ** 6)
    naps: list[float] = []
    systemd = Systemd(run, sleep=naps.append)
    with pytest.raises(SystemdError, match=r"cannot start j.service: .*already loaded"):
        systemd.run_transient("j.service", ["/bin/true"], "journal")
    assert 0 < sum(naps) <= 11.0  # ten seconds and one last nap


def test_a_running_unit_of_that_name_is_refused_at_once():
    run = LingeringUnit(unload_after=10 ** 6, active="active")
    naps: list[float] = []
    with pytest.raises(SystemdError, match="already loaded"):
        Systemd(run, sleep=naps.append).run_transient("j.service", ["/bin/true"], "journal")
    assert naps == [] and [c[0] for c in run.calls].count("systemd-run") == 1


# ---- /proc/net/tcp ---------------------------------------------------------------------------

TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1100        0 1 1
   1: 0100007F:1F41 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000  1100        0 2 1
   2: 0100007F:D2A4 0100007F:1F41 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:1F41 0100007F:D2A6 06 00000000:00000000 00:00000000 00000000     0        0 4 1
"""


def test_established_counts_only_the_app_port_side():
    # 0x1F41 = 8001: the listener (0A) and TIME_WAIT (06) do not count, nor the client's end
    assert tcp.count_in_table(TABLE, 8001) == 1
    assert tcp.count_in_table(TABLE, 8002) == 0


def _diag_msg(sport: int, state: int = tcp.TCP_ESTABLISHED, kind: int = tcp.SOCK_DIAG_BY_FAMILY) -> bytes:
    # nlmsghdr + inet_diag_msg (family, state, timer, retrans, sockid ..., expires, queues, uid, inode)
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + struct.pack("!HH", sport, 40000) + bytes(44 + 20)
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body


def test_sock_diag_answers_are_counted_by_local_port_until_done():
    done = struct.pack("=IHHII", 20, tcp.NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)
    assert tcp.count_in_diag(_diag_msg(8001) + _diag_msg(8002) + _diag_msg(8001), 8001) == (2, False)
    assert tcp.count_in_diag(_diag_msg(8001) + done, 8001) == (1, True)
    error = struct.pack("=IHHII", 20, tcp.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -13)
    with pytest.raises(OSError, match="sock_diag: Permission denied"):
        tcp.count_in_diag(error, 8001)
    request = tcp.diag_request(socket.AF_INET6, 1 << tcp.TCP_ESTABLISHED)
    assert len(request) == 16 + 56 and struct.unpack_from("=IH", request) == (72, tcp.SOCK_DIAG_BY_FAMILY)
    assert struct.unpack_from("=BBBxI", request, 16) == (socket.AF_INET6, socket.IPPROTO_TCP, 0, 2)


def test_sock_diag_and_the_tables_agree_on_a_real_socket_and_its_backlog():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [server.accept()[0] for _ in range(2)]  # the third waits in the backlog: it counts too
    try:
        assert tcp.diag_count(port) == tcp.established_in_tables(port) == tcp.established(port) == 3
    finally:
        for sock in clients + accepted + [server]:
            sock.close()


def test_established_and_listening_on_a_real_socket(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        assert tcp.wait_listening(port, timeout=1)
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        assert tcp.established(port) == 1
        client.close()
        conn.close()
    finally:
        server.close()
    assert not tcp.wait_listening(port, timeout=0.1)


# ---- the freeze's steps ----------------------------------------------------------------------

class FakeSystemd(Systemd):
    """The env's unit and its forwarders, as systemctl would report them."""

    def __init__(self, app_running: bool = True, forwarders: dict[str, bool] | None = None,
                 fail_start: bool = False, stop_takes: int = 0, fail_disable: bool = False,
                 stop_hangs: bool = False) -> None:
        super().__init__(run=self._refuse)
        self.stop_hangs = stop_hangs
        self.stop_timeouts: list[float] = []
        self.fail_disable = fail_disable
        self.jobs = ""  # list-jobs output
        self.app_running = app_running
        self.fwd = dict(forwarders or {})
        self.fail_start = fail_start
        self.stop_takes = stop_takes  # is_active answers True this many times after a stop
        self.log: list[str] = []

    @staticmethod
    def _refuse(argv: list[str]) -> tuple[int, str, str]:
        raise AssertionError(f"unexpected command {argv}")

    def systemctl(self, *args: str, check: bool = False) -> tuple[int, str]:
        if args[0] == "is-active":
            if not self.app_running and self.stop_takes:
                self.stop_takes -= 1
                return 3, "deactivating\n"
            return (0, "active\n") if self.app_running else (3, "inactive\n")
        if args[0] == "list-jobs":
            self.log.append("list-jobs")
            return 0, self.jobs
        if args[0] == "disable":
            self.log.append(f"disable {args[1]}")
            return (1, "Failed to disable: read-only file system") if self.fail_disable else (0, "")
        raise AssertionError(f"unexpected systemctl {args}")

    def stop_within(self, unit: str, timeout_s: float) -> tuple[int, str]:
        self.stop_timeouts.append(timeout_s)
        if self.stop_hangs:  # the job outlives the wait: the unit stays deactivating
            self.log.append("stop " + unit)
            self.app_running = False
            self.stop_takes = 10 ** 6
            return TIMED_OUT, ""
        return self.stop(unit)

    def is_active(self, unit: str) -> bool:
        return self.app_running if unit.startswith("strackt-env-") else self.fwd.get(unit, False)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        return {"ActiveState": "active" if self.is_active(unit) else "inactive", "ControlGroup": ""}

    def units(self, prefix: str, types: Any = ("socket", "service")) -> dict[str, bool]:
        return {unit: active for unit, active in self.fwd.items() if unit.startswith(prefix + "-")}

    def start(self, unit: str, check: bool = True) -> tuple[int, str]:
        self.log.append(f"start {unit}")
        if self.fail_start:
            return 1, "start failed"
        self.app_running = True
        return 0, ""

    def stop(self, *units: str, check: bool = True) -> tuple[int, str]:
        self.log.append("stop " + " ".join(units))
        for unit in units:
            if unit.startswith("strackt-env-"):
                self.app_running = False
            self.fwd.pop(unit, None)
        return 0, ""

    def enable(self, unit: str) -> tuple[int, str]:
        self.log.append(f"enable {unit}")
        return 0, ""

    def disable(self, unit: str) -> tuple[int, str]:
        self.log.append(f"disable {unit}")
        return 0, ""

    def reset_failed(self, *units: str) -> tuple[int, str]:
        return 0, ""

    def run_transient(self, unit: str, command: Any, description: str, check: bool = True, **kwargs: Any) -> int:
        self.log.append(f"run {unit.rsplit('-', 1)[0]}")
        if unit.startswith("strackt-forward-"):
            self.fwd[unit + ".socket"] = True
        return 0


class FakeTransfer:
    def __init__(self, fail: str | None = None, catchups: list[dict[str, Any]] | None = None,
                 final_s: float = 0.0, carries_barrier: bool = False) -> None:
        self.fail = fail  # the kind of pass that fails
        self.carries_barrier = carries_barrier  # the final pass's last run leaves the barrier
        self.catchups = list(catchups or [])  # figures of the catch-up passes, in turn
        self.final_s = final_s
        self.passes: list[tuple[str, str, str | None]] = []
        self.journal_stopped = False
        self.closed: list[str] = []

    def open_master(self) -> str:
        return "/keys/m/ssh-master"

    def close_master(self, control_path: str) -> None:
        self.closed.append(control_path)

    def run(self, direction: str, kind: str, control_path: str | None = None) -> dict[str, Any]:
        self.passes.append((direction, kind, control_path))
        if kind == self.fail:
            raise rs.RsyncError("rsync exited 12: connection lost")
        figures = self.catchups.pop(0) if self.catchups else {"mode": "incremental", "duration_s": 0.1}
        return dict({"kind": kind, "files_changed": 1, "started_at_ns": 1}, **figures)

    def final(self, control_path: str | None, timeout: float) -> dict[str, Any]:
        self.passes.append(("push", "final", control_path))
        self.timeout = timeout
        if self.fail == "final":
            raise rs.RsyncError("rsync exited 12: connection lost")
        if self.final_s:
            time.sleep(self.final_s)
        return {"kind": "final", "files_changed": 1, "started_at_ns": 1, "mode": "incremental",
                "barrier": self.carries_barrier}

    def push_barrier(self, control_path: str | None, timeout: float) -> str:
        self.passes.append(("push", "barrier", control_path))
        return ".strackt-barrier-m"

    def stop_journal(self) -> None:
        self.journal_stopped = True


def freeze(tmp_path, systemd: FakeSystemd, transfer: FakeTransfer, listening: bool = True,
           connections: list[int] | None = None, writers: list[Any] | None = None,
           **overrides: Any) -> tuple[Freeze, list[str]]:
    events: list[str] = []
    counts = list(connections or [0])

    def connected(port: int) -> int:
        events.append(f"drain with hold {'on' if (tmp_path / 'hold' / 'shop').exists() else 'off'}")
        return counts.pop(0) if len(counts) > 1 else counts[0]

    def find_writers(paths: list[str], uid: int | None = None) -> list[Any]:
        events.append(f"writers of {paths} uid {uid} with the env {'running' if systemd.app_running else 'stopped'}")
        return list(writers or [])

    keys = tmp_path / "keys" / "shop-1"
    keys.mkdir(parents=True, exist_ok=True)
    values = dict(env="shop", app_port=8001, target_address="10.0.0.2", env_root="/srv/shop",
                  data_paths=("/srv/shop/data",), key_path=str(keys / "id"), known_hosts_path=str(keys / "kh"),
                  hold_dir=str(tmp_path / "hold"), hold_settle_s=0, drain_timeout=1, env_user=1100)
    values.update(overrides)
    return Freeze(FreezeSettings(**values), systemd, transfer, listening=lambda port, timeout=5.0: listening,
                  connections=connected, find_writers=find_writers), events


def marker(tmp_path) -> Any:
    return tmp_path / "keys" / "shop-1" / "released.json"


def a_running_freeze_that_releases(tmp_path, after_s: float = 0.3) -> None:
    """A freeze of the move still running here (a killed controller's): it holds the move's
    freeze lock, writes its release marker after ``after_s``, then ends."""
    import threading

    held = flock_exclusive(str(tmp_path / "keys" / "shop-1" / FREEZE_LOCK))
    assert held is not None

    def releases() -> None:
        time.sleep(after_s)
        marker(tmp_path).write_text(json.dumps({"released_at_ns": 7, "freeze_s": 1.2}))
        os.close(held)

    threading.Thread(target=releases).start()


def test_frozen_holds_drains_stops_checks_copies_barrier_forwards_then_releases(tmp_path):
    systemd, transfer = FakeSystemd(stop_takes=3), FakeTransfer()
    fz, events = freeze(tmp_path, systemd, transfer, connections=[2, 1, 0])
    result = fz.frozen()
    assert [kind for _d, kind, _c in transfer.passes] == ["incremental", "final", "barrier"]
    assert all(c == "/keys/m/ssh-master" for _d, _k, c in transfer.passes)
    assert transfer.closed == ["/keys/m/ssh-master"]
    drains = [e for e in events if e.startswith("drain")]
    assert drains and set(drains) == {"drain with hold on"}  # never drained without holding
    # the writer check comes after the stop (polled until down), before the final pass
    assert events[-1] == "writers of ['/srv/shop/data'] uid 1100 with the env stopped"
    assert [line for line in systemd.log if line != "list-jobs"][:2] == ["stop strackt-env-shop.service",
                                                                        "run strackt-forward-shop"]
    assert "disable strackt-env-shop.service" in systemd.log and "run strackt-hold-shop" in systemd.log
    assert not (tmp_path / "hold" / "shop").exists()  # released
    assert (tmp_path / "hold" / "shop.retry").exists()  # the timer ends the retry permission later
    # the source's journal keeps running: the check after the switch reads it
    assert not transfer.journal_stopped and result["forwarding"] and result["changed"] and result["released"]
    assert result["sync_pass"]["kind"] == "final" and result["catchup_pass"]["kind"] == "incremental"
    assert result["released_at_ns"] >= result["held_at_ns"] and result["undrained_connections"] == 0
    assert result["barrier"] == ".strackt-barrier-m"
    for part in ("freeze_s", "drain_s", "stop_s", "writers_s", "final_sync_s", "barrier_s", "forwarder_s"):
        assert result[part] >= 0
    saved = json.loads(marker(tmp_path).read_text())
    assert saved["released_at_ns"] == result["released_at_ns"] and saved["barrier"] == result["barrier"]
    assert oct(marker(tmp_path).stat().st_mode & 0o777) == "0o600"


def test_a_final_pass_that_left_the_barrier_saves_the_barriers_own_run(tmp_path):
    transfer = FakeTransfer(carries_barrier=True)
    fz, _ = freeze(tmp_path, FakeSystemd(), transfer)
    result = fz.frozen()
    assert [kind for _d, kind, _c in transfer.passes] == ["incremental", "final"]
    assert result["barrier"] == ".strackt-barrier-shop-1" and result["barrier_with_final_pass"] is True
    saved = json.loads(marker(tmp_path).read_text())
    assert saved["barrier"] == ".strackt-barrier-shop-1" and saved["barrier_with_final_pass"] is True


def test_the_stop_waits_for_the_job_within_the_budget_and_a_stop_outliving_it_gives_the_traffic_back(tmp_path):
    systemd = FakeSystemd()
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(), freeze_budget_s=3)
    fz.frozen()
    assert len(systemd.stop_timeouts) == 1 and 2.5 < systemd.stop_timeouts[0] <= 3
    systemd = FakeSystemd(stop_hangs=True)
    fz, _ = freeze(tmp_path / "b", systemd, FakeTransfer(), freeze_budget_s=0.2)
    with pytest.raises(FreezeError, match=r"did not stop within the freeze budget of 0.2 s.*the source serves again"):
        fz.frozen()
    assert systemd.app_running and "start strackt-env-shop.service" in systemd.log
    assert not marker(tmp_path / "b").exists()


def test_the_env_counts_as_down_only_without_pending_jobs_of_its_units(tmp_path):
    systemd = FakeSystemd(app_running=False)
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(), target_unit="strackt-env-shop.target")
    systemd.jobs = "812 strackt-env-shop-worker.service stop running\n"
    assert fz.env_down() is False  # the target is inactive, its worker still stopping
    systemd.jobs = "813 caddy.service reload running\n"
    assert fz.env_down() is True
    systemd.stop_takes = 1
    assert fz.env_down() is False  # deactivating


def test_a_repeated_freeze_after_the_release_returns_the_marker(tmp_path):
    """Resume: the freeze happened; nothing is stopped, passed or started again."""
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    first = fz.frozen()
    hd.HoldSwitch(str(tmp_path / "hold"), "shop").hold()  # as if killed before the hold was removed
    systemd.log.clear()
    transfer.passes.clear()
    again = fz.frozen()
    assert again["changed"] is False and again["released"] is True
    assert again["released_at_ns"] == first["released_at_ns"] and again["barrier"] == first["barrier"]
    assert transfer.passes == [] and not any(line.startswith(("stop", "start")) for line in systemd.log)
    assert not (tmp_path / "hold" / "shop").exists()


def test_after_the_release_nothing_says_nothing_was_switched(tmp_path):
    """A step after the release marker that goes wrong is a warning, or a failure that says the
    target has the traffic (the cutover then rolls back, never "waits again")."""
    fz, _ = freeze(tmp_path, FakeSystemd(fail_disable=True), FakeTransfer())
    result = fz.run("frozen")
    assert result["released"] and "could not be disabled" in result["warning"]
    systemd = FakeSystemd()
    fz, _ = freeze(tmp_path / "b", systemd, FakeTransfer())

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise OSError("no space left on device")

    fz.end_retry = broken  # type: ignore[method-assign]
    with pytest.raises(FreezeError, match="after the release: no space left") as exc:
        fz.run("frozen")
    assert exc.value.switched and marker(tmp_path / "b").exists()


def test_a_writer_left_after_the_stop_aborts_naming_it(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    worker = wr.Writer(4242, "worker", 1100, "", "runs as the env's user")
    held = wr.Writer(4343, "python3", 0, "/srv/shop/data/log.db", "open for writing")
    fz, _ = freeze(tmp_path, systemd, transfer, writers=[worker, held])
    with pytest.raises(FreezeError, match=r"pid 4242 \(worker, uid 1100\) runs as the env's user; pid 4343 "
                                          r"\(python3, uid 0\) open for writing /srv/shop/data/log.db\. Make it a "
                                          r"process or schedule of the env, or stop it.*the source serves again") as exc:
        fz.frozen()
    assert exc.value.switched is False and exc.value.source_serves
    assert [kind for _d, kind, _c in transfer.passes] == ["incremental"]  # no final pass
    assert systemd.app_running and not (tmp_path / "hold" / "shop").exists() and not marker(tmp_path).exists()


def test_a_final_pass_predicted_over_the_budget_refuses_before_anything_stops(tmp_path):
    systemd = FakeSystemd()
    slow = {"mode": "incremental", "duration_s": 4.0}
    transfer = FakeTransfer(catchups=[slow, slow, slow])
    fz, events = freeze(tmp_path, systemd, transfer, freeze_budget_s=5)
    with pytest.raises(FreezeError, match=r"would take about 4 s .* over its share 2.5 s of the freeze budget "
                                          r"5 s; nothing was stopped or switched. Run sync") as exc:
        fz.frozen()
    assert exc.value.refused and not exc.value.switched
    assert len(transfer.passes) == 3 and systemd.log == [] and events == [] and not (tmp_path / "hold").exists()


def test_a_final_pass_that_would_be_full_refuses_unless_a_catch_up_mends_it(tmp_path):
    full = {"mode": "full", "duration_s": 0.2, "journal": "the journal was restarted"}
    fz, _ = freeze(tmp_path, FakeSystemd(), FakeTransfer(catchups=[full, full, full]))
    with pytest.raises(FreezeError, match=r"would be a full one \(the change journal: the journal was restarted\)"):
        fz.frozen()
    # a full catch-up (journal restarted) followed by an incremental one: the freeze goes on
    transfer = FakeTransfer(catchups=[full, {"mode": "incremental", "duration_s": 0.1}])
    fz, _ = freeze(tmp_path / "b", FakeSystemd(), transfer)
    assert fz.frozen()["catchup_passes"] == 2


def test_a_final_pass_seen_over_the_budget_gives_the_traffic_back(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer(final_s=0.3)
    fz, _ = freeze(tmp_path, systemd, transfer, freeze_budget_s=0.2)
    with pytest.raises(FreezeError, match=r"freeze budget of 0.2 s was used up \(drain .*final pass 0\.[0-9]+ s\).*the source serves again"):
        fz.frozen()
    assert 0 < transfer.timeout <= 0.2  # the pass got what was left of the budget as its deadline
    assert systemd.app_running and not marker(tmp_path).exists()


def test_a_failed_final_pass_gives_the_traffic_back(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer(fail="final")
    fz, _ = freeze(tmp_path, systemd, transfer)
    with pytest.raises(FreezeError, match=r"freeze abandoned: rsync exited 12.*the source serves again \(nothing was switched\)"):
        fz.frozen()
    assert systemd.app_running and "start strackt-env-shop.service" in systemd.log
    # released as after a switch: a held POST may still be retried until Caddy's health check has
    # seen the app listening again (removed at once, it got 503 "no upstreams available")
    assert not (tmp_path / "hold" / "shop").exists() and (tmp_path / "hold" / "shop.retry").exists()
    assert "run strackt-hold-shop" in systemd.log  # the timer ends the retry permission later
    assert "disable strackt-env-shop.service" not in systemd.log and not transfer.journal_stopped
    assert not marker(tmp_path).exists()  # never released: a rollback pulls nothing


def test_a_source_that_cannot_restart_says_so(tmp_path):
    fz, _ = freeze(tmp_path, FakeSystemd(fail_start=True), FakeTransfer(), listening=False)
    with pytest.raises(FreezeError, match=r"does not listen.*starting strackt-env-shop.service again FAILED too") as exc:
        fz.frozen()
    assert not exc.value.source_serves and not exc.value.switched and not marker(tmp_path).exists()


def test_a_started_target_whose_web_process_does_not_listen_is_not_serving(tmp_path):
    # the env's target starts (rc 0) even when a process it wants fails: only the port says
    fz, _ = freeze(tmp_path, FakeSystemd(), FakeTransfer(), listening=False)
    with pytest.raises(FreezeError, match=r"starting strackt-env-shop.service again FAILED too: nothing listens "
                                          r"on 127.0.0.1:8001") as exc:
        fz.frozen()
    assert not exc.value.source_serves and not exc.value.switched


def test_a_failed_catch_up_pass_stops_nothing(tmp_path):
    systemd = FakeSystemd()
    fz, events = freeze(tmp_path, systemd, FakeTransfer(fail="incremental"))
    with pytest.raises(FreezeError, match="catch-up pass before the freeze failed, nothing was stopped"):
        fz.frozen()
    assert systemd.log == [] and events == [] and not (tmp_path / "hold").exists()


def test_frozen_again_changes_nothing_and_a_stopped_source_is_refused(tmp_path):
    transfer = FakeTransfer()
    fz, _ = freeze(tmp_path, FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True}),
                   transfer)
    assert fz.frozen() == {"changed": False, "forwarding": True,
                           "msg": "already frozen: strackt-forward-shop forwards to 10.0.0.2"}
    fz, _ = freeze(tmp_path, FakeSystemd(app_running=False), transfer)
    with pytest.raises(FreezeError, match="not running on the source and no forwarder is either"):
        fz.frozen()
    assert transfer.passes == []


def test_a_second_freeze_of_the_move_waits_for_the_running_one_and_returns_its_release(tmp_path):
    """A controller SIGKILLed during the freeze leaves the module running on the source; its
    resume calls the freeze again. That second call must not freeze a second time beside the
    first: it waits for it, then finds its release marker."""
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, events = freeze(tmp_path, systemd, transfer)
    a_running_freeze_that_releases(tmp_path)
    result = fz.frozen()
    assert result["released"] and result["released_at_ns"] == 7 and not result["changed"]
    assert systemd.log == [] and transfer.passes == [] and events == []


def test_a_second_freeze_gives_up_when_the_running_one_outlasts_the_wait_having_done_nothing(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, events = freeze(tmp_path, systemd, transfer, lock_wait_s=0.2)
    held = flock_exclusive(str(tmp_path / "keys" / "shop-1" / FREEZE_LOCK))
    try:
        with pytest.raises(FreezeError, match="another freeze of shop-1 still runs on this server") as caught:
            fz.frozen()
    finally:
        os.close(held)
    assert not caught.value.switched and not caught.value.refused
    assert systemd.log == [] and transfer.passes == [] and events == []


def test_check_mode_changes_nothing(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    fz.check_mode = True
    assert fz.frozen() == {"changed": True, "forwarding": False}
    assert systemd.log == [] and transfer.passes == []


def test_thawed_pulls_nothing_and_restarts_the_source(tmp_path):
    """The pull back (only what the target changed, with a backup) is the rollback's own step."""
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True})
    transfer = FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    hd.HoldSwitch(str(tmp_path / "hold"), "shop").hold()
    result = fz.thawed()
    assert transfer.passes == [] and "sync_pass" not in result
    assert systemd.log == ["stop strackt-forward-shop-1.socket", "enable strackt-env-shop.service",
                           "start strackt-env-shop.service", "run strackt-hold-shop"]
    # requests a crashed freeze left held go to the source again, POSTs retried a little longer
    assert not (tmp_path / "hold" / "shop").exists() and (tmp_path / "hold" / "shop.retry").exists()
    assert fz.thawed()["changed"] is False  # runs here, nothing forwards


def test_released_only_stops_forwarding(tmp_path):
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True,
                                                         "strackt-forward-shop-1.service": False})
    fz, _ = freeze(tmp_path, systemd, FakeTransfer())
    assert fz.released() == {"changed": True, "forwarding": False}
    assert systemd.log == ["stop strackt-forward-shop-1.socket strackt-forward-shop-1.service"]  # sockets first
    assert fz.released() == {"changed": False, "forwarding": False}


def test_held_holds_before_it_drains_and_stops_the_env(tmp_path):
    """The new server at a rollback after the switch: its visitors are held, not refused, while
    the data and the database come back."""
    systemd = FakeSystemd()
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), connections=[1, 0])
    result = fz.held()
    assert set(e for e in events if e.startswith("drain")) == {"drain with hold on"}
    assert result["changed"] and result["held"] and result["undrained_connections"] == 0
    assert not systemd.app_running and (tmp_path / "hold" / "shop").exists()
    assert fz.held()["changed"] is False  # stopped and held already


def test_held_that_cannot_stop_the_env_releases_its_requests_and_says_the_target_serves_again(tmp_path):
    """A rollback must not go on from a half-held target (its requests would wait out the proxy's
    10 s and get 502, its env might still write): the hold ends, the env starts again, and the
    error says so."""
    systemd = FakeSystemd(stop_hangs=True)
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(), freeze_budget_s=0.3)
    with pytest.raises(FreezeError, match=r"did not stop within .*; its requests are released and it "
                                          r"serves again") as caught:
        fz.held()
    assert not caught.value.switched
    assert "start strackt-env-shop.service" in systemd.log and not (tmp_path / "hold" / "shop").exists()


def test_forwarding_forwards_to_the_old_server_then_releases(tmp_path):
    systemd = FakeSystemd(app_running=False)
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(), target_address="10.0.0.1")
    fz.held()
    systemd.log.clear()
    result = fz.forwarding_on()
    assert result["changed"] and result["forwarding"]
    assert systemd.log == ["run strackt-forward-shop", "run strackt-hold-shop"]  # the env stays stopped
    assert not (tmp_path / "hold" / "shop").exists() and (tmp_path / "hold" / "shop.retry").exists()
    assert fz.run("forwarding")["changed"] is False


def test_forwarding_from_a_running_env_holds_and_stops_it_first(tmp_path):
    systemd = FakeSystemd()
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), target_address="10.0.0.1")
    result = fz.run("forwarding")
    assert set(e for e in events if e.startswith("drain")) == {"drain with hold on"}
    assert [line for line in systemd.log if line != "list-jobs"][:2] == ["stop strackt-env-shop.service",
                                                                        "run strackt-forward-shop"]
    assert result["held_at_ns"] <= result["released_at_ns"] and not (tmp_path / "hold" / "shop").exists()


def test_a_forwarder_that_does_not_listen_keeps_the_requests_held(tmp_path):
    fz, _ = freeze(tmp_path, FakeSystemd(app_running=False), FakeTransfer(), listening=False)
    fz.held()
    with pytest.raises(FreezeError, match="does not listen on 127.0.0.1:8001; the requests stay held"):
        fz.forwarding_on()
    assert (tmp_path / "hold" / "shop").exists()


def test_thawed_releases_what_a_crashed_rollback_left_held_on_a_running_source(tmp_path):
    systemd = FakeSystemd(app_running=True)
    fz, _ = freeze(tmp_path, systemd, FakeTransfer())
    hd.HoldSwitch(str(tmp_path / "hold"), "shop").hold()
    assert fz.thawed()["changed"] is True and not (tmp_path / "hold" / "shop").exists()
    assert "start strackt-env-shop.service" not in systemd.log
    assert fz.thawed()["changed"] is False


def test_released_with_the_app_port_lets_requests_in_flight_finish_first(tmp_path):
    """The rollback stops the target's forwarder right after DNS answers the source again: a
    request still going through it must not be cut."""
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True})
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), connections=[2, 1, 0])
    fz.released()
    assert len(events) >= 3 and set(events) == {"drain with hold off"}  # until none was open
    assert systemd.log == ["stop strackt-forward-shop-1.socket"]


def test_unknown_state_is_refused(tmp_path):
    fz, _ = freeze(tmp_path, FakeSystemd(), FakeTransfer())
    with pytest.raises(ValueError, match="frozen, thawed, released, held, forwarding"):
        fz.run("melted")


def test_an_unreadable_release_marker_is_never_taken_for_no_release(tmp_path):
    path = tmp_path / "released.json"
    assert read_marker(str(path)) is None
    path.write_text("{not json")
    with pytest.raises(FreezeError, match="cannot be read.*whether the freeze released is unknown"):
        read_marker(str(path))
    path.write_text('{"released_at_ns": "soon"}')
    with pytest.raises(FreezeError, match="not one strackt.move wrote"):
        read_marker(str(path))


def test_settings_derive_names():
    s = FreezeSettings(env="shop", forwarder_prefix="fwd.service", key_path="/k/m/id")
    assert (s.unit_name, s.forwarder, s.key_dir) == ("strackt-env-shop.service", "fwd", "/k/m")
    assert (s.barrier_name, s.marker_path) == (".strackt-barrier-m", "/k/m/released.json")
    assert FreezeSettings(env="shop", target_unit="strackt-env-shop.target", unit="x").unit_name == \
        "strackt-env-shop.target"


def test_transfer_options_are_one_spec():
    spec = rs.transfer_argument_spec()
    assert tuple(spec) == rs.TRANSFER_OPTIONS
    assert not any(option.get("required") for option in spec.values())



# ---- the module: arguments in, a clear refusal out -------------------------------------------

def run_module(capsys, **args: Any) -> dict[str, Any]:
    import json

    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.strackt.move.plugins.modules import freeze as module

    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_module_refuses_a_bad_env_name_and_missing_transfer_options(capsys):
    out = run_module(capsys, env="../etc", state="released")
    assert out["failed"] and "env name '../etc' must match" in out["msg"]
    out = run_module(capsys, env="shop", state="frozen", app_port=8001)
    assert out["failed"] and "state is frozen but all of the following are missing" in out["msg"]
    assert "env_root" in out["msg"] and "known_hosts_path" in out["msg"]


def test_the_barrier_is_one_file_pushed_into_the_first_data_path(tmp_path, monkeypatch):
    keys = tmp_path / "shop-1"
    keys.mkdir()
    seen: list[Any] = []

    def fake_run(argv: list[str], timeout: float | None = None) -> tuple[dict[str, Any], float]:
        listing = next(a.split("=", 1)[1] for a in argv if a.startswith("--files-from="))
        local = argv[-2]
        seen.append((argv[-1], open(listing, "rb").read(), sorted(p.name for p in Path(local).iterdir()), timeout))
        return {}, 0.0

    monkeypatch.setattr(rs, "run", fake_run)
    settings = FreezeSettings(env="shop", target_address="10.0.0.2", env_root="/srv/shop",
                              data_paths=("/srv/shop/data", "/srv/shop/up"), key_path=str(keys / "id"),
                              known_hosts_path=str(keys / "kh"))
    from ansible_collections.strackt.move.plugins.module_utils.freeze import Transfer
    name = Transfer(settings).push_barrier("/keys/ctl", timeout=1.5)
    (remote, listed, local_files, timeout), = seen
    assert name == ".strackt-barrier-shop-1" and remote == "root@10.0.0.2:data/"
    assert listed == b".strackt-barrier-shop-1\0" and ".strackt-barrier-shop-1" in local_files and timeout == 1.5
    assert list(keys.iterdir()) == []  # the scratch directory is gone


class FakeDatabase:
    """The database's part of the freeze (pg_handover.DatabaseHandOver's interface), noting when
    each call came relative to the app and the transfer."""

    def __init__(self, systemd: FakeSystemd, transfer: FakeTransfer, fail: str | None = None) -> None:
        self.systemd, self.transfer, self.fail = systemd, transfer, fail
        self.calls: list[str] = []

    def open(self) -> float:
        self.calls.append("open with the app " + ("running" if self.systemd.app_running else "stopped"))
        if self.fail == "open":
            raise ConnectionError("cannot reach the new server")
        return 0.01

    def switch(self, timeout_s: float | None = None) -> dict[str, Any]:
        self.calls.append("switch with the app %s after %s" % ("running" if self.systemd.app_running else "stopped",
                                                             [k for _d, k, _c in self.transfer.passes][-1]))
        self.timeout_s = timeout_s
        if self.fail == "switch":
            raise RuntimeError("2 session(s) still use shop")
        return {"state": "switched", "total_s": 0.2, "timings": {"wait_applied": 0.01}}

    def undo(self) -> str:
        self.calls.append("undo")
        return "the database switch was undone"

    def close(self) -> None:
        self.calls.append("close")


def test_the_database_switches_after_the_barrier_before_the_forwarder_and_is_timed(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    fz.database = db = FakeDatabase(systemd, transfer)
    result = fz.frozen()
    assert db.calls == ["open with the app running", "switch with the app stopped after barrier", "close"]
    assert 0 < db.timeout_s <= 5  # what is left of the budget
    assert result["database"]["state"] == "switched" and result["database_s"] >= 0
    assert [line for line in systemd.log if line != "list-jobs"][:2] == ["stop strackt-env-shop.service",
                                                                        "run strackt-forward-shop"]
    assert json.loads(marker(tmp_path).read_text())["database_s"] == result["database_s"]


def test_an_unreachable_database_server_refuses_before_anything_stops(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    fz.database = db = FakeDatabase(systemd, transfer, fail="open")
    with pytest.raises(FreezeError, match="cannot reach the new server; nothing was stopped") as info:
        fz.frozen()
    assert info.value.refused and systemd.app_running and "stop strackt-env-shop.service" not in systemd.log
    assert not (tmp_path / "hold" / "shop").exists() and db.calls == ["open with the app running"]


def test_a_failed_database_switch_is_undone_and_the_source_serves_again(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    fz.database = db = FakeDatabase(systemd, transfer, fail="switch")
    with pytest.raises(FreezeError, match=r"2 session\(s\) still use shop; the database switch was undone; "
                                          r"the source serves again") as info:
        fz.frozen()
    assert not info.value.switched and info.value.source_serves
    assert db.calls[-2:] == ["undo", "close"] and systemd.app_running and not marker(tmp_path).exists()
    assert not any(line.startswith("run strackt-forward") for line in systemd.log)


def test_the_hold_keeps_proxy_reloads_out_and_a_reload_in_progress_stops_nothing(tmp_path, monkeypatch):
    """Another env's site changing reloads the proxy, which would drop this env's held requests:
    from its hold to its release the freeze holds the server's proxy lock (shared); while a reload
    holds it, the freeze refuses before it stops anything."""
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    seen: list[str] = []
    original = fz.stop_env

    def stop_env(deadline: float, in_flight: int = 0, groups: list[str] | None = None) -> str:
        try:
            hd.ProxyLock(str(tmp_path / "hold")).acquire(exclusive=True, timeout_s=0)
            seen.append("a reload could begin")
        except hd.ProxyBusy:
            seen.append("reloads kept out")
        return original(deadline, in_flight, groups)

    fz.stop_env = stop_env  # type: ignore[method-assign]
    assert fz.frozen()["released"] and seen == ["reloads kept out"]
    reload = hd.ProxyLock(str(tmp_path / "b" / "hold"))
    reload.acquire(exclusive=True, timeout_s=0)
    monkeypatch.setattr("ansible_collections.strackt.move.plugins.module_utils.freeze.PROXY_LOCK_WAIT_S", 0.1)
    systemd = FakeSystemd()
    fz, events = freeze(tmp_path / "b", systemd, FakeTransfer())
    with pytest.raises(FreezeError, match=r"the front proxy is being reloaded .*nothing was stopped") as exc:
        fz.frozen()
    assert exc.value.refused and systemd.app_running and events == [] and not hd.held_envs(str(tmp_path / "b" / "hold"))
    reload.release()


# ---- a rollback after the switch: the old server takes the env back in one call (state=back) ----

def take_back(events: list[str], systemd: FakeSystemd, *, pull_fails: bool = False, healthy: bool = True,
              database: bool = True) -> TakeBack:
    def pull() -> dict[str, Any]:
        events.append(f"pull with the env {'running' if systemd.app_running else 'stopped'}")
        if pull_fails:
            raise rs.RsyncError("connection refused", rc=255)
        return {"files_changed": 2, "kind": "reverse"}

    def database_back() -> dict[str, Any]:
        events.append(f"database back with the env {'running' if systemd.app_running else 'stopped'}")
        return {"state": "back", "total_s": 0.01}

    def answers() -> tuple[bool, list]:
        events.append(f"health with the env {'running' if systemd.app_running else 'stopped'}")
        return healthy, [{"domain": "shop.test", "status": 200 if healthy else 502, "error": None}]

    return TakeBack(pull=pull, database=database_back if database else None, healthy=answers)


def test_back_pulls_brings_the_database_back_then_starts_and_waits_for_health_in_one_call(tmp_path):
    """Inside the new server's hold each module call costs a round trip (seen 1.5-3.5 s on a
    loaded machine, 15.2 s over seven calls): the old server's part is one call, in this order."""
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer())
    fz.take_back = take_back(events, systemd)
    result = fz.run("back")
    assert events == ["pull with the env stopped", "database back with the env stopped",
                      "health with the env running"]
    assert "start strackt-env-shop.service" in systemd.log
    assert result["changed"] and result["sync_pass"]["files_changed"] == 2 and result["database"]["state"] == "back"
    assert set(result["timings"]) == {"pull_s", "database_s", "start_s", "health_s"}


def test_back_that_cannot_pull_starts_nothing_and_says_so(tmp_path):
    """The new server still has everything: the rollback lets it serve again (started false)."""
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer())
    fz.take_back = take_back(events, systemd, pull_fails=True)
    with pytest.raises(FreezeError, match="failed before it started here: connection refused") as caught:
        fz.run("back")
    assert caught.value.started is False and not caught.value.source_serves
    assert events == ["pull with the env stopped"] and "start strackt-env-shop.service" not in systemd.log


def test_back_whose_env_does_not_answer_says_it_was_started(tmp_path):
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer())
    fz.take_back = take_back(events, systemd, healthy=False, database=False)
    with pytest.raises(FreezeError, match="was started here but does not answer healthy: shop.test 502") as caught:
        fz.run("back")
    assert caught.value.started is True
    assert events == ["pull with the env stopped", "health with the env running"]


def test_back_waits_for_a_freeze_still_running_and_refuses_a_release_it_was_not_told_of(tmp_path):
    """A rollback right after a controller was killed in the freeze: the killed freeze runs on
    here and releases after the rollback looked for the marker (so it asked for no pull). Taking
    the env back now would serve the old copy: it starts nothing, the new server serves again."""
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer())
    steps = take_back(events, systemd)
    fz.take_back = TakeBack(pull=None, database=steps.database, healthy=steps.healthy)
    a_running_freeze_that_releases(tmp_path)
    with pytest.raises(FreezeError, match="Run the rollback again: it pulls back") as caught:
        fz.run("back")
    assert caught.value.started is False and caught.value.switched
    assert events == [] and systemd.log == []


def test_back_gives_up_when_a_freeze_outlasts_the_wait_having_started_nothing(tmp_path):
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), lock_wait_s=0.2)
    fz.take_back = take_back(events, systemd)
    held = flock_exclusive(str(tmp_path / "keys" / "shop-1" / FREEZE_LOCK))
    try:
        with pytest.raises(FreezeError, match="run the rollback again once that freeze ended"):
            fz.run("back")
    finally:
        os.close(held)
    assert events == [] and systemd.log == []


def test_back_without_a_release_takes_the_lock_and_starts(tmp_path):
    """back holds the move's lock while it starts the env (a single take: its start waits on nothing)."""
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), lock_wait_s=1.0)
    steps = take_back(events, systemd, database=False)
    fz.take_back = TakeBack(pull=None, database=None, healthy=steps.healthy)
    assert fz.run("back")["changed"] is True
    assert events == ["health with the env running"]


def test_back_without_the_moves_key_dir_starts_the_source(tmp_path):
    """A rollback run again after its first run removed the move's key (and key dir): no freeze
    can run there, nothing to wait for, nothing to refuse."""
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer(), key_path=str(tmp_path / "keys" / "gone" / "id_ed25519"))
    steps = take_back(events, systemd, database=False)
    fz.take_back = TakeBack(pull=None, database=None, healthy=steps.healthy)
    assert fz.run("back")["changed"] is True and "start strackt-env-shop.service" in systemd.log


def test_back_in_check_mode_changes_nothing(tmp_path):
    systemd = FakeSystemd(app_running=False)
    fz, events = freeze(tmp_path, systemd, FakeTransfer())
    fz.take_back = take_back(events, systemd)
    fz.check_mode = True
    assert fz.run("back")["changed"] is True
    assert events == [] and systemd.log == []


def test_held_reads_what_the_target_changed_in_the_same_call_and_never_fails_for_it(tmp_path):
    """One round trip less inside the hold; a journal that cannot be read (here: none runs) is
    untrustworthy (the whole tree comes back), not a failed hold."""
    systemd = FakeSystemd()
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(), journal_dir=str(tmp_path / "target-journal"),
                   since_marker=".strackt-barrier-shop-1")
    result = fz.held()
    assert result["held"] and not systemd.app_running
    assert result["target_changes"]["trustworthy"] is False and result["target_changes"]["changes"] == {}
    assert "journal_s" in result
    assert fz.held()["target_changes"]["trustworthy"] is False  # a rerun reads it again
    plain, _ = freeze(tmp_path / "plain", FakeSystemd(), FakeTransfer())
    assert "target_changes" not in plain.held()  # not asked: not read


# ---- the retry permission's timer ---------------------------------------------------------


class TimerSystemd(FakeSystemd):
    """Transient timers as systemd keeps them until they fire: listed, stoppable, and fired here
    by running their command for real."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: dict[str, list[str]] = {}

    def run_transient(self, unit: str, command: Any, description: str, check: bool = True, **kwargs: Any) -> int:
        if kwargs.get("on_active_s") is not None:
            self.timers[unit] = list(command)
        return super().run_transient(unit, command, description, check, **kwargs)

    def units(self, prefix: str, types: Any = ("socket", "service")) -> dict[str, bool]:
        if "timer" in types:
            return {f"{unit}.timer": True for unit in self.timers
                    if unit.startswith(prefix + "-") and unit[len(prefix) + 1:].isdigit()}
        return super().units(prefix, types)

    def stop(self, *units: str, check: bool = True) -> tuple[int, str]:
        for unit in units:
            self.timers.pop(unit.rsplit(".", 1)[0], None)
        return super().stop(*units, check=check)

    def fire(self, unit: str) -> None:
        import subprocess

        subprocess.run(self.timers.pop(unit), check=True)


def test_an_earlier_releases_timer_never_ends_a_later_holds_retry_permission(tmp_path):
    """A freeze given up inside gives the traffic back and ends its retry permission 5 s later by a
    timer. The switch-over confirmed again within those 5 s holds anew; the earlier timer must not
    take that hold's permission away (Caddy 2.6 then answers every held request 503 at once, GETs
    too: with a retry matcher it retries nothing the matcher refuses)."""
    systemd = TimerSystemd()
    given_up, _ = freeze(tmp_path, systemd, FakeTransfer(fail="final"))
    with pytest.raises(FreezeError, match="the source serves again"):
        given_up.frozen()
    (earlier,) = systemd.timers
    assert (tmp_path / "hold" / "shop.retry").exists() and systemd.app_running

    again, _ = freeze(tmp_path, systemd, FakeTransfer())
    seen: list[bool] = []

    def in_flight(port: int) -> int:  # inside the second hold: the earlier timer's 5 s are up now
        if earlier in systemd.timers:
            systemd.fire(earlier)
        seen.append(again.switch.is_held() and again.switch.retry_allowed())
        return 0
    again._connections = in_flight
    assert again.frozen()["released"]
    assert seen and all(seen), "the hold lost its retry permission to an earlier release's timer"
    # the second release's own timer ends it
    (later,) = systemd.timers
    assert later != earlier
    systemd.fire(later)
    assert not (tmp_path / "hold" / "shop.retry").exists()


def test_the_retry_timers_of_another_env_are_left_alone(tmp_path):
    systemd = TimerSystemd()
    systemd.timers["strackt-hold-shop-api-1733000000000"] = ["true"]  # env shop-api's, not shop's
    fz, _ = freeze(tmp_path, systemd, FakeTransfer())
    fz.frozen()
    assert "strackt-hold-shop-api-1733000000000" in systemd.timers


def test_a_running_follower_is_stopped_before_anything_else(tmp_path):
    systemd, transfer = FakeSystemd(forwarders={"strackt-follow-shop-1.service": True}), FakeTransfer()
    fz, _events = freeze(tmp_path, systemd, transfer)
    fz.frozen()
    steps = [line for line in systemd.log if line != "list-jobs"]
    assert steps[0] == "stop strackt-follow-shop-1.service"
    assert "strackt-follow-shop-1.service" not in systemd.fwd


class _FollowerThatWillNotStop(FakeSystemd):
    def stop_within(self, unit: str, timeout_s: float) -> tuple[int, str]:
        if unit.startswith("strackt-follow-"):
            return TIMED_OUT, ""
        return super().stop_within(unit, timeout_s)

    def systemctl(self, *args: str, check: bool = False) -> tuple[int, str]:
        if args[0] == "kill":
            return 0, ""
        return super().systemctl(*args, check=check)

    def stop(self, *units: str, check: bool = True) -> tuple[int, str]:
        if units and units[0].startswith("strackt-follow-"):
            return 1, "stop job timed out"
        return super().stop(*units, check=check)


def test_a_follower_that_will_not_stop_refuses_the_freeze_with_nothing_stopped(tmp_path):
    systemd = _FollowerThatWillNotStop(forwarders={"strackt-follow-shop-1.service": True})
    transfer = FakeTransfer()
    fz, _events = freeze(tmp_path, systemd, transfer)
    with pytest.raises(FreezeError, match="does not stop.*nothing was stopped or switched") as caught:
        fz.frozen()
    assert caught.value.refused and caught.value.source_serves
    assert systemd.app_running and transfer.passes == []
    assert not (tmp_path / "hold" / "shop").exists()


class _KillLog(FakeSystemd):
    """The env's web service runs in its cgroup; a kill of that cgroup ends it."""

    def systemctl(self, *args: str, check: bool = False) -> tuple[int, str]:
        if args[:2] == ("stop", "--no-block"):
            self.log.append("queue stop " + args[2])
            return 0, ""
        if args[0] == "list-units":
            held = getattr(self, "hold_file", None)
            self.log.append("read the services " + ("inside the hold" if held and held.exists() else "before the hold"))
            return 0, "strackt-env-shop-web.service loaded active running web\n" if self.app_running else ""
        if args[0] == "show" and "ControlGroup" in args:
            return 0, "/system.slice/%s\n" % args[-1]
        return super().systemctl(*args, check=check)

    def kill_cgroup(self, group: str, wait_s: float) -> list[int]:
        self.log.append("SIGKILL " + group)
        self.app_running = False
        return []


def test_freeze_stop_kill_kills_the_env_s_services_once_nothing_is_in_flight(tmp_path):
    systemd = _KillLog()
    fz, _events = freeze(tmp_path, systemd, FakeTransfer(), stop_mode="kill")
    fz._kill_cgroup = systemd.kill_cgroup
    result = fz.frozen()
    steps = [line for line in systemd.log if line != "list-jobs" and not line.startswith("read the services")]
    # the cgroups read first, the stop job queued (nothing restarts what dies), then the kill
    assert steps[:3] == ["queue stop strackt-env-shop.service", "SIGKILL /system.slice/strackt-env-shop-web.service",
                         "stop strackt-env-shop.service"]
    assert result["stop_mode"] == "kill"


def test_freeze_stop_kill_reads_the_services_cgroups_before_the_hold(tmp_path):
    """The systemctl runs that find the env's cgroups (0.1-0.2 s) come before the hold: the
    cgroup of a unit is named after it, and a unit that starts meanwhile is still stopped by the
    stop job."""
    systemd = _KillLog()
    systemd.hold_file = tmp_path / "hold" / "shop"
    fz, _events = freeze(tmp_path, systemd, FakeTransfer(), stop_mode="kill")
    fz._kill_cgroup = systemd.kill_cgroup
    assert fz.frozen()["stop_mode"] == "kill"
    assert [line for line in systemd.log if line.startswith("read the services")] == ["read the services before the hold"]
    assert "SIGKILL /system.slice/strackt-env-shop-web.service" in systemd.log


def test_the_rollbacks_hold_also_reads_the_cgroups_before_it_holds(tmp_path):
    systemd = _KillLog()
    systemd.hold_file = tmp_path / "hold" / "shop"
    fz, _events = freeze(tmp_path, systemd, FakeTransfer(), stop_mode="kill")
    fz._kill_cgroup = systemd.kill_cgroup
    assert fz.held()["held"]
    assert [line for line in systemd.log if line.startswith("read the services")] == ["read the services before the hold"]
    assert "SIGKILL /system.slice/strackt-env-shop-web.service" in systemd.log


def test_freeze_stop_kill_stops_gracefully_while_a_request_is_in_flight(tmp_path):
    systemd = _KillLog()
    fz, _events = freeze(tmp_path, systemd, FakeTransfer(), stop_mode="kill", drain_timeout=0.05, connections=[1])
    fz._kill_cgroup = systemd.kill_cgroup
    result = fz.frozen()
    assert not any(line.startswith(("queue", "SIGKILL")) for line in systemd.log)
    assert result["stop_mode"] == "graceful" and result["undrained_connections"] == 1


def test_the_default_stop_is_graceful(tmp_path):
    systemd = _KillLog()
    fz, _events = freeze(tmp_path, systemd, FakeTransfer())
    assert fz.frozen()["stop_mode"] == "graceful"
    assert not any(line.startswith(("queue", "SIGKILL")) for line in systemd.log)
