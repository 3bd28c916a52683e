# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GETs through the server's front proxy with the env's domains as Host: what M(strackt.move.health)
asks, and what the rollback's hand-back (freeze state=back) waits for before the new server forwards
to this one. Stdlib only."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Callable


def ask(proxy: str, domain: str, path: str, timeout: float) -> dict[str, object]:
    """One GET through the proxy with ``domain`` as Host: its status, or the error."""
    host, port = proxy.rsplit(":", 1)
    started = time.monotonic()
    answer: dict[str, object] = {"domain": domain, "status": None, "error": None}
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": domain, "User-Agent": "strackt-move health",
                                                 "Connection": "close"})
        response = connection.getresponse()
        response.read(65536)
        answer["status"] = response.status
    except (OSError, http.client.HTTPException, socket.timeout) as exc:
        answer["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        connection.close()
    answer["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return answer


def describe(answer: dict[str, object], status: int) -> str:
    if answer["error"]:
        return "%s: no answer (%s)" % (answer["domain"], answer["error"])
    return "%s: HTTP %s (expected %d)" % (answer["domain"], answer["status"], status)


def wait_healthy(proxy: str, domains: list, path: str, status: int, timeout: float, wait: float,
                 pause: float = 0.1, ask_one: Callable[..., dict] = ask) -> tuple[bool, list, int]:
    """Ask every domain until all answer ``status`` or ``wait`` seconds passed: (healthy, the last
    answers, attempts). ``pause`` between rounds: the hand-back waits inside a hold, so it polls
    often."""
    deadline = time.monotonic() + max(0.0, wait)
    attempts = 0
    while True:
        attempts += 1
        answers = [ask_one(proxy, d, path, timeout) for d in domains]
        for answer in answers:
            answer["ok"] = answer["status"] == status
        if all(a["ok"] for a in answers) or time.monotonic() >= deadline:
            return all(a["ok"] for a in answers), answers, attempts
        time.sleep(min(pause, max(0.01, deadline - time.monotonic())))
