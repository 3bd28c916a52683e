"""The client load during a move: several tests.testbed Clients, since one Client makes one
request at a time per kind (a slow answer would otherwise lower the rate)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tests.testbed.client import Client, Request

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
    clients: list[Client] = field(default_factory=list)

    def start(self) -> "Load":
        writes, reads = _split(self.writes_per_s), _split(self.reads_per_s)
        for i in range(max(len(writes), len(reads))):
            self.clients.append(Client(
                self.dns_server, self.domain, pinned_address=self.pinned_address,
                writes_per_s=writes[i] if i < len(writes) else 0.0,
                reads_per_s=reads[i] if i < len(reads) else 0.0).start())
        return self

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

    def acknowledged_writes(self) -> list[int]:
        return [i for c in self.clients for i in c.acknowledged_writes()]


def missing_writes(address: str, domain: str, ids: list[int]) -> list[int]:
    """Acknowledged writes the server at `address` cannot read back."""
    missing = []
    for order_id in ids:
        request = urllib.request.Request(f"http://{address}/read/{order_id}", headers={"Host": domain})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if json.loads(response.read()).get("id") != order_id:
                    missing.append(order_id)
        except (urllib.error.URLError, ValueError, OSError):
            missing.append(order_id)
    return missing
