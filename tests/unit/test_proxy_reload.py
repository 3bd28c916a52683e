"""A reload of the front proxy drops the requests it holds: strackt.move.proxy_reload waits for
every env's hold on the server to end, under the server's proxy lock (module_utils/hold.py), and a
freeze holds that lock shared from its hold to its release (module_utils/freeze.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.strackt.move.plugins.module_utils import freeze as fr
from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd
from ansible_collections.strackt.move.plugins.modules.proxy_reload import reload_proxy


class Caddy:
    """systemctl as the proxy's service answers it; records what was asked."""

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv[1:])
        if argv[1] == "is-active":
            return (0, "active\n", "") if self.active else (3, "inactive\n", "")
        return 0, "", ""


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.naps: list[float] = []
        self.at_nap: list = []  # callables run at the nap of their index

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if len(self.naps) < len(self.at_nap) and self.at_nap[len(self.naps)]:
            self.at_nap[len(self.naps)]()
        self.naps.append(seconds)
        self.t += seconds


def test_held_and_retrying_envs_are_named_once_and_the_lock_is_no_env(tmp_path: Path) -> None:
    hd.HoldSwitch(str(tmp_path), "shop").hold()
    (tmp_path / "blog.retry").write_text("")
    hd.ProxyLock(str(tmp_path)).acquire(exclusive=False, timeout_s=0)
    assert hd.held_envs(str(tmp_path)) == ["blog", "shop"]
    assert hd.held_envs(str(tmp_path / "none")) == []


def test_the_reload_waits_for_another_envs_hold_to_end_then_reloads(tmp_path: Path) -> None:
    switch = hd.HoldSwitch(str(tmp_path), "blog")
    switch.hold()
    caddy, clock = Caddy(), Clock()
    clock.at_nap = [None, switch.release, None, switch.end_retry]  # the hold ends, its retry permission later
    result = reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 120, sleep=clock.sleep, monotonic=clock.monotonic)
    assert result["action"] == "reloaded" and result["held_envs"] == ["blog"] and len(clock.naps) == 4
    assert caddy.calls[-1] == ["reload", "caddy"]


def test_a_hold_that_stays_fails_the_reload_naming_the_env_and_nothing_is_reloaded(tmp_path: Path) -> None:
    hd.HoldSwitch(str(tmp_path), "blog").hold()
    caddy, clock = Caddy(), Clock()
    with pytest.raises(hd.ProxyBusy, match=r"caddy not reloaded: blog stayed held for 5 s"):
        reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 5, sleep=clock.sleep, monotonic=clock.monotonic)
    assert caddy.calls == []


def test_a_freeze_holding_the_lock_keeps_the_reload_out(tmp_path: Path) -> None:
    freezing = hd.ProxyLock(str(tmp_path))
    freezing.acquire(exclusive=False, timeout_s=0)
    caddy, clock = Caddy(), Clock()
    with pytest.raises(hd.ProxyBusy, match="stayed locked for 2 s"):
        reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 2, sleep=clock.sleep, monotonic=clock.monotonic)
    assert caddy.calls == []
    freezing.release()
    assert reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 2)["action"] == "reloaded"


def test_a_proxy_that_does_not_run_is_started_and_check_mode_changes_nothing(tmp_path: Path) -> None:
    caddy = Caddy(active=False)
    assert reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 1, check_mode=True)["changed"]
    assert caddy.calls == []
    assert reload_proxy(Systemd(caddy), str(tmp_path), "caddy", 1)["action"] == "started"
    assert caddy.calls[-1] == ["start", "caddy"]


def test_freezes_share_the_lock_a_reload_takes_alone(tmp_path: Path) -> None:
    one, two, reload = hd.ProxyLock(str(tmp_path)), hd.ProxyLock(str(tmp_path)), hd.ProxyLock(str(tmp_path))
    one.acquire(exclusive=False, timeout_s=0)
    two.acquire(exclusive=False, timeout_s=0)  # two envs leaving one server at once
    with pytest.raises(hd.ProxyBusy):
        reload.acquire(exclusive=True, timeout_s=0)
    one.release()
    two.release()
    reload.acquire(exclusive=True, timeout_s=0)
    with pytest.raises(hd.ProxyBusy, match="a reload of the proxy"):
        one.acquire(exclusive=False, timeout_s=0)
    reload.release()
    assert fr.PROXY_LOCK_WAIT_S > 1  # a reload takes well under a second
