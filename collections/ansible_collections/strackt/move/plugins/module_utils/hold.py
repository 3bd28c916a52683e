# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hold switch of an env's front proxy: its settings and its file protocol, in one place.

The provision role's Caddy templates make every env's site check
``http://127.0.0.1:<HOLD_PORT>/<env>`` as its upstream's health, every ``HOLD_CHECK_INTERVAL``;
that check fails while the file ``<HOLD_DIR>/<env>`` exists, so Caddy holds the env's requests
instead of passing them to the app. ``<HOLD_DIR>/<env>.retry`` lets Caddy 2.6 retry held non-GET
requests (it gives up on them otherwise). The freeze module creates and removes these files; no
proxy reload is ever needed (a reload drops held requests). A release ends the retry permission a
few seconds later by a transient timer; a new hold cancels such a timer first, or it would end the
new hold's permission (every held request then gets 503 at once, GETs too).

Other envs' changes do reload the proxy (a site added, closed or removed), so a reload must not
fall into any env's hold on that server: ``ProxyLock`` is held shared by a freeze from its hold
to its release, exclusive by a reload, which also waits for the retry permissions to end
(``held_envs``). The lock is a file beside the hold files, so it binds every control node.

The templates get the settings through ``Environment.to_dict()`` (``hold_dir``, ``hold_port``,
``hold_check_interval``), the freeze module through its defaults: change them here only.
Stdlib only.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass

HOLD_DIR = "/run/strackt-move/hold"
HOLD_PORT = 2099
HOLD_CHECK_INTERVAL_MS = 50
#: the same interval as Caddy writes durations
HOLD_CHECK_INTERVAL = "%dms" % HOLD_CHECK_INTERVAL_MS
#: from creating the hold file until Caddy is sure to have seen it: one check interval and a margin
HOLD_SETTLE_S = round(HOLD_CHECK_INTERVAL_MS / 1000.0 + 0.03, 3)
RETRY_SUFFIX = ".retry"
LOCK_NAME = ".proxy.lock"


def settings() -> dict[str, object]:
    """The settings the provision templates need, as ``Environment.to_dict()`` hands them on."""
    return dict(hold_dir=HOLD_DIR, hold_port=HOLD_PORT, hold_check_interval=HOLD_CHECK_INTERVAL)


@dataclass(frozen=True)
class HoldSwitch:
    """The hold and retry files of one env in ``hold_dir``."""

    hold_dir: str
    env: str

    @property
    def hold_file(self) -> str:
        return os.path.join(self.hold_dir, self.env)

    @property
    def retry_file(self) -> str:
        return self.hold_file + RETRY_SUFFIX

    def hold(self) -> None:
        """Switch on: Caddy holds new requests, and may retry held non-GET ones."""
        os.makedirs(self.hold_dir, 0o755, exist_ok=True)
        os.chmod(self.hold_dir, 0o755)
        # the retry permission first: a POST held from the first instant may be retried
        for path in (self.retry_file, self.hold_file):
            with open(path, "w") as handle:
                handle.write("strackt-move freeze of %s\n" % self.env)

    def release(self) -> None:
        """Switch off: held requests go to whatever listens on the app port now."""
        _remove(self.hold_file)

    def end_retry(self) -> None:
        _remove(self.retry_file)

    def is_held(self) -> bool:
        return os.path.exists(self.hold_file)

    def retry_allowed(self) -> bool:
        return os.path.exists(self.retry_file)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def held_envs(hold_dir: str) -> list[str]:
    """The envs held (or whose held requests may still be retried) in ``hold_dir``, sorted."""
    try:
        names = os.listdir(hold_dir)
    except FileNotFoundError:
        return []
    envs = {name[:-len(RETRY_SUFFIX)] if name.endswith(RETRY_SUFFIX) else name
            for name in names if not name.startswith(".")}
    return sorted(envs)


class ProxyBusy(RuntimeError):
    """The proxy lock could not be taken in time."""


class ProxyLock:
    """``flock`` on ``<hold_dir>/.proxy.lock``: shared for a freeze's hold, exclusive for a reload."""

    def __init__(self, hold_dir: str, sleep=time.sleep, monotonic=time.monotonic) -> None:
        self.path = os.path.join(hold_dir, LOCK_NAME)
        self.hold_dir = hold_dir
        self._fd: int | None = None
        self._sleep = sleep
        self._monotonic = monotonic

    def acquire(self, exclusive: bool, timeout_s: float) -> float:
        """Take the lock within ``timeout_s`` (ProxyBusy if not); returns the seconds waited."""
        os.makedirs(self.hold_dir, 0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        start = self._monotonic()
        while True:
            try:
                fcntl.flock(fd, mode)
                self._fd = fd
                return self._monotonic() - start
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if self._monotonic() - start >= timeout_s:
                os.close(fd)
                raise ProxyBusy("%s stayed locked for %g s (%s)" % (
                    self.path, timeout_s, "a reload of the proxy" if not exclusive else
                    "the freeze of %s" % (", ".join(held_envs(self.hold_dir)) or "another env")))
            self._sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
