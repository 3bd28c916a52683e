"""The one env-name rule, the one timestamp helper, the one atomic writer."""

import datetime
import os
import stat

import pytest

from ansible_collections.strackt.move.plugins.module_utils import clock, fileio, names

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


# ---- names


@pytest.mark.parametrize("name", ["shop", "a", "my-env-2", "a" + "b" * 30])
def test_good_env_names(name):
    assert names.validate_env_name(name) == name


@pytest.mark.parametrize("name", ["", "Shop", "1shop", "-shop", "shop_1", "a" + "b" * 31, "shop.x", "../x",
                                  "shop\nx", None, 5])
def test_bad_env_names(name):
    with pytest.raises(names.EnvNameError, match=r"must match \^\[a-z\]"):
        names.validate_env_name(name)


def test_move_ids():
    move_id = names.new_move_id("shop", T0)
    assert move_id == "shop-20261125T120000Z"
    assert names.validate_move_id(move_id, "shop") == move_id
    assert names.check_name("move_id", move_id) == move_id
    with pytest.raises(names.EnvNameError, match="does not belong to env 'blog'"):
        names.validate_move_id(move_id, "blog")
    for bad in ("shop", "shop-2026", "../shop-20261125T120000Z", "Shop-20261125T120000Z", None):
        with pytest.raises(names.EnvNameError):
            names.validate_move_id(bad)
    with pytest.raises(names.EnvNameError):
        names.new_move_id("Shop", T0)


def test_the_env_definitions_use_the_same_rule():
    from ansible_collections.strackt.move.plugins.module_utils import environment

    with pytest.raises(environment.EnvironmentDefinitionError, match=r"must match \^\[a-z\]"):
        environment.find_environment("shop.x", {"shop.x": {}})
    assert environment.validate_env_name is names.validate_env_name


# ---- clock


def test_timestamps():
    assert clock.format_ts(T0) == "2026-11-25T12:00:00Z"
    assert clock.format_ts(T0.astimezone(datetime.timezone(datetime.timedelta(hours=2)))) == "2026-11-25T12:00:00Z"
    assert clock.parse_ts("2026-11-25T12:00:00Z") == T0
    assert clock.compact_ts(T0) == "20261125T120000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.format_ts(datetime.datetime(2026, 11, 25))
    for bad in ("yesterday", "2026-11-25 12:00:00", None):
        with pytest.raises(ValueError, match="YYYY-MM-DDTHH:MM:SSZ"):
            clock.parse_ts(bad)
    assert clock.utcnow().microsecond == 0 and clock.utcnow().tzinfo is not None


def test_nanoseconds():
    second = int(T0.timestamp())
    assert clock.ns_from_ts("2026-11-25T12:00:00Z") == second * 10**9
    # the last ns of a second stays in that second (no float rounding into the next)
    assert clock.ts_from_ns(second * 10**9 + 999_999_999) == "2026-11-25T12:00:00Z"
    assert clock.ts_from_ns(second * 10**9 + 10**9) == "2026-11-25T12:00:01Z"
    assert clock.seconds_since("2026-11-25T12:00:00Z", T0 + datetime.timedelta(seconds=90)) == 90.0
    assert clock.seconds_since("2026-11-25T12:00:00Z", T0 - datetime.timedelta(seconds=5)) == 0.0


# ---- fileio


def test_atomic_write_text_and_bytes_with_mode(tmp_path):
    path = str(tmp_path / "f")
    fileio.atomic_write(path, "héllo\n")
    assert open(path, encoding="utf-8").read() == "héllo\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fileio.atomic_write(path, b"\x00bytes", mode=0o644)
    assert open(path, "rb").read() == b"\x00bytes"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    fileio.atomic_write(path, "x", owner=(os.getuid(), os.getgid()))
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_leaves_the_old_file_and_no_temp_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "f")
    fileio.atomic_write(path, "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write(path, "new")
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_move_key_and_attachment_write_through_it():
    """One atomic writer: the modules that write files on the servers import it."""
    from ansible_collections.strackt.move.plugins.modules import attachment, move_key

    assert move_key.atomic_write is fileio.atomic_write
    assert attachment.atomic_write is fileio.atomic_write


@pytest.mark.parametrize("server", ["srv1", "srv1.example.net", "db_2", "2001:db8::10", "192.0.2.7"])
def test_server_names_of_an_inventory_are_taken(server):
    # an inventory host may be named by its address, IPv6 included
    assert names.validate_server_name(server) == server
    assert names.validate_evacuation_id(server + "-20261125T123456Z") == server + "-20261125T123456Z"


@pytest.mark.parametrize("server", ["", "../srv1", "srv1/x", ".hidden", "-x", "srv 1", ":x"])
def test_server_names_that_could_leave_the_state_directory_are_refused(server):
    with pytest.raises(names.EnvNameError):
        names.validate_server_name(server)


def test_the_longest_server_name_fits_every_file_name_it_becomes(tmp_path):
    """A server name goes into file names (<server>.json, history/<server>-<stamp>.json,
    evacuation-<server>.lock), which NAME_MAX (255) bounds: longer names are refused with the
    rule, not with an OSError from the file system."""
    from ansible_collections.strackt.move.plugins.module_utils import move_store as ms

    longest = "s" * names.SERVER_NAME_MAX
    store = ms.FileStore(str(tmp_path))
    store.save_evacuation(longest, "{}")
    store.request_evacuation_abort(longest, "{}")
    store.archive_evacuation(longest, longest + "-20261125T123456Z", "{}")
    assert store.list_evacuation_history(longest) == [longest + "-20261125T123456Z"]
    with store.evacuation_lock(longest, "evacuate"):
        pass
    with pytest.raises(names.EnvNameError, match="at most %d characters" % names.SERVER_NAME_MAX):
        names.validate_server_name(longest + "s")
    with pytest.raises(names.EnvNameError):
        names.validate_evacuation_id(longest + "s-20261125T123456Z")
