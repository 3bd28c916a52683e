"""The real ansible-runner backend on localhost: env vars, set_stats, failures, cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from controller_testlib import REPO, file_mode

from strackt_move import locks
from strackt_move.playbook_run import (CHAIN_FILE, RESULT_FILE, AnsibleRunnerBackend, PlayRequest, latest_result,
                                      marked_stage)
from strackt_move.progress import ProgressView
from strackt_move.settings import Settings

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: report
      ansible.builtin.set_stats:
        data:
          hkc: "{{ lookup('env', 'ANSIBLE_HOST_KEY_CHECKING') }}"
          collections: "{{ lookup('env', 'ANSIBLE_COLLECTIONS_PATH') }}"
          control_path_dir: "{{ lookup('ansible.builtin.config', 'control_path_dir', plugin_type='connection', plugin_name='ssh') }}"
          pipelining: "{{ lookup('env', 'ANSIBLE_PIPELINING') }}"
          env: "{{ env }}"
          state_dir: "{{ strackt_state_dir }}"
    - name: sleep
      ansible.builtin.command: sleep 30
      when: step == "slow"
    - name: fail
      ansible.builtin.fail: {msg: "no room on target"}
      when: step == "fail"
"""


@pytest.fixture
def backend(tmp_path):
    collection = tmp_path / "collections" / "ansible_collections" / "strackt" / "move"
    (collection / "playbooks").mkdir(parents=True)
    (collection / "playbooks" / "p.yml").write_text(PLAY)
    inventory = tmp_path / "inventory"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    settings = Settings(state_dir=tmp_path / "state", inventory=inventory, collection_dir=collection)
    return AnsibleRunnerBackend(settings)


def _request(step, name="verify"):
    return PlayRequest(env="shop", name=name, playbook="p.yml",
                       extravars={"env": "shop", "strackt_state_dir": "/x", "step": step})


