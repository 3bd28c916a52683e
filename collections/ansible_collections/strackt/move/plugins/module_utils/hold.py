# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hold switch of an env's front proxy: its settings and its file protocol, in one place.

The provision role's Caddy templates make every env's site check
``http://127.0.0.1:<HOLD_PORT>/<env>`` as its upstream's health, every ``HOLD_CHECK_INTERVAL``;
that check fails while the file ``<HOLD_DIR>/<env>`` exists, so Caddy holds the env's requests
instead of passing them to the app. ``<HOLD_DIR>/<env>.retry`` lets Caddy 2.6 retry held non-GET
requests (it gives up on them otherwise). The freeze module creates and removes these files; no
proxy reload is ever needed (a reload drops held requests).

The templates get the settings through ``Environment.to_dict()`` (``hold_dir``, ``hold_port``,
``hold_check_interval``), the freeze module through its defaults: change them here only.
Stdlib only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

HOLD_DIR = "/run/strackt-move/hold"
HOLD_PORT = 2099
HOLD_CHECK_INTERVAL_MS = 50
#: the same interval as Caddy writes durations
HOLD_CHECK_INTERVAL = "%dms" % HOLD_CHECK_INTERVAL_MS
#: from creating the hold file until Caddy is sure to have seen it: one check interval and a margin
HOLD_SETTLE_S = round(HOLD_CHECK_INTERVAL_MS / 1000.0 + 0.03, 3)
RETRY_SUFFIX = ".retry"


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
