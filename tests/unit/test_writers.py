"""Who could still write the data after the env stopped: real processes on this machine's /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.strackt.move.plugins.module_utils import writers

HOLD_OPEN = """
import mmap, os, sys, time
path, how = sys.argv[1], sys.argv[2]
if how == "write":
    f = open(path, "a")
elif how == "read":
    f = open(path, "r")
elif how == "mmap":
    # as a C program does it: map shared+writable, close the descriptor; only the mapping is left
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDWR)
    addr = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    os.close(fd)
print("ready", flush=True)
time.sleep(60)
"""


def hold(path: Path, how: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(path), how], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "f").write_bytes(b"x" * 4096)
    return d


@pytest.mark.parametrize("how, expected", [("write", "open for writing"), ("mmap", "mapped writable")])
def test_a_process_that_could_write_is_found(data: Path, how: str, expected: str) -> None:
    proc = hold(data / "f", how)
    try:
        found = [w for w in writers.find([str(data)]) if w.pid == proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert [(w.how, w.path) for w in found] == [(expected, str(data / "f"))]
    assert f"pid {proc.pid}" in found[0].describe()


def test_a_reader_and_files_elsewhere_are_not_writers(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.write_text("y")
    reader = hold(data / "f", "read")
    writer_elsewhere = hold(other, "write")
    try:
        found = [w for w in writers.find([str(data)]) if w.pid in (reader.pid, writer_elsewhere.pid)]
    finally:
        for p in (reader, writer_elsewhere):
            p.kill()
            p.wait()
    assert found == []


def test_a_prefix_is_not_a_parent(data: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "data2"
    sibling.mkdir()
    (sibling / "g").write_text("z")
    proc = hold(sibling / "g", "write")
    try:
        assert [w for w in writers.find([str(data)]) if w.pid == proc.pid] == []
    finally:
        proc.kill()
        proc.wait()


def test_processes_of_the_env_user_are_found_by_uid(data: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        mine = [w for w in writers.find([str(data)], uid=os.geteuid()) if w.pid == proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert [w.how for w in mine] == ["runs as the env's user"]


def test_the_caller_itself_is_skipped(data: Path) -> None:
    with open(data / "f", "a"):
        assert [w for w in writers.find([str(data)]) if w.pid == os.getpid()] == []


def test_a_killed_process_not_yet_reaped_is_no_writer(data: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        assert [w.pid for w in writers.find([str(data)], uid=os.geteuid()) if w.pid == proc.pid] == [proc.pid]
        proc.kill()
        deadline = time.monotonic() + 5  # a zombie until wait() below reaps it
        while "State:\tZ" not in Path(f"/proc/{proc.pid}/status").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "State:\tZ" in Path(f"/proc/{proc.pid}/status").read_text()
        assert [w for w in writers.find([str(data)], uid=os.geteuid()) if w.pid == proc.pid] == []
    finally:
        proc.kill()
        proc.wait()
