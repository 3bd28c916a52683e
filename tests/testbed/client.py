"""A web client that keeps writing and reading the env during a move, and records every request.

It resolves the env's domain at the authoritative DNS server before every request (no cache),
so the DNS switch is what moves its traffic; `pinned_address` makes it a visitor whose cache
is stale (always the old server).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field

from .dns import query_a


@dataclass
class Request:
    at: float
    kind: str              # write | read
    status: int            # 0 = no answer (connection error / timeout)
    latency_s: float
    address: str
    server: str = ""       # which server answered (from the app), when known
    order_id: int | None = None
    error: str = ""


@dataclass
class Client:
    dns_server: str
    domain: str
    writes_per_s: float = 5.0
    reads_per_s: float = 5.0
    pinned_address: str | None = None
    timeout_s: float = 15.0
    max_requests: int = 100_000        # a bound, so a forgotten client stops by itself
    requests: list[Request] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _address(self) -> str:
        if self.pinned_address:
            return self.pinned_address
        return query_a(self.dns_server, self.domain)[0][0]

    def _call(self, kind: str, method: str, path: str, body: bytes | None = None) -> Request:
        started = time.time()
        address = ""
        try:
            address = self._address()
            conn = http.client.HTTPConnection(address, 80, timeout=self.timeout_s)
            headers = {"Host": self.domain}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
            req = Request(started, kind, response.status, time.time() - started, address)
            if response.status == 200:
                data = json.loads(payload)
                req.server = str(data.get("server", ""))
                req.order_id = data.get("id")
            return req
        except Exception as exc:  # every failure is a data point, not a crash
            return Request(started, kind, 0, time.time() - started, address, error=repr(exc))

    def write(self, note: str) -> Request:
        body = urllib.parse.urlencode({"note": note, "content": f"content of {note}"}).encode()
        return self._call("write", "POST", "/write", body)

    def read(self) -> Request:
        return self._call("read", "GET", "/orders")

    def _loop(self, kind: str, rate: float) -> None:
        interval = 1.0 / rate
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set() and len(self.requests) < self.max_requests:
            req = self.write(f"{kind}-{n}-{time.time():.3f}") if kind == "write" else self.read()
            with self._lock:
                self.requests.append(req)
            n += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> "Client":
        for kind, rate in (("write", self.writes_per_s), ("read", self.reads_per_s)):
            if rate > 0:
                t = threading.Thread(target=self._loop, args=(kind, rate), daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 5)

    # ---- results ---------------------------------------------------------
    def acknowledged_writes(self) -> list[int]:
        return [r.order_id for r in self.requests if r.kind == "write" and r.status == 200 and r.order_id]

    def failed(self) -> list[Request]:
        return [r for r in self.requests if r.status != 200]

    def summary(self) -> dict[str, object]:
        return {
            "requests": len(self.requests),
            "failed": len(self.failed()),
            "writes_acknowledged": len(self.acknowledged_writes()),
            "max_latency_s": max((r.latency_s for r in self.requests), default=0.0),
            "servers": sorted({r.server for r in self.requests if r.server}),
        }

    def dump(self) -> list[dict[str, object]]:
        return [asdict(r) for r in self.requests]
