"""The move key's forced command: what it lets through and what it refuses (issue 12, item 13).

The command lines are the ones rsync 3.2.7 sends for strackt.move's passes (recorded on the
testbed); the refusals are what a stolen key could try."""

from __future__ import annotations

import pytest

from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import (BARRIER_REMOTE_COMMAND, FORCED, RSYNC, GuardError,
                                                                               check_command)

ROOT = "/srv/shop"
MOVE = "shop-20261129T225730Z"


def run(command: str, data: tuple[str, ...] = ("data",)) -> list[str]:
    return check_command(command, ROOT, list(data), MOVE)


def test_a_full_push_runs_with_the_forced_options_after_the_clients():
    argv = run("rsync --server -lHogtpAXrSe.iLsfxCIvu --log-format=%i --delete --stats --numeric-ids . data/")
    assert argv[0] == RSYNC
    tail = argv[argv.index("--numeric-ids") + 1:]
    assert tail == [*FORCED, "--", ".", "data/"]


def test_the_forced_options_come_after_a_clients_D():
    argv = run("rsync --server -logDtprSe.iLsfxCIvu . data/")
    assert argv.index("--no-devices") > argv.index("-logDtprSe.iLsfxCIvu")
    assert "--chmod=Fug-s" in argv


def test_a_pull_keeps_sender_first():
    argv = run("rsync --server --sender -lHogtpAXrSe.iLsfxCIvu --numeric-ids . data/")
    assert argv[1:3] == ["--server", "--sender"]


def test_values_sent_as_the_next_argument_are_checked():
    argv = run("rsync --server -lHogtpAXrSIe.iLsfxCIvu --partial-dir .strackt-partial --timeout=30 "
               f"--backup-dir /srv/shop/.strackt-backup/{MOVE}/data . data/")
    assert "--partial-dir=.strackt-partial" in argv
    assert f"--backup-dir=/srv/shop/.strackt-backup/{MOVE}/data" in argv


@pytest.mark.parametrize("command, why", [
    ("", "no command"),
    ("id", "only `rsync --server`"),
    ("rsync --daemon . data/", "only `rsync --server`"),
    ("rsync --server -lr . app/", "outside the env's data paths"),
    ("rsync --server -lr . .", "outside the env's data paths"),
    ("rsync --server -lr . data/../app/", "contains '..'"),
    ("rsync --server -lr . /etc/", "not relative"),
    ("rsync --server -lr . datax/", "outside"),
    ("rsync --server -lrL . data/", "option -L"),
    ("rsync --server -lrk . data/", "option -k"),
    ("rsync --server --copy-devices -lr . data/", "--copy-devices"),
    ("rsync --server --write-devices -lr . data/", "--write-devices"),
    ("rsync --server --log-file=/etc/passwd -lr . data/", "--log-file"),
    ("rsync --server --temp-dir=/tmp -lr . data/", "--temp-dir"),
    ("rsync --server --backup-dir=/srv/shop/app -lr . data/", "--backup-dir must be"),
    (f"rsync --server --backup-dir=/srv/shop/.strackt-backup/{MOVE}/../../app -lr . data/", "--backup-dir must be"),
    ("rsync --server --backup-dir=/srv/shop/.strackt-backup/other-move -lr . data/", "--backup-dir must be"),
    ("rsync --server --partial-dir=../x -lr . data/", "--partial-dir"),
    ("rsync --server --partial-dir=/tmp/p -lr . data/", "--partial-dir"),
    ("rsync --server --files-from=/etc/shadow -lr . data/", "--files-from"),
    ("rsync --server -lr data/", "before '.'"),
    ("rsync --server -lr .", "no path"),
    ("rsync --server -lr --delete=x . data/", "takes no value"),
])
def test_refusals_say_why(command: str, why: str) -> None:
    with pytest.raises(GuardError, match=None) as exc:
        run(command)
    assert why in str(exc.value)


def test_several_data_paths():
    argv = run("rsync --server -lr . media/x/", data=("data", "media"))
    assert argv[-1] == "media/x/"


def test_an_installation_without_data_paths_or_with_a_bad_move_id_refuses():
    with pytest.raises(GuardError):
        check_command("rsync --server -lr . data/", ROOT, [], MOVE)
    with pytest.raises(GuardError):
        check_command("rsync --server -lr . data/", ROOT, ["data"], "../x")


# ---- real rsync through the installed guard (a fake ssh stands in for sshd's forced command) ----

import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from ansible_collections.strackt.move.plugins.module_utils import rsync as rs  # noqa: E402
from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import script_text  # noqa: E402

