"""A web client that keeps writing and reading the env during a move, and records every request.

It resolves the env's domain at the authoritative DNS server before every request (no cache),
so the DNS switch is what moves its traffic; `pinned_address` makes it a visitor whose cache
is stale (the old server), until `re_resolve_after` ends that cache: a resolver that keeps the
old address past the switch (a stretched TTL, a stale answer) and then asks again.

What a write, a read and a read-back are depends on the app: `app` is one of the adapters
below (`ShopApp`, the default, `NotesApp`, `DropApp`), so the same load and lost-write checks
run against any sample app.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from .dns import query_a

WrittenId = int | str


@dataclass(frozen=True)
class Call:
    """One HTTP request of the client (Host is always the env's domain)."""
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]   # names in lower case
    body: bytes

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return data


@dataclass(frozen=True)
class Write:
    """A write as the app takes it: one call, or several (a chunked upload) whose last answer
    acknowledges it; `expected` is what a read-back must find."""
    calls: tuple[Call, ...]
    expected: str


class App(Protocol):
    """What the client needs to know about an app."""

    name: str

    def write(self, label: str) -> Write: ...

    def read(self) -> Call: ...

    def read_back(self, written_id: WrittenId) -> Call: ...

    def served_by(self, answer: Answer) -> str: ...

    def written_id(self, answer: Answer) -> WrittenId | None: ...

    def check(self, written_id: WrittenId, expected: str, answer: Answer) -> str:
        """"" when the answer shows the write as it was made, else what is wrong."""
        ...


