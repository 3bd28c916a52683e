"""The client load during a move: several tests.testbed Clients, since one Client makes one
request at a time per kind (a slow answer would otherwise lower the rate)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.testbed.client import App, Client, LostWrite, Request, ShopApp, WrittenId

PER_CLIENT_RATE = 5.0  # requests/s one Client thread is asked for


def _split(rate: float) -> list[float]:
    if rate <= 0:
        return []
    n = max(1, math.ceil(rate / PER_CLIENT_RATE))
    return [rate / n] * n


@dataclass
class Load:
    dns_server: str
    domain: str
    writes_per_s: float
    reads_per_s: float
    pinned_address: str | None = None
    new_app: Callable[[], App] = ShopApp   # the env's app adapter, one per Client
    clients: list[Client] = field(default_factory=list)

    def start(self) -> "Load":
        writes, reads = _split(self.writes_per_s), _split(self.reads_per_s)
        for i in range(max(len(writes), len(reads))):
            self.clients.append(Client(
                self.dns_server, self.domain, pinned_address=self.pinned_address, app=self.new_app(),
                writes_per_s=writes[i] if i < len(writes) else 0.0,
                reads_per_s=reads[i] if i < len(reads) else 0.0).start())
        return self

    def re_resolve_after(self, seconds: float) -> None:
        """The stale tail ends: `seconds` from now every client resolves the domain again."""
        for c in self.clients:
            c.re_resolve_after(seconds)

    def stop(self) -> None:
        for c in self.clients:
            c._stop.set()
        for c in self.clients:
            c.stop()

    @property
    def requests(self) -> list[Request]:
        return [r for c in self.clients for r in c.requests]

    def failed(self) -> list[Request]:
        return [r for c in self.clients for r in c.failed()]

    def acknowledged_writes(self) -> list[WrittenId]:
        return [i for c in self.clients for i in c.acknowledged_writes()]

    def lost_writes(self, address: str) -> list[LostWrite]:
        """Acknowledged writes the server at `address` does not read back as written (the app's
        own read-back and check, tests.testbed.client)."""
        return [lost for c in self.clients for lost in c.lost_writes(address)]


def settled_lost_writes(loads: list[Load], address: str, within_s: float = 20.0) -> list[LostWrite]:
    """Lost writes once the app had time to finish what it does after acknowledging a write
    (notes' worker renders a note's file shortly after): asked again until none or `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        lost = [w for load in loads for w in load.lost_writes(address)]
        if not lost or time.monotonic() > deadline:
            return lost
        time.sleep(0.5)
