"""The follower's loop, its copy of the module_utils, and the journal's ``pending`` it polls
(the unit itself runs on the testbed: tests/integration/test_follower.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.strackt.move.plugins.module_utils import follower as fl
from ansible_collections.strackt.move.plugins.module_utils import journal as jr


def settings(tmp_path: Path, **overrides: Any) -> fl.FollowSettings:
    values = dict(move_id="shop-1", move_dir=str(tmp_path / "keys" / "shop-1"), env_root="/srv/shop",
                  data_paths=("/srv/shop/data",), target_address="10.0.0.2", key_path="/k/id",
                  known_hosts_path="/k/kh", interval_s=0.001)
    values.update(overrides)
    (tmp_path / "keys" / "shop-1" / "follow").mkdir(parents=True, exist_ok=True)
    return fl.FollowSettings(**values)


class Journal:
    """Says ``pending`` as scripted, then False."""

    def __init__(self, pending: list[bool]) -> None:
        self.answers = list(pending)

    def pending(self) -> bool:
        return self.answers.pop(0) if self.answers else False


def loop(tmp_path: Path, journal: Journal, passes: list[Any], stop_after: int, **overrides: Any) -> fl.Loop:
    """A loop whose passes return the figures in ``passes`` in turn (an exception there is
    raised; a default pass once they run out), told to stop after ``stop_after`` passes."""
    stop = threading.Event()

    def run_pass(*args: Any, **kwargs: Any) -> dict[str, Any]:
        outcome = passes.pop(0) if passes else {"files_changed": 1, "mode": "incremental"}
        done.append(kwargs)
        if len(done) >= stop_after:
            stop.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    done: list[dict[str, Any]] = []
    made = fl.Loop(settings(tmp_path, **overrides), stop=stop, journal=journal, run_pass=run_pass)  # type: ignore[arg-type]
    made.done = done  # type: ignore[attr-defined]
    return made


@pytest.fixture(autouse=True)
def no_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fl.rs, "open_master", lambda *a, **k: True)
    monkeypatch.setattr(fl.rs, "close_master", lambda *a, **k: None)


def test_a_pass_runs_first_then_only_when_the_journal_recorded_something(tmp_path: Path) -> None:
    lp = loop(tmp_path, Journal([False, False, True]), [], stop_after=2)
    assert lp.run() == "stopped"
    assert len(lp.done) == 2  # type: ignore[attr-defined]
    assert all(call["control_path"] == lp.settings.control_path for call in lp.done)  # type: ignore[attr-defined]
    status = json.loads(Path(lp.settings.status_path).read_text())
    assert status["passes"] == 2 and status["files_copied"] == 2 and status["state"] == "stopped"
    assert oct(Path(lp.settings.status_path).stat().st_mode & 0o777) == "0o600"


def test_it_ends_by_itself_once_the_switch_over_released_the_traffic(tmp_path: Path) -> None:
    lp = loop(tmp_path, Journal([True] * 100), [], stop_after=10 ** 6)
    threading.Timer(0.05, lambda: Path(lp.settings.released_marker).write_text("{}")).start()
    assert lp.run() == "released"
    assert json.loads(Path(lp.settings.status_path).read_text())["state"] == "released"


def test_a_failed_pass_is_counted_and_the_next_one_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fl, "BACKOFF_MAX_S", 0.001)
    lp = loop(tmp_path, Journal([True, True]), [OSError("rsync exited 12")], stop_after=2)
    lp.run()
    status = json.loads(Path(lp.settings.status_path).read_text())
    assert status["failures"] == 1 and status["failing"] == 0 and status["passes"] == 1
    assert "rsync exited 12" in status["last_error"]


def test_start_is_refused_after_the_release(tmp_path: Path) -> None:
    s = settings(tmp_path)
    Path(s.released_marker).write_text("{}")
    with pytest.raises(fl.FollowError, match="released the traffic|handed the traffic"):
        fl.Follower(s, systemd=None).start()  # type: ignore[arg-type]


def test_the_installed_copy_runs_on_the_stdlib_alone(tmp_path: Path) -> None:
    s = settings(tmp_path)
    fl.install(s)
    code = ("import sys; sys.path.insert(0, %r); from %s import follower; "
            "print(follower.FollowSettings.from_json(open(%r).read()).move_id)" % (s.lib_dir, fl.PACKAGE, s.settings_path))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "shop-1"
    assert fl.command(s)[-1] == s.settings_path


def records(*lines: str) -> bytes:
    return b"".join(line.encode() + b"\0" for line in lines)


def test_pending_sees_the_app_s_records_after_the_committed_offset_not_the_barriers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    journal = jr.Journal(str(tmp_path / "journal"), [str(data)])
    Path(journal.dir).mkdir()
    before = records(f"CLOSE_WRITE,CLOSE {data}/old")
    Path(journal.events).write_bytes(before)
    assert journal.pending()  # no pass committed yet
    journal._save({"invocation": "i", "offset": len(before)})
    assert not journal.pending()
    with open(journal.events, "ab") as f:
        f.write(records(f"CREATE {data}/{jr.BARRIER_PREFIX}1-2", f"DELETE {data}/{jr.BARRIER_PREFIX}1-2"))
    assert not journal.pending()
    with open(journal.events, "ab") as f:
        f.write(records(f"CLOSE_WRITE,CLOSE {data}/new"))
    assert journal.pending()


def test_the_pass_lock_lets_one_pass_at_a_time(tmp_path: Path) -> None:
    journal = jr.Journal(str(tmp_path / "journal"), [str(tmp_path)])
    order: list[str] = []
    with journal.pass_lock():
        def second() -> None:
            with journal.pass_lock():
                order.append("second")

        other = threading.Thread(target=second)
        other.start()
        other.join(0.2)
        order.append("first done")
    other.join(5)
    assert order == ["first done", "second"]


def test_after_a_full_pass_the_next_waits_for_the_heartbeat(tmp_path: Path) -> None:
    full = {"files_changed": 500, "mode": "full"}
    lp = loop(tmp_path, Journal([True] * 10 ** 6), [full, full, full], stop_after=10 ** 6)
    threading.Timer(0.3, lp.stop.set).start()
    lp.run()
    assert len(lp.done) == 1  # type: ignore[attr-defined]  # no full pass right after a full pass


def test_a_source_writing_all_the_time_costs_a_pass_per_spacing_not_one_per_poll(tmp_path: Path) -> None:
    lp = loop(tmp_path, Journal([True] * 10 ** 6), [], stop_after=10 ** 6)
    threading.Timer(1.2, lp.stop.set).start()
    lp.run()
    # the first at once, then one each MIN_PASS_SPACING_S at most (every 1 ms poll found changes)
    assert 2 <= len(lp.done) <= 1 + int(1.2 / fl.MIN_PASS_SPACING_S)  # type: ignore[attr-defined]


def test_no_journaled_pass_pushes_once_the_traffic_was_handed_over(tmp_path: Path) -> None:
    move = tmp_path / "shop-1"
    journal = jr.Journal(str(move / "journal"), [str(tmp_path)])
    (move / "released.json").parent.mkdir(parents=True, exist_ok=True)
    (move / "released.json").write_text("{}")
    with pytest.raises(fl.rs.RsyncError, match="handed the traffic to the target already"):
        fl.rs.journaled_pass(journal, [str(tmp_path)], str(tmp_path), "10.0.0.2", "/k/id", "/k/kh")


def test_start_is_refused_while_a_freeze_of_the_move_runs(tmp_path: Path) -> None:
    from ansible_collections.strackt.move.plugins.module_utils.holder_lock import flock_exclusive

    s = settings(tmp_path)
    held = flock_exclusive(s.freeze_lock, timeout=0)
    try:
        with pytest.raises(fl.FollowError, match="switch-over of shop-1 is running"):
            fl.Follower(s, systemd=None).start()  # type: ignore[arg-type]
    finally:
        assert held is not None
        os.close(held)


def test_a_stale_master_socket_is_removed_before_a_new_master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(tmp_path)
    Path(s.control_path).write_text("")  # left by a master that ended
    opened: list[bool] = []
    monkeypatch.setattr(fl.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 255))
    monkeypatch.setattr(fl.rs, "open_master", lambda *a, **k: opened.append(Path(s.control_path).exists()) or True)
    assert fl.ensure_master(s) == s.control_path
    assert opened == [False]  # the socket was gone when the new master opened


def test_a_cgroup_s_processes_outside_the_pid_namespace_are_never_signalled(tmp_path: Path) -> None:
    """nspawn's unified hierarchy lists processes of other namespaces as 0; kill(0) would signal
    the caller's own process group (seen: the freeze's ssh session ended with it)."""
    from ansible_collections.strackt.move.plugins.module_utils.systemd import cgroup_pids

    group = tmp_path / "unified" / "system.slice" / "strackt-env-shop-web.service"
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("696\n699\n0\n0\n")
    roots = (str(tmp_path / "v2"), str(tmp_path / "unified"))
    assert cgroup_pids("/system.slice/strackt-env-shop-web.service", roots) == [696, 699]
    assert cgroup_pids("/system.slice/gone.service", roots) == []