def test_successful_run_env_and_artifacts(backend, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv's bin is not on PATH: the backend adds it
    events = []
    result = backend(_request("report"), events.append, lambda: False)
    assert result.ok, result
    data = result.artifact_data
    assert data["hkc"] == "True"
    assert data["pipelining"] == "True"  # ansible.cfg's settings, without an ansible.cfg
    assert data["collections"] == str(backend.settings.collections_path)
    # ssh masters live in a directory of this controller command: .cp-<pid>-<random> in the runs
    # dir, or (pytest's tmp paths are long; a unix socket path is not) a temporary one, noted in the run
    note = result.private_data_dir / "ssh-control-path-dir"
    if note.exists():
        assert data["control_path_dir"] == note.read_text().strip()
    else:
        assert Path(data["control_path_dir"]).parent == backend.settings.runs_dir
        assert Path(data["control_path_dir"]).name.startswith(f".cp-{os.getpid()}-")
    assert file_mode(Path(data["control_path_dir"])) == 0o700
    assert (data["env"], data["state_dir"]) == ("shop", "/x")
    assert any(e["event"] == "playbook_on_stats" for e in events)
    assert file_mode(result.private_data_dir) == 0o700
    assert file_mode(result.private_data_dir / RESULT_FILE) == 0o600
    saved = latest_result(backend.settings.runs_dir, "shop", "verify")
    assert saved["artifact_data"]["hkc"] == "True"
    assert latest_result(backend.settings.runs_dir, "shop", "sync") is None


def test_a_chain_runs_its_stages_in_one_playbook_each_after_its_marker(backend):
    """start's stages in one ansible-playbook: each stage's playbook after a marker play naming
    it, so progress is told per stage; the run counts as the last stage's for the gate."""
    playbooks = backend.settings.playbooks_dir
    (playbooks / "q.yml").write_text(PLAY.replace("name: report", "name: second report"))
    request = PlayRequest(env="shop", name="sync-to-verify", playbook="p.yml",
                          extravars={"env": "shop", "strackt_state_dir": "/x", "step": "report"},
                          chain=(("sync", "p.yml"), ("verify", "q.yml")))
    events: list[dict] = []
    result = backend(request, events.append, lambda: False)
    assert result.ok, result
    marks = [(marked_stage(e), i) for i, e in enumerate(events) if marked_stage(e)]
    assert [stage for stage, _ in marks] == ["sync", "verify"]
    tasks = [(i, e["event_data"]["task"]) for i, e in enumerate(events) if e["event"] == "playbook_on_task_start"]
    assert [t for i, t in tasks if marks[0][1] < i < marks[1][1]] == ["report", "sleep", "fail"]
    assert [t for i, t in tasks if i > marks[1][1]] == ["second report", "sleep", "fail"]
    assert file_mode(result.private_data_dir / CHAIN_FILE) == 0o600
    assert latest_result(backend.settings.runs_dir, "shop", "verify")["rc"] == 0
    assert latest_result(backend.settings.runs_dir, "shop", "sync") is None  # not its last stage
    # the progress view follows the markers, and keeps what each stage's set_stats published
    seen: list[str] = []
    view = ProgressView(stage="sync", emit=lambda line: None, on_stage=seen.append)
    for event in events:
        view(event)
    assert seen == ["sync", "verify"] and view.stage == "verify" and view.stats["env"] == "shop"


def test_a_chain_stops_at_the_first_stage_that_fails(backend):
    playbooks = backend.settings.playbooks_dir
    (playbooks / "q.yml").write_text(PLAY)
    request = PlayRequest(env="shop", name="deploy-to-verify", playbook="p.yml",
                          extravars={"env": "shop", "strackt_state_dir": "/x", "step": "fail"},
                          chain=(("deploy", "p.yml"), ("verify", "q.yml")))
    events: list[dict] = []
    result = backend(request, events.append, lambda: False)
    assert not result.ok and result.failures == ["localhost: fail: no room on target"]
    assert [marked_stage(e) for e in events if marked_stage(e)] == ["deploy"]


def test_failed_run_names_the_task(backend):
    result = backend(_request("fail"), lambda e: None, lambda: False)
    assert not result.ok and result.rc != 0 and result.status == "failed"
    assert result.failures == ["localhost: fail: no room on target"]
    # a failed verify is never used for the gate
    assert latest_result(backend.settings.runs_dir, "shop", "verify") is None


def test_cancel_stops_the_playbook(backend):
    flag = threading.Event()
    threading.Timer(1.0, flag.set).start()
    began = time.monotonic()
    result = backend(_request("slow", name="sync"), lambda e: None, flag.is_set)
    assert result.canceled
    assert time.monotonic() - began < 15


def test_a_long_run_dir_gets_a_short_control_path_dir(tmp_path):
    from strackt_move.playbook_run import MAX_CONTROL_PATH_DIR, close_control_paths, control_path_dir

    deep = tmp_path / ("x" * 90)
    deep.mkdir()
    directory, temporary = control_path_dir(deep, f".cp-{os.getpid()}-abcd")
    assert temporary and len(str(directory)) <= MAX_CONTROL_PATH_DIR
    # named after the controller (its pid), so a later one can tell whether it is gone
    assert directory.name.startswith(f"strackt.cp-{os.getpid()}-")
    assert file_mode(directory) == 0o700
    close_control_paths(directory)
    assert not directory.exists()


def test_the_runs_of_one_command_share_its_ssh_masters_until_it_closes(backend):
    """A stage reuses the master connections of the stage before (one handshake per server per
    command, not per stage); the command's end closes them and removes their directory."""
    first = backend(_request("report"), lambda e: None, lambda: False)
    second = backend(_request("report", name="sync"), lambda e: None, lambda: False)
    directory = Path(first.artifact_data["control_path_dir"])
    assert second.artifact_data["control_path_dir"] == str(directory) and directory.is_dir()
    backend.close()
    assert not directory.exists()
    third = backend(_request("report"), lambda e: None, lambda: False)  # a new one after close
    assert third.artifact_data["control_path_dir"] != str(directory)
    backend.close()


def test_a_dead_controllers_control_dir_is_swept_a_live_ones_kept(backend, tmp_path):
    from strackt_move.playbook_run import CONTROL_DIR_PREFIX

    runs = backend.settings.runs_dir
    runs.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = runs / f"{CONTROL_DIR_PREFIX}{dead.pid}-abcd"
    live = runs / f"{CONTROL_DIR_PREFIX}{os.getppid()}-abcd"
    env_runs = runs / "cp-1"  # an env's own runs (env names never start with a dot): never touched
    for d in (gone, live, env_runs):
        d.mkdir()
    backend(_request("report"), lambda e: None, lambda: False)
    assert not gone.exists() and live.is_dir() and env_runs.is_dir()
    backend.close()


def test_a_dead_controllers_temporary_control_dir_is_swept_too(backend, tmp_path, monkeypatch):
    """A runs dir too deep for a socket path puts the control dir in the temp dir; a SIGKILLed
    controller's is swept from there by the next command (a live one's and others' stay)."""
    import tempfile

    from strackt_move.playbook_run import TEMP_CONTROL_DIR_PREFIX

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = temp / f"{TEMP_CONTROL_DIR_PREFIX}{dead.pid}-abcd-x1y2"
    live = temp / f"{TEMP_CONTROL_DIR_PREFIX}{os.getppid()}-abcd-x1y2"
    other = temp / "strackt-something-else"
    for d in (gone, live, other):
        d.mkdir()
    backend(_request("report"), lambda e: None, lambda: False)
    assert not gone.exists() and live.is_dir() and other.is_dir()
    backend.close()


def test_missing_playbook(backend):
    result = backend(PlayRequest(env="shop", name="x", playbook="nope.yml", extravars={}), lambda e: None,
                     lambda: False)
    assert result.rc == 127 and "does not exist" in result.failures[0]


def _alive_with(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(proc.name))
    return pids


def test_playbook_orphaned_by_sigkill_is_ended_by_the_next_holder(backend):
    """runner spawns ansible-playbook with SIGHUP ignored: a SIGKILLed controller leaves it running.
    The dead holder's lock note names it; the next holder of the lock ends that process group."""
    marker = f"sleep 41.{os.getpid()}"
    (backend.settings.playbooks_dir / "slow.yml").write_text(
        f"- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: {marker}\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[str(REPO / 'controller'), str(REPO / 'collections')]!r}
        from pathlib import Path
        from strackt_move import locks
        from strackt_move.playbook_run import AnsibleRunnerBackend, PlayRequest
        from strackt_move.settings import Settings
        s = Settings(state_dir=Path({str(backend.settings.state_dir)!r}),
                     inventory=Path({str(backend.settings.inventory)!r}),
                     collection_dir=Path({str(backend.settings.collection_dir)!r}))
        lock = locks.controller_lock(s.locks_dir, "shop", "start shop --target srv2")
        lock.acquire()
        AnsibleRunnerBackend(s)(PlayRequest(env="shop", name="deploy", playbook="slow.yml", extravars={{}}),
                                locks.ChildTracker(lock, lambda e: None), lambda: False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    lock_path = backend.settings.locks_dir / "shop.controller.lock"
    try:
        deadline = time.monotonic() + 30
        while not _alive_with(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive_with(marker), "the playbook never started"
        note = locks.read_holder(lock_path)
        assert note.pid == proc.pid and note.child_pid and note.child_start
        assert os.getpgid(note.child_pid) == note.child_pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(1)
        assert _alive_with(marker), "expected runner's playbook to outlive its controller"
        said: list[str] = []
        successor = locks.controller_lock(backend.settings.locks_dir, "shop", "resume shop")
        successor.acquire(timeout=0)  # the kernel freed the flock with the dead process
        try:
            assert successor.previous.child_pid == note.child_pid
            assert locks.reap_orphan(successor.previous, said.append, grace_s=5)
        finally:
            successor.release()
        assert _alive_with(marker) == []
        assert "left its playbook running" in said[0]
        # nothing to reap from a holder that released cleanly
        again = locks.controller_lock(backend.settings.locks_dir, "shop", "resume shop")
        again.acquire(timeout=0)
        assert again.previous is None
        again.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _alive_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_reap_refuses_a_recycled_pid():
    stale = locks.Holder(pid=1, role="controller", command="x", since="x", child_pid=os.getpid(),
                         child_start="1")  # our own pid, but a different start time
    assert locks.reap_orphan(stale, lambda line: None) is False
