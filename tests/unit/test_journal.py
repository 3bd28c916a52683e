"""The change journal's reading of inotifywait records, and the incremental rsync it drives."""

import os
import subprocess

import pytest

from ansible_collections.strackt.move.plugins.module_utils import journal as jr
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs


def records(*lines):
    return b"".join(line.encode() + b"\0" for line in lines)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "1.txt").write_text("one")
    return root


def journal(tmp_path, root):
    return jr.Journal(str(tmp_path / "mv" / "journal"), [str(root)])


def test_unit_name_is_the_move():
    assert jr.unit_name("/root/.strackt-move/shop-20261125T123456Z/journal") == \
        "strackt-journal-shop-20261125T123456Z.service"


def test_existing_paths_are_copied_missing_ones_deleted(tmp_path, data):
    j = journal(tmp_path, data)
    changes, why = j.parse(records(f"CLOSE_WRITE,CLOSE {data}/uploads/1.txt",
                                   f"DELETE {data}/uploads/0.txt",
                                   f"ATTRIB,ISDIR {data}/uploads"))
    assert why is None
    assert changes[str(data)] == {"copy": ["uploads", "uploads/1.txt"], "delete": ["uploads/0.txt"]}


def test_a_temporary_file_made_after_the_last_pass_needs_no_deletion(tmp_path, data):
    j = journal(tmp_path, data)
    stream = records(f"CREATE {data}/uploads/2.tmp", f"MOVED_FROM {data}/uploads/2.tmp")
    changes, _ = j.parse(stream, settled=0)
    assert changes[str(data)]["delete"] == []
    # ...but one created while the last pass ran may have been copied: delete it
    changes, _ = j.parse(stream, settled=len(stream))
    assert changes[str(data)]["delete"] == ["uploads/2.tmp"]


def test_a_new_directory_is_walked(tmp_path, data):
    (data / "new" / "sub").mkdir(parents=True)
    (data / "new" / "sub" / "f").write_text("x")
    changes, _ = journal(tmp_path, data).parse(records(f"CREATE,ISDIR {data}/new"))
    assert changes[str(data)]["copy"] == ["new", "new/sub", "new/sub/f"]


def test_barrier_markers_are_not_data(tmp_path, data):
    changes, _ = journal(tmp_path, data).parse(records(f"DELETE {data}/{jr.BARRIER_PREFIX}1-2"))
    assert changes[str(data)] == {"copy": [], "delete": []}


@pytest.mark.parametrize("line, reason", [
    ("Q_OVERFLOW ", "overflowed"),
    ("DELETE_SELF {data}/", "removed or moved"),
    ("garbage", "unreadable"),
])
def test_when_the_journal_cannot_vouch_the_pass_is_full(tmp_path, data, line, reason):
    changes, why = journal(tmp_path, data).parse(records(line.format(data=data)))
    assert changes is None and reason in why


def test_deletion_rules_reach_only_the_named_paths():
    assert rs.deletion_rules(["a/b*c", "a/d"]) == ["/a/", "/a/b\\*c", "/a/b\\*c/***", "/a/d", "/a/d/***"]


def test_incremental_and_deletion_passes_with_local_rsync(tmp_path, data):
    dst = tmp_path / "dst"
    subprocess.run(["rsync"] + rs.RSYNC_FLAGS + [f"{data}/", f"{dst}/"], check=True, capture_output=True)
    (dst / "uploads" / "gone").mkdir()
    (dst / "uploads" / "gone" / "f").write_text("x")
    (dst / "uploads" / "keep-extra").write_text("not named: stays")
    (data / "uploads" / "2.txt").write_text("two")
    lists = tmp_path / "copy"
    lists.write_bytes(b"uploads/2.txt\0uploads/vanished\0")
    subprocess.run(["rsync"] + rs.INCREMENTAL_FLAGS + [f"--files-from={lists}", f"{data}/", f"{dst}/"],
                   check=True, capture_output=True)
    rules = tmp_path / "delete"
    rules.write_bytes(b"".join(r.encode() + b"\0" for r in rs.deletion_rules(["uploads/gone"])))
    subprocess.run(["rsync"] + rs.DELETION_FLAGS + [f"--include-from={rules}", "--exclude=*",
                                                     f"{data}/", f"{dst}/"], check=True, capture_output=True)
    assert (dst / "uploads" / "2.txt").read_text() == "two"
    assert not (dst / "uploads" / "gone").exists()
    assert (dst / "uploads" / "keep-extra").exists()


def test_a_changed_file_with_hard_links_forces_a_full_pass(tmp_path) -> None:
    from ansible_collections.strackt.move.plugins.module_utils.journal import Journal

    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("one")
    os.link(data / "a", data / "b")
    (data / "plain").write_text("x")
    journal = Journal(str(tmp_path / "journal"), [str(data)])
    plain, why = journal.parse(f"MODIFY {data / 'plain'}".encode() + b"\0")
    assert why is None and plain[str(data)]["copy"] == ["plain"]
    changes, why = journal.parse(f"MODIFY {data / 'a'}".encode() + b"\0")
    assert changes is None and "hard links" in why
