"""Server-side sessions in files: DATA_DIR/sessions/<sid>.json, replaced by rename on every request."""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from .files import replace_file

COOKIE = "notes_session"


class SessionStore:
    def __init__(self, data_dir: Path, secret_key: str) -> None:
        self.directory = data_dir / "sessions"
        self.signer = URLSafeSerializer(secret_key, salt="notes-session")

    def sid_from_cookie(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            sid = self.signer.loads(cookie)
        except BadSignature:
            return None
        return sid if isinstance(sid, str) and len(sid) == 32 and sid.isalnum() else None

    def touch(self, sid: str | None, path: str) -> tuple[str, str]:
        """Load (or start) the session, count this request, write it back; return (sid, cookie)."""
        data: dict[str, object] = {}
        if sid:
            try:
                data = json.loads((self.directory / f"{sid}.json").read_text())
            except (FileNotFoundError, ValueError):
                data = {}
        else:
            sid = secrets.token_hex(16)
        now = time.time()
        data.setdefault("created_at", now)
        data["requests"] = int(data.get("requests", 0)) + 1
        data["last_path"] = path
        data["last_at"] = now
        replace_file(self.directory / f"{sid}.json", [json.dumps(data).encode()], durable=False)
        return sid, self.signer.dumps(sid)
