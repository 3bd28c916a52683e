"""The web process: `gunicorn --bind 127.0.0.1:$PORT notes.app:app`."""
from __future__ import annotations

import socket

from flask import Flask, g, jsonify, request
from sqlalchemy import insert, select, text

from . import settings as settings_module
from .cache import FileCache
from .db import jobs, make_engine, notes, uploads
from .sessions import COOKIE, SessionStore
from .uploads import MAX_CHUNKS, UPLOAD_ID, UploadStore, file_sha256

SERVER = socket.gethostname()
HEALTH_PATH = "/up"

settings = settings_module.load(web=True)
engine = make_engine(settings.database_url)
sessions = SessionStore(settings.data_dir, settings.secret_key)
cache = FileCache(settings.data_dir, settings.cache_ttl_s)
upload_store = UploadStore(settings.data_dir)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024


def answer(data: dict, status: int = 200):
    """Every answer says which server gave it, so clients can tell who served them during a move."""
    return jsonify(dict(data, server=SERVER)), status


@app.before_request
def check_host_and_session():
    if request.path == HEALTH_PATH:
        return None  # health checks may come by address; they touch no session
    host = (request.host or "").rsplit(":", 1)[0].lower()
    if host not in settings.allowed_hosts:
        return answer({"error": f"host {host!r} is not in ALLOWED_HOSTS"}, 400)
    g.session_id, g.session_cookie = sessions.touch(sessions.sid_from_cookie(request.cookies.get(COOKIE)),
                                                     request.path)
    return None


@app.after_request
def set_session_cookie(response):
    cookie = g.get("session_cookie")
    if cookie:
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="Lax")
    return response


@app.get(HEALTH_PATH)
def up():
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy", reported, not raised
        return answer({"status": "error", "error": f"database: {exc.__class__.__name__}"}, 503)
    return answer({"status": "ok"})


@app.post("/notes")
def create_note():
    title = request.form.get("title", "").strip()
    body = request.form.get("body")
    if not title or len(title) > 200 or body is None:
        return answer({"error": "form fields title (1-200 characters) and body are required"}, 400)
    # One transaction: the note and its render job are durable together, or neither is.
    with engine.begin() as conn:
        note_id = conn.execute(insert(notes).values(title=title, body=body)).inserted_primary_key[0]
        conn.execute(insert(jobs).values(kind="render", note_id=note_id))
    return answer({"id": note_id})


@app.get("/notes")
def list_notes():
    with engine.connect() as conn:
        ids = [row.id for row in conn.execute(select(notes.c.id).order_by(notes.c.id))]
    return answer({"count": len(ids), "ids": ids})


@app.get("/notes/<int:note_id>")
def read_note(note_id: int):
    key = f"note:{note_id}"
    cached = cache.get(key)
    if cached is not None:
        return answer(dict(cached, cached=True))
    with engine.connect() as conn:
        row = conn.execute(select(notes).where(notes.c.id == note_id)).first()
    if row is None:
        return answer({"error": f"note {note_id} not found"}, 404)
    try:
        rendered = (settings.data_dir / "notes" / f"{note_id}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        rendered = None
    data = {"id": row.id, "title": row.title, "body": row.body, "rendered": rendered is not None,
            "file": rendered}
    if rendered is not None:
        cache.set(key, data)  # a rendered note no longer changes
    return answer(dict(data, cached=False))


@app.post("/uploads")
def upload_chunk():
    upload_id = request.form.get("upload_id", "")
    try:
        index = int(request.form.get("chunk_index", ""))
        count = int(request.form.get("chunk_count", ""))
    except ValueError:
        index = count = -1
    chunk = request.files.get("chunk")
    if not UPLOAD_ID.match(upload_id) or not 0 <= index < count <= MAX_CHUNKS or chunk is None:
        return answer({"error": "multipart fields upload_id (32 hex digits), chunk_index, chunk_count "
                                f"(0 <= chunk_index < chunk_count <= {MAX_CHUNKS}) and file chunk are required"},
                      400)
    upload_store.save_part(upload_id, index, chunk.read())
    assembled = upload_store.assemble(upload_id, count)
    if assembled is None:
        return answer({"upload_id": upload_id, "chunk_index": index, "complete": False})
    with engine.begin() as conn:
        known = conn.execute(select(uploads.c.id).where(uploads.c.id == upload_id)).first()
        if known is None:
            conn.execute(insert(uploads).values(id=upload_id, size=assembled.size, sha256=assembled.sha256,
                                                chunk_count=count))
    # Parts go only once the final file and its record are durable.
    upload_store.delete_parts(upload_id, count)
    return answer({"upload_id": upload_id, "chunk_index": index, "complete": True,
                   "size": assembled.size, "sha256": assembled.sha256})


@app.get("/uploads/<upload_id>")
def read_upload(upload_id: str):
    if not UPLOAD_ID.match(upload_id):
        return answer({"error": "an upload id is 32 hex digits"}, 400)
    with engine.connect() as conn:
        row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
    if row is None:
        return answer({"error": f"upload {upload_id} not found"}, 404)
    path = upload_store.final_path(upload_id)
    try:
        file_size, file_hash = path.stat().st_size, file_sha256(path)
    except FileNotFoundError:
        return answer({"error": f"the file of upload {upload_id} is missing"}, 500)
    return answer({"id": row.id, "size": row.size, "sha256": row.sha256,
                   "file_size": file_size, "file_sha256": file_hash})