FAKE_SSH = r'''#!{python}
# what sshd does with a key's command=: the client's command goes to SSH_ORIGINAL_COMMAND
import os, sys
args = sys.argv[1:]
while args[0].startswith("-"):
    args = args[2:] if args[0] in ("-l", "-p", "-i", "-o") else args[1:]
os.environ["SSH_ORIGINAL_COMMAND"] = " ".join(args[1:])
os.execv({guard!r}, [{guard!r}, {root!r}, {move!r}, "data"])
'''


@pytest.fixture
def guarded(tmp_path):
    """(root on the 'target', the -e command that reaches it through the guard)."""
    root = tmp_path / "target"
    (root / "data").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "app" / "code.py").write_text("secret code\n")
    guard = tmp_path / "rsync-guard.py"
    guard.write_text(script_text(python=sys.executable))
    guard.chmod(0o755)
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable, guard=str(guard), root=str(root), move=MOVE))
    ssh.chmod(0o755)
    return root, str(ssh)


def rsync(*args, check=True):
    proc = subprocess.run(["rsync", *args], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"),
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"rsync {args} exited {proc.returncode}: {proc.stderr}")
    return proc


def asking_for_devices(ssh, src, dst):
    """rsync -D through the guard: its forced --no-devices --no-specials win; rsync then skips
    them, fails, or (3.5.0 on both ends) stalls in its protocol, so it gets a few seconds."""
    try:
        subprocess.run(["rsync", "-rlptgoD", "-e", ssh, src, dst], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        pass


def specials(top):
    """Every special file and every file with a setuid/setgid bit under top."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                found.append(name)
            elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o6000:
                found.append(name)
    return sorted(found)


def make_awkward(top):
    top.mkdir(parents=True, exist_ok=True)
    (top / "plain").write_text("x")
    os.mkfifo(top / "fifo")
    os.mknod(top / "null-dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    (top / "suid").write_text("#!/bin/sh\n")
    os.chmod(top / "suid", 0o4755)
    (top / "sgid").write_text("y")
    os.chmod(top / "sgid", 0o2750)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


@needs_root
def test_a_push_through_the_guard_carries_no_device_fifo_or_setuid_bit(tmp_path, guarded):
    root, ssh = guarded
    src = tmp_path / "src"
    make_awkward(src)
    assert specials(src) == ["fifo", "null-dev", "sgid", "suid"]
    argv = rs.build_argv(str(src), "target", "data", "k", "kh")
    flags = argv[1:argv.index("-e")]
    rsync(*flags, "-e", ssh, f"{src}/", "root@target:data/")
    assert sorted(os.listdir(root / "data")) == ["plain", "sgid", "suid"]
    assert specials(root / "data") == []
    assert stat.S_IMODE(os.stat(root / "data" / "suid").st_mode) == 0o755
    # a client that asks for devices (-D) gets none either: the guard's options come last (rsync
    # then skips them, or stops with a protocol error: either way nothing special arrives)
    asking_for_devices(ssh, f"{src}/", "root@target:data/")
    assert specials(root / "data") == []


@needs_root
def test_a_pull_through_the_guard_brings_none_back(tmp_path, guarded):
    root, ssh = guarded
    make_awkward(root / "data")
    back = tmp_path / "back"
    argv = rs.build_argv(str(back), "target", "data", "k", "kh", direction="pull")
    rsync(*argv[1:argv.index("-e")], "-e", ssh, "root@target:data/", f"{back}/")
    assert (back / "plain").read_text() == "x"
    assert specials(back) == []
    # a client asking for devices: skipped or a protocol error, never a device here
    asking_for_devices(ssh, "root@target:data/", f"{tmp_path}/back2/")
    assert specials(tmp_path / "back2") == [] if (tmp_path / "back2").exists() else True


def test_the_guard_refuses_paths_outside_the_data_backup_dirs_elsewhere_and_shells(tmp_path, guarded):
    root, ssh = guarded
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    outside = rsync("-rlpt", "-e", ssh, "root@target:app/", f"{tmp_path}/stolen/", check=False)
    assert outside.returncode != 0 and "outside the env's data paths" in outside.stderr
    assert not (tmp_path / "stolen" / "code.py").exists()
    elsewhere = rsync("-rlpt", "--backup", f"--backup-dir={root}/app", "-e", ssh, f"{src}/", "root@target:data/",
                      check=False)
    assert elsewhere.returncode != 0 and "--backup-dir must be" in elsewhere.stderr
    shell = subprocess.run([ssh, "target", "cat", "/etc/shadow"], capture_output=True, text=True)
    assert shell.returncode != 0 and "only `rsync --server`" in shell.stderr and "root:" not in shell.stdout


def test_the_installed_script_is_this_module_with_a_shebang_and_a_call_of_main():
    text = script_text(python="/usr/bin/python3")
    assert text.startswith("#!/usr/bin/python3 -IS\n")  # isolated, no site: stdlib only, a quicker start
    assert "def check_command(" in text and text.rstrip().endswith("sys.exit(main())")
    compile(text, "rsync-guard.py", "exec")


def test_our_client_never_asks_for_devices_and_strips_setuid_bits():
    for argv in (rs.build_argv("/srv/e/data", "h", "data", "k", "kh"),
                 rs.build_argv("/srv/e/data", "h", "data", "k", "kh", files_from="/tmp/l"),
                 rs.build_argv("/srv/e/data", "h", "data", "k", "kh", rules_from="/tmp/r", direction="pull")):
        shorts = [a for a in argv if a.startswith("-") and not a.startswith("--") and a != "-e"]
        assert shorts and all("D" not in a and "a" not in a for a in shorts), shorts
        assert "--chmod=Fug-s" in argv


# ---- the freeze's barrier, left by the guard once the final pass's last run succeeded -------

BARRIER = ".strackt-barrier-" + MOVE


def asking_for_the_barrier(ssh: str, src: str, dst: str, flags: str = "-rlpt", check: bool = False):
    """rsync through the guard with the remote command that asks for the barrier after the run."""
    return rsync(flags, f"--rsync-path={BARRIER_REMOTE_COMMAND}", "-e", ssh, src, dst, check=check)


def test_a_push_asking_for_the_barrier_leaves_it_in_the_first_data_path_after_rsync_succeeded(tmp_path, guarded):
    """The freeze's last rsync run asks for the barrier through its remote command
    (``--rsync-path``): the guard runs rsync, then writes the barrier - one ssh session and one
    rsync fewer inside the freeze than a pass of its own."""
    root, ssh = guarded
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    asking_for_the_barrier(ssh, f"{src}/", "root@target:data/", check=True)
    assert (root / "data" / "f").read_text() == "x"
    assert (root / "data" / BARRIER).read_text().split()[0] == MOVE
    assert sorted(os.listdir(root / "data")) == sorted(["f", BARRIER])  # no temp file left


def test_the_barrier_replaces_a_link_of_its_name_without_following_it(tmp_path, guarded):
    root, ssh = guarded
    outside = tmp_path / "outside"
    outside.write_text("not the guard's to write")
    os.symlink(outside, root / "data" / BARRIER)
    src = tmp_path / "src"
    src.mkdir()
    asking_for_the_barrier(ssh, f"{src}/", "root@target:data/", check=True)
    assert outside.read_text() == "not the guard's to write"
    assert not (root / "data" / BARRIER).is_symlink() and (root / "data" / BARRIER).read_text().startswith(MOVE)


def test_no_barrier_after_a_refused_or_failed_run_or_for_a_pull(tmp_path, guarded):
    root, ssh = guarded
    src = tmp_path / "src"
    src.mkdir()
    refused = asking_for_the_barrier(ssh, f"{src}/", "root@target:app/")
    assert refused.returncode != 0 and "outside the env's data paths" in refused.stderr
    failed = asking_for_the_barrier(ssh, f"{src}/missing/", "root@target:data/")
    assert failed.returncode != 0
    pull = asking_for_the_barrier(ssh, "root@target:data/", f"{tmp_path}/back/")
    assert pull.returncode != 0 and "only after a push" in pull.stderr
    assert not (root / "data" / BARRIER).exists()
    assert not os.path.exists(tmp_path / "back" / BARRIER)


def test_the_barrier_follows_a_run_whose_sender_saw_files_vanish(tmp_path, monkeypatch):
    """rsync exits 24 on both sides when a file vanished under the sender: the receiver got all
    there was, the client counts the pass as done, and so the barrier must be there."""
    from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import run_then_barrier

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert run_then_barrier(["/bin/sh", "-c", "exit 24"], "data", MOVE) == 24
    assert (tmp_path / "data" / BARRIER).read_text().startswith(MOVE)
    (tmp_path / "data" / BARRIER).unlink()
    assert run_then_barrier(["/bin/sh", "-c", "exit 23"], "data", MOVE) == 23
    assert not (tmp_path / "data" / BARRIER).exists()


def test_a_dry_run_asking_for_the_barrier_is_refused(tmp_path, guarded):
    root, ssh = guarded
    src = tmp_path / "src"
    src.mkdir()
    dry = asking_for_the_barrier(ssh, f"{src}/", "root@target:data/", flags="-rlptn")
    assert dry.returncode != 0 and "not after a dry run" in dry.stderr
    assert not (root / "data" / BARRIER).exists()