def form(fields: dict[str, str]) -> tuple[bytes, str]:
    return urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: `files` maps field -> (filename, content, content type)."""
    boundary = "strackt-" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for name, (filename, content, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _json_server(answer: Answer) -> str:
    try:
        return str(answer.json().get("server", ""))
    except ValueError:
        return ""


def _json_id(answer: Answer) -> WrittenId | None:
    try:
        value = answer.json().get("id")
    except ValueError:
        return None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _status_problem(answer: Answer) -> str:
    return f"answered {answer.status}: {answer.body[:200]!r}"


@dataclass
class ShopApp:
    """The Django sample: POST /write (note, content), GET /orders, GET /read/<id>."""

    name: str = "shop"

    def write(self, label: str) -> Write:
        content = f"content of {label}"
        body, ctype = form({"note": label, "content": content})
        return Write((Call("POST", "/write", body, ctype),), content)

    def read(self) -> Call:
        return Call("GET", "/orders")

    def read_back(self, written_id: WrittenId) -> Call:
        return Call("GET", f"/read/{written_id}")

    def served_by(self, answer: Answer) -> str:
        return _json_server(answer)

    def written_id(self, answer: Answer) -> WrittenId | None:
        return _json_id(answer)

    def check(self, written_id: WrittenId, expected: str, answer: Answer) -> str:
        if answer.status != 200:
            return _status_problem(answer)
        data = answer.json()
        if data.get("id") != written_id or data.get("content") != expected:
            return f"reads back as {data!r}"
        return ""


@dataclass
class NotesApp:
    """The Flask sample: POST /notes (title, body), GET /notes, GET /notes/<id>; with
    `upload_every` = N, every Nth write is a chunked upload (POST /uploads, `upload_chunks`
    chunks of `chunk_bytes`), acknowledged by the answer to its last chunk."""

    name: str = "notes"
    upload_every: int = 0
    upload_chunks: int = 3
    chunk_bytes: int = 16 * 1024
    require_rendered: bool = True   # a read-back also wants the worker's file
    _writes: int = 0

    def write(self, label: str) -> Write:
        self._writes += 1
        if self.upload_every and self._writes % self.upload_every == 0:
            return self.upload(label, self.upload_chunks, self.chunk_bytes)
        body = f"body of {label}"
        encoded, ctype = form({"title": label, "body": body})
        return Write((Call("POST", "/notes", encoded, ctype),), body)

    def upload(self, label: str, chunks: int, chunk_bytes: int, upload_id: str | None = None) -> Write:
        upload_id = upload_id or uuid.uuid4().hex
        seed = hashlib.sha256(label.encode()).digest()
        data = (seed * (chunks * chunk_bytes // len(seed) + 1))[:chunks * chunk_bytes]
        calls = []
        for i in range(chunks):
            body, ctype = multipart(
                {"upload_id": upload_id, "chunk_index": str(i), "chunk_count": str(chunks)},
                {"chunk": (f"{label}.bin", data[i * chunk_bytes:(i + 1) * chunk_bytes], "application/octet-stream")})
            calls.append(Call("POST", "/uploads", body, ctype))
        return Write(tuple(calls), "sha256:" + hashlib.sha256(data).hexdigest())

    def read(self) -> Call:
        return Call("GET", "/notes")

    def read_back(self, written_id: WrittenId) -> Call:
        if isinstance(written_id, str):
            return Call("GET", f"/uploads/{written_id}")
        return Call("GET", f"/notes/{written_id}")

    def served_by(self, answer: Answer) -> str:
        return _json_server(answer)

    def written_id(self, answer: Answer) -> WrittenId | None:
        try:
            data = answer.json()
        except ValueError:
            return None
        if "upload_id" in data:  # a chunk: only the one that completes the upload acknowledges it
            return str(data["upload_id"]) if data.get("complete") is True else None
        return _json_id(answer)

    def check(self, written_id: WrittenId, expected: str, answer: Answer) -> str:
        if answer.status != 200:
            return _status_problem(answer)
        data = answer.json()
        if isinstance(written_id, str):
            digest = expected.removeprefix("sha256:")
            if data.get("sha256") != digest or data.get("file_sha256") != digest:
                return f"upload reads back as {data!r}"
            return ""
        if data.get("id") != written_id or data.get("body") != expected:
            return f"reads back as {data!r}"
        if self.require_rendered and not (data.get("rendered") and expected in str(data.get("file"))):
            return "not rendered: the worker has not written its file (yet)"
        return ""


@dataclass
class DropApp:
    """The Node.js sample: POST /files (multipart `file`), GET /files, GET /files/<id> (raw
    bytes; the serving server in the X-Served-By header)."""

    name: str = "drop"
    file_bytes: int = 4096

    def write(self, label: str) -> Write:
        seed = hashlib.sha256(label.encode()).digest()
        content = (seed * (self.file_bytes // len(seed) + 1))[:self.file_bytes]
        body, ctype = multipart({}, {"file": (f"{label}.bin", content, "application/octet-stream")})
        return Write((Call("POST", "/files", body, ctype),), "sha256:" + hashlib.sha256(content).hexdigest())

    def read(self) -> Call:
        return Call("GET", "/files")

    def read_back(self, written_id: WrittenId) -> Call:
        return Call("GET", f"/files/{written_id}")

    def served_by(self, answer: Answer) -> str:
        return answer.headers.get("x-served-by") or _json_server(answer)

    def written_id(self, answer: Answer) -> WrittenId | None:
        return _json_id(answer)

    def check(self, written_id: WrittenId, expected: str, answer: Answer) -> str:
        if answer.status != 200:
            return _status_problem(answer)
        actual = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        if actual != expected:
            return f"content differs: {actual} instead of {expected}"
        return ""


APPS: dict[str, type[ShopApp] | type[NotesApp] | type[DropApp]] = {
    "shop": ShopApp, "notes": NotesApp, "drop": DropApp}


@dataclass
class Request:
    at: float
    kind: str              # write | read
    status: int            # 0 = no answer (connection error / timeout)
    latency_s: float
    address: str
    server: str = ""       # which server answered (from the app), when known
    order_id: WrittenId | None = None   # the id of an acknowledged write
    error: str = ""
    expected: str = ""     # what a read-back of this write must find


@dataclass(frozen=True)
class LostWrite:
    written_id: WrittenId
    problem: str


@dataclass
class Client:
    dns_server: str
    domain: str
    writes_per_s: float = 5.0
    reads_per_s: float = 5.0
    pinned_address: str | None = None
    timeout_s: float = 15.0
    max_requests: int = 100_000        # a bound, so a forgotten client stops by itself
    app: App = field(default_factory=ShopApp)
    requests: list[Request] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cookies: dict[str, str] = field(default_factory=dict)   # like a browser: what the app set
    _pinned_until: float | None = None   # monotonic; None: pinned for good

    def _address(self) -> str:
        if self.pinned_address and (self._pinned_until is None or time.monotonic() < self._pinned_until):
            return self.pinned_address
        return query_a(self.dns_server, self.domain)[0][0]

    def re_resolve_after(self, seconds: float) -> None:
        """Keep the pinned address `seconds` longer, then resolve before every request again
        (the end of a stale resolver cache's tail)."""
        self._pinned_until = time.monotonic() + seconds

    def _send(self, address: str, call: Call) -> Answer:
        conn = http.client.HTTPConnection(address, 80, timeout=self.timeout_s)
        try:
            headers = {"Host": self.domain}
            if call.content_type is not None:
                headers["Content-Type"] = call.content_type
            with self._lock:  # the write and read threads share the jar, like a browser's tabs
                cookies = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
            if cookies:
                headers["Cookie"] = cookies
            conn.request(call.method, call.path, body=call.body, headers=headers)
            response = conn.getresponse()
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                with self._lock:
                    self._cookies[name.strip()] = rest.split(";", 1)[0]
            return answer
        finally:
            conn.close()

    def send(self, call: Call, address: str | None = None) -> Answer:
        """One call, not recorded (tests use it for requests of their own, e.g. single chunks)."""
        return self._send(address or self._address(), call)

    def _call(self, kind: str, calls: Sequence[Call], expected: str = "") -> Request:
        started = time.time()
        address = ""
        try:
            address = self._address()
            answer = Answer(0, {}, b"")
            for call in calls:  # a multi-call write stops at its first failed call
                answer = self._send(address, call)
                if answer.status != 200:
                    break
            req = Request(started, kind, answer.status, time.time() - started, address, expected=expected)
            if answer.status == 200:
                req.server = self.app.served_by(answer)
                if kind == "write":
                    req.order_id = self.app.written_id(answer)
                    if req.order_id is None:
                        req.status, req.error = 0, f"no write acknowledged in {answer.body[:200]!r}"
                else:
                    answer.json()  # every sample's read answers JSON; anything else is a failure
            return req
        except Exception as exc:  # every failure is a data point, not a crash
            return Request(started, kind, 0, time.time() - started, address, error=repr(exc))

    def write(self, note: str) -> Request:
        made = self.app.write(note)
        return self._call("write", made.calls, made.expected)

    def read(self) -> Request:
        return self._call("read", [self.app.read()])

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
    def acknowledged_writes(self) -> list[WrittenId]:
        return [r.order_id for r in self.requests if r.kind == "write" and r.status == 200 and r.order_id]

    def failed(self) -> list[Request]:
        return [r for r in self.requests if r.status != 200]

    def lost_writes(self, address: str | None = None) -> list[LostWrite]:
        """Acknowledged writes that do not read back as written, asked of `address` (default:
        where the domain points now, or the pinned address)."""
        address = address or self._address()
        lost = []
        for r in self.requests:
            if r.kind != "write" or r.status != 200 or not r.order_id:
                continue
            try:
                problem = self.app.check(r.order_id, r.expected, self._send(address, self.app.read_back(r.order_id)))
            except Exception as exc:  # unreadable is lost, whatever the reason
                problem = repr(exc)
            if problem:
                lost.append(LostWrite(r.order_id, problem))
        return lost

    def settled_lost_writes(self, within_s: float = 20.0, address: str | None = None) -> list[LostWrite]:
        """lost_writes() once the app had time to finish what it does after acknowledging (notes'
        worker renders each note's file): asked again every 0.5 s for up to ``within_s``."""
        deadline = time.monotonic() + within_s
        while True:
            lost = self.lost_writes(address)
            if not lost or time.monotonic() > deadline:
                return lost
            time.sleep(0.5)

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
