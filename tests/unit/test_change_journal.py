"""What a server changed itself after the barrier: read from its change journal's records, with
no clock compared (module_utils/change_journal.py), with a fake journal unit."""

from __future__ import annotations

import json

import pytest

from ansible_collections.strackt.move.plugins.module_utils import change_journal as cj
from ansible_collections.strackt.move.plugins.module_utils import journal as jr

ROOT = "/srv/shop"
DATA = "/srv/shop/data"
BARRIER = ".strackt-barrier-shop-1"


def records(*lines: str) -> bytes:
    return b"".join(line.encode() + b"\0" for line in lines)


EVENTS = records(
    "CLOSE_WRITE,CLOSE /srv/shop/data/before.txt",  # the final pass (before the barrier)
    "CREATE /srv/shop/data/.strackt-barrier-shop-1.AbC123",
    "MOVED_FROM /srv/shop/data/.strackt-barrier-shop-1.AbC123",
    "MOVED_TO /srv/shop/data/.strackt-barrier-shop-1",  # its arrival
    "CREATE /srv/shop/data/sessions/new",
    "MOVED_FROM /srv/shop/data/sessions/new",
    "MOVED_TO /srv/shop/data/sessions/s1",  # a rename over an existing session
    "DELETE /srv/shop/data/cache/old",
    "CREATE,ISDIR /srv/shop/data/uploads/chunk-7",
    "CREATE /srv/shop/data/.strackt-journal-barrier-1-2",  # the journal's own barrier
    "DELETE /srv/shop/data/.strackt-journal-barrier-1-2",
)


def test_only_what_came_after_the_barrier_is_the_new_servers_own():
    at = cj.marker_offset(EVENTS, DATA + "/" + BARRIER)
    assert at is not None and EVENTS[:at].endswith(b"MOVED_TO /srv/shop/data/.strackt-barrier-shop-1\0")
    found = cj.changed_after(EVENTS, ROOT, [DATA], at)
    assert found.trustworthy
    assert found.changed == ["data/cache/old", "data/sessions/new", "data/sessions/s1", "data/uploads/chunk-7"]
    assert cj.marker_offset(EVENTS, DATA + "/.strackt-barrier-other") is None


def test_the_barrier_of_the_freeze_that_released_counts_a_given_up_ones_does_not():
    """A freeze given up after its barrier arrived (the database's switch or the forwarder
    failed) leaves it there; the next freeze's final pass copies more, then its barrier arrives
    again. What came between the two is the source's, not the new server's own: the last
    arrival is the cut (the barrier's removal later is not an arrival)."""
    events = records(
        "MOVED_TO /srv/shop/data/.strackt-barrier-shop-1",  # the freeze that gave up
        "CLOSE_WRITE,CLOSE /srv/shop/data/second-final-pass.txt",
        "CLOSE_WRITE,CLOSE /srv/shop/data/.strackt-barrier-shop-1",  # written in place this time
        "CLOSE_WRITE,CLOSE /srv/shop/data/the-new-servers-own.txt",
        "DELETE /srv/shop/data/.strackt-barrier-shop-1",
    )
    at = cj.marker_offset(events, DATA + "/" + BARRIER)
    assert cj.changed_after(events, ROOT, [DATA], at).changed == ["data/the-new-servers-own.txt"]


@pytest.mark.parametrize("line, why", [
    ("Q_OVERFLOW ", "overflowed"),
    ("DELETE_SELF /srv/shop/data", "data path /srv/shop/data itself was removed"),
    ("garbage", "unreadable journal record"),
])
def test_a_journal_that_cannot_vouch_says_why(line, why):
    found = cj.changed_after(EVENTS + records(line), ROOT, [DATA], 0)
    assert not found.trustworthy and why in found.reason and found.changed == []


class FakeJournal(jr.Journal):
    def __init__(self, journal_dir: str, invocation: str | None = "inv-1") -> None:
        super().__init__(journal_dir, [DATA], systemd=object())
        self.running = invocation
        self.barriers = 0

    def invocation(self):
        return self.running

    def start_watching_all(self, attempts=3):
        self.running = "inv-%d" % (int((self.running or "inv-0").split("-")[1]) + 1)
        return self.running

    def barrier(self, timeout=5.0, since=0):
        self.barriers += 1
        return 0

    def stop(self):
        self.running = None


def server_journal(tmp_path, invocation="inv-1"):
    directory = tmp_path / "shop-1" / "target-journal"
    directory.mkdir(parents=True)
    fake = FakeJournal(str(directory), invocation=None)
    sj = cj.ServerJournal(str(directory), [DATA], ROOT, fake)
    return sj, fake, directory


def test_armed_once_then_read_since_the_barrier(tmp_path):
    sj, fake, directory = server_journal(tmp_path)
    assert sj.start() is True and sj.start() is False  # armed already: nothing changes
    (directory / "events").write_bytes(EVENTS)
    found = sj.since_marker(BARRIER)
    assert found.trustworthy and found.marker_seen and "data/sessions/s1" in found.changed
    assert fake.barriers == 1  # everything recorded up to now is in the file before it is read
    assert oct((directory / "armed.json").stat().st_mode & 0o777) == "0o600"


def test_a_restarted_or_stopped_journal_is_not_trusted(tmp_path):
    sj, fake, directory = server_journal(tmp_path)
    sj.start()
    (directory / "events").write_bytes(EVENTS)
    fake.running = "inv-9"  # restarted behind our back: what happened in between is unknown
    found = sj.since_marker(BARRIER)
    assert not found.trustworthy and "was restarted since it was armed" in found.reason
    fake.running = None
    assert "is not running" in sj.since_marker(BARRIER).reason
    fake.running = json.loads((directory / "armed.json").read_text())["invocation"]
    (directory / "events").write_bytes(records("CREATE /srv/shop/data/x"))
    found = sj.since_marker(BARRIER)
    assert not found.trustworthy and "never arrived" in found.reason


def test_the_source_after_its_last_pass(tmp_path):
    sj, fake, directory = server_journal(tmp_path)
    fake.running = "inv-4"
    head = records("CLOSE_WRITE,CLOSE /srv/shop/data/in-the-pass")
    (directory / "events").write_bytes(head + records("CLOSE_WRITE,CLOSE /srv/shop/data/late"))
    assert not sj.since_last_pass().trustworthy  # no pass committed yet
    (directory / "state.json").write_text(json.dumps({"invocation": "inv-4", "offset": 0, "end_offset": len(head)}))
    found = sj.since_last_pass()
    assert found.trustworthy and found.changed == ["data/late"]


def test_the_changes_split_into_what_is_here_and_what_is_gone(tmp_path):
    root = tmp_path / "srv"
    (root / "data" / "sessions").mkdir(parents=True)
    (root / "data" / "sessions" / "s1").write_text("x")
    (root / "up").mkdir()
    found = cj.Changes(True, "", changed=["data/sessions/s1", "data/cache/old", "up/chunk"])
    assert found.by_data_path(str(root), [str(root / "data"), str(root / "up")]) == {
        str(root / "data"): {"copy": ["sessions/s1"], "delete": ["cache/old"]},
        str(root / "up"): {"copy": [], "delete": ["chunk"]}}
