"""move_key side=target: the guard installed as a file, the key's line naming it (issue 12, item 13)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import script_text

COLLECTIONS = Path(__file__).resolve().parents[2] / "collections"
MODULE = COLLECTIONS / "ansible_collections/strackt/move/plugins/modules/move_key.py"
MOVE = "shop-20261130T021846Z"
PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0"


def run_module(tmp_path: Path, **args) -> dict:
    params = {"move_id": MOVE, "side": "target", "authorized_keys": str(tmp_path / "ssh" / "authorized_keys"),
              "guard_path": str(tmp_path / "lib" / "rsync-guard.py"), **args}
    spec = tmp_path / "args.json"
    spec.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    proc = subprocess.run([sys.executable, str(MODULE), str(spec)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    return json.loads(proc.stdout)


def present(tmp_path: Path, **extra) -> dict:
    return run_module(tmp_path, public_key=PUB + " comment", source_address="10.77.0.11", env_root="/srv/shop",
                      data_paths=["/srv/shop/data", "/srv/shop/media/up"], **extra)


def test_the_key_runs_the_installed_guard_with_root_move_and_data_paths(tmp_path):
    res = present(tmp_path)
    assert res["changed"] and not res.get("failed"), res
    guard = tmp_path / "lib" / "rsync-guard.py"
    line = (tmp_path / "ssh" / "authorized_keys").read_text()
    assert line == (f'from="10.77.0.11",restrict,command="{guard} /srv/shop {MOVE} data media/up" '
                    f"{PUB} strackt-move:{MOVE}\n")
    assert guard.read_text() == script_text()
    st = guard.stat()
    assert stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)
    # run as the key's command: a shell command is refused, naming why
    refused = subprocess.run([str(guard), "/srv/shop", MOVE, "data"], capture_output=True, text=True,
                             env=dict(os.environ, SSH_ORIGINAL_COMMAND="cat /etc/shadow"))
    assert refused.returncode == 1 and "only `rsync --server`" in refused.stderr
    assert present(tmp_path)["changed"] is False


def test_absent_removes_the_line_and_the_guard_once_no_line_names_it(tmp_path):
    present(tmp_path)
    other = run_module(tmp_path, move_id="blog-20261130T021846Z", public_key=PUB + "x", source_address="10.77.0.13",
                       env_root="/srv/blog", data_paths=["/srv/blog/data"])
    assert other["changed"], other
    guard = tmp_path / "lib" / "rsync-guard.py"
    assert run_module(tmp_path, state="absent")["changed"]
    assert guard.exists()  # the other move's key still runs it
    assert run_module(tmp_path, move_id="blog-20261130T021846Z", state="absent")["changed"]
    assert not guard.exists() and (tmp_path / "ssh" / "authorized_keys").read_text() == ""


@pytest.mark.parametrize("args, why", [
    ({"data_paths": ["/srv/other/data"]}, "not a plain path under the env root"),
    ({"data_paths": ["/srv/shop/da ta"]}, "not a plain path under the env root"),
    ({"data_paths": []}, "needs data_paths"),
    ({"env_root": "/srv"}, "cannot confine the move key"),
])
def test_bad_input_is_refused_and_changes_nothing(tmp_path, args, why):
    base = {"public_key": PUB, "source_address": "10.77.0.11", "env_root": "/srv/shop",
            "data_paths": ["/srv/shop/data"]}
    res = run_module(tmp_path, **{**base, **args})
    assert res.get("failed") and why in res["msg"], res
    assert not (tmp_path / "ssh").exists() and not (tmp_path / "lib").exists()


def test_a_key_change_waits_while_another_move_changes_the_file(tmp_path):
    # an evacuation prepares several moves to one target at once: each reads, changes and writes
    # authorized_keys, so without a lock one move's line can be lost to another's write
    import fcntl
    import time

    ssh = tmp_path / "ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text("")
    holder = os.open(ssh, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as the other move's module holds it while it writes
    params = {"move_id": MOVE, "side": "target", "authorized_keys": str(ssh / "authorized_keys"),
              "guard_path": str(tmp_path / "lib" / "rsync-guard.py"), "public_key": PUB,
              "source_address": "10.77.0.11", "env_root": "/srv/shop", "data_paths": ["/srv/shop/data"]}
    spec = tmp_path / "args.json"
    spec.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    proc = subprocess.Popen([sys.executable, str(MODULE), str(spec)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()
        assert (ssh / "authorized_keys").read_text() == ""
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    out, _ = proc.communicate(timeout=30)
    assert json.loads(out)["changed"] and MOVE in (ssh / "authorized_keys").read_text()
