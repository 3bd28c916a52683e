# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is connected to, and what listens on, a local TCP port: the kernel's /proc/net/tcp
tables and a connect probe. The freeze uses them to drain an app before stopping it and to see
its forwarder listen. Stdlib only.
"""

from __future__ import annotations

import socket
import time

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"  # the st column of /proc/net/tcp


def count_in_table(text: str, port: int, state: str = ESTABLISHED) -> int:
    """Connections in ``state`` whose local port is ``port``, in one /proc/net/tcp table's text
    (a header line, then ``sl local_address rem_address st ...`` with hex ``ADDR:PORT``)."""
    want = "%04X" % port
    count = 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1].rsplit(":", 1)[-1].upper() == want and fields[3] == state:
            count += 1
    return count


def established(port: int, tables: tuple[str, ...] = TABLES) -> int:
    """TCP connections to local ``port`` in ESTABLISHED state (answered, in flight or queued)."""
    count = 0
    for table in tables:
        try:
            with open(table) as handle:
                count += count_in_table(handle.read(), port)
        except OSError:
            continue  # no IPv6 here
    return count


def wait_listening(port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> bool:
    """True as soon as something accepts a connection on ``host:port``; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
