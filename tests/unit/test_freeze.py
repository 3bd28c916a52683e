"""The freeze's parts, each on its own: the hold switch's files, the systemd wrapper, the
/proc/net/tcp reader, and the order of the freeze's steps with fake systemd and passes."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils import tcp
from ansible_collections.strackt.move.plugins.module_utils.environment import parse_environment
from ansible_collections.strackt.move.plugins.module_utils.freeze import Freeze, FreezeError, FreezeSettings
from ansible_collections.strackt.move.plugins.module_utils.systemd import (
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
        "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test"], "app_port": 8001, "user": "shop",
        "uid": 1100, "memory_mb": 1, "disk_headroom_mb": 0, "framework": "django", "wsgi_app": "shopsite.wsgi:application",
        "database": {"server": "srv1", "name": "shop", "user": "shop", "port": 5432}})
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
                 fail_start: bool = False) -> None:
        super().__init__(run=self._refuse)
        self.app_running = app_running
        self.fwd = dict(forwarders or {})
        self.fail_start = fail_start
        self.log: list[str] = []

    @staticmethod
    def _refuse(argv: list[str]) -> tuple[int, str, str]:
        raise AssertionError(f"unexpected command {argv}")

    def is_active(self, unit: str) -> bool:
        return self.app_running if unit.startswith("strackt-env-") else self.fwd.get(unit, False)

    def units(self, prefix: str, types: Any = ("socket", "service")) -> dict[str, bool]:
        return dict(self.fwd)

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
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail  # the kind of pass that fails
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
        return {"kind": kind, "files_changed": 1, "started_at_ns": 1}

    def stop_journal(self) -> None:
        self.journal_stopped = True


def freeze(tmp_path, systemd: FakeSystemd, transfer: FakeTransfer, listening: bool = True,
           connections: list[int] | None = None, **overrides: Any) -> tuple[Freeze, list[str]]:
    events: list[str] = []
    counts = list(connections or [0])

    def connected(port: int) -> int:
        events.append(f"drain with hold {'on' if (tmp_path / 'hold' / 'shop').exists() else 'off'}")
        return counts.pop(0) if len(counts) > 1 else counts[0]

    settings = FreezeSettings(env="shop", app_port=8001, target_address="10.0.0.2", env_root="/srv/shop",
                              data_paths=("/srv/shop/data",), key_path="/keys/m/id", known_hosts_path="/keys/m/kh",
                              hold_dir=str(tmp_path / "hold"), hold_settle_s=0, drain_timeout=1, **overrides)
    return Freeze(settings, systemd, transfer, listening=lambda port, timeout=5.0: listening,
                  connections=connected), events


def test_frozen_holds_drains_stops_copies_forwards_then_releases(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, events = freeze(tmp_path, systemd, transfer, connections=[2, 1, 0])
    result = fz.frozen()
    assert [kind for _d, kind, _c in transfer.passes] == ["incremental", "final"]  # catch-up, then final
    assert all(c == "/keys/m/ssh-master" for _d, _k, c in transfer.passes)
    assert transfer.closed == ["/keys/m/ssh-master"]
    assert events and set(events) == {"drain with hold on"}  # never drained without holding
    assert systemd.log[:2] == ["stop strackt-env-shop.service", "run strackt-forward-shop"]
    assert "disable strackt-env-shop.service" in systemd.log and "run strackt-hold-shop" in systemd.log
    assert not (tmp_path / "hold" / "shop").exists()  # released
    assert (tmp_path / "hold" / "shop.retry").exists()  # the timer ends the retry permission later
    assert transfer.journal_stopped and result["forwarding"] and result["changed"]
    assert result["sync_pass"]["kind"] == "final" and result["catchup_pass"]["kind"] == "incremental"
    assert result["released_at_ns"] >= result["frozen_at_ns"] and result["undrained_connections"] == 0
    for part in ("freeze_s", "drain_s", "stop_s", "final_sync_s", "forwarder_s"):
        assert result[part] >= 0


def test_a_failed_final_pass_gives_the_traffic_back(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer(fail="final")
    fz, _ = freeze(tmp_path, systemd, transfer)
    with pytest.raises(FreezeError, match=r"freeze abandoned: rsync exited 12.*the source serves again \(nothing was switched\)"):
        fz.frozen()
    assert systemd.app_running and "start strackt-env-shop.service" in systemd.log
    assert not (tmp_path / "hold" / "shop").exists() and not (tmp_path / "hold" / "shop.retry").exists()
    assert "disable strackt-env-shop.service" not in systemd.log and not transfer.journal_stopped


def test_a_source_that_cannot_restart_says_so(tmp_path):
    fz, _ = freeze(tmp_path, FakeSystemd(fail_start=True), FakeTransfer(), listening=False)
    with pytest.raises(FreezeError, match=r"does not listen.*starting strackt-env-shop.service again FAILED too"):
        fz.frozen()


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


def test_check_mode_changes_nothing(tmp_path):
    systemd, transfer = FakeSystemd(), FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    fz.check_mode = True
    assert fz.frozen() == {"changed": True, "forwarding": False}
    assert systemd.log == [] and transfer.passes == []


def test_thawed_pulls_back_then_restarts_the_source(tmp_path):
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True})
    transfer = FakeTransfer()
    fz, _ = freeze(tmp_path, systemd, transfer)
    hd.HoldSwitch(str(tmp_path / "hold"), "shop").hold()
    result = fz.thawed()
    assert transfer.passes == [("pull", "reverse", None)] and result["sync_pass"]["kind"] == "reverse"
    assert systemd.log == ["stop strackt-forward-shop-1.socket", "enable strackt-env-shop.service",
                           "start strackt-env-shop.service"]
    assert not (tmp_path / "hold" / "shop").exists() and not (tmp_path / "hold" / "shop.retry").exists()
    assert fz.thawed()["changed"] is False  # runs here, nothing forwards


def test_a_failed_pull_leaves_the_forwarder(tmp_path):
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True})
    fz, _ = freeze(tmp_path, systemd, FakeTransfer(fail="reverse"))
    with pytest.raises(FreezeError, match="pulling the data back from 10.0.0.2 failed, nothing was changed here"):
        fz.thawed()
    assert systemd.log == [] and systemd.fwd


def test_released_only_stops_forwarding(tmp_path):
    systemd = FakeSystemd(app_running=False, forwarders={"strackt-forward-shop-1.socket": True,
                                                         "strackt-forward-shop-1.service": False})
    fz, _ = freeze(tmp_path, systemd, FakeTransfer())
    assert fz.released() == {"changed": True, "forwarding": False}
    assert systemd.log == ["stop strackt-forward-shop-1.socket strackt-forward-shop-1.service"]  # sockets first
    assert fz.released() == {"changed": False, "forwarding": False}


def test_unknown_state_is_refused(tmp_path):
    fz, _ = freeze(tmp_path, FakeSystemd(), FakeTransfer())
    with pytest.raises(ValueError, match="frozen, thawed or released"):
        fz.run("melted")


def test_settings_derive_names():
    s = FreezeSettings(env="shop", forwarder_prefix="fwd.service", key_path="/k/m/id")
    assert (s.unit_name, s.forwarder, s.key_dir) == ("strackt-env-shop.service", "fwd", "/k/m")


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
