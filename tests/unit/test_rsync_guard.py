"""The move key's forced command: what it lets through and what it refuses (issue 12, item 13).

The command lines are the ones rsync 3.2.7 sends for strackt.move's passes (recorded on the
testbed); the refusals are what a stolen key could try."""

from __future__ import annotations

import pytest

from ansible_collections.strackt.move.plugins.module_utils.rsync_guard import FORCED, RSYNC, GuardError, check_command

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
