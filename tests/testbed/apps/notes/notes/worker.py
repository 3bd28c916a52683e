"""The worker process: takes render jobs from the queue (the jobs table) and writes the notes' files.

`python3 -m notes.worker`. A job is claimed with SELECT ... FOR UPDATE SKIP LOCKED and marked
done in the same transaction after its file is durable, so a worker stopped at any point leaves
the job to be done again (rendering is idempotent) and two workers never take the same job."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from . import settings as settings_module
from .db import jobs, make_engine, notes
from .files import replace_file

IDLE_SLEEP_S = 0.2


def render(title: str, body: str) -> bytes:
    return f"{title}\n{'=' * len(title)}\n\n{body}\n".encode("utf-8")


def run_one(engine: Engine, data_dir: Path) -> bool:
    """Do the oldest pending job; False when there was none."""
    with engine.begin() as conn:
        job = conn.execute(
            select(jobs.c.id, jobs.c.note_id)
            .where(jobs.c.done_at.is_(None))
            .order_by(jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if job is None:
            return False
        note = conn.execute(select(notes.c.title, notes.c.body).where(notes.c.id == job.note_id)).one()
        replace_file(data_dir / "notes" / f"{job.note_id}.txt", [render(note.title, note.body)], durable=True)
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(done_at=func.now()))
    return True


def main() -> int:
    settings = settings_module.load()
    engine = make_engine(settings.database_url)
    stopping = False

    def stop(signum, frame):  # finish the job in hand, then leave
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("notes worker: waiting for jobs", flush=True)
    while not stopping:
        try:
            if not run_one(engine, settings.data_dir):
                time.sleep(IDLE_SLEEP_S)
        except Exception as exc:  # the database may be away for a moment: say so, wait, go on
            print(f"notes worker: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
            time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
