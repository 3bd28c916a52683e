"""strackt.move.migrations: the env's own check and release commands, run as the env's processes
run (sh -c, in the app dir, with the env file's variables), and the env file they read
(module_utils/env_vars.py, the one writer and reader of that form)."""

from __future__ import annotations

import json
import os
import pwd

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.module_utils.env_vars import (
    EnvFileError,
    MissingSecret,
    parse_env_file,
    process_variables,
    render_env_file,
)
from ansible_collections.strackt.move.plugins.module_utils.environment import parse_environment
from ansible_collections.strackt.move.plugins.modules import migrations

USER = pwd.getpwuid(os.geteuid()).pw_name


def shop(**changes) -> dict:
    entry = {
        "server": "srv1", "repo": "git://h/shop.git", "branch": "main", "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test", "www.example.test"],
        "user": "shop", "uid": 1100, "memory_mb": 1, "disk_headroom_mb": 0, "stack": "django", "port": 8001,
        "processes": {"web": "gunicorn --bind 127.0.0.1:$PORT shopsite.wsgi:application"},
        "env": {"SHOP_MODE": "production"}, "secrets": ["SHOP_SECRET_KEY"],
        "database": {"server": "srv1", "name": "shop", "user": "shop", "password_secret": "SHOP_DB_PASSWORD"},
    }
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    "password",
    ["plain", 'with "quotes"', "back\\slash\\", "dollar $HOME ${X}", "tick `id`", "single ' quote",
     "  spaces  ", "#not a comment", "=equals=", "ünïcode", "p@ss/w:rd?%"],
)
def test_env_file_reads_back_unchanged(password):
    env = parse_environment("shop", shop())
    secrets = {"SHOP_SECRET_KEY": "k$y\\`\"", "SHOP_DB_PASSWORD": password}
    variables = process_variables(env, secrets, "srv2", {"srv1": "10.77.0.11"})
    values = parse_env_file(render_env_file(env, variables))
    assert values == variables
    assert values["SHOP_SECRET_KEY"] == "k$y\\`\""
    assert values["DATA_DIR"] == "/srv/shop/data"
    assert values["ALLOWED_HOSTS"] == "shop.example.test,www.example.test"
    assert values["SHOP_MODE"] == "production"
    assert values["DATABASE_URL"].startswith("postgresql://shop:") and values["DATABASE_URL"].endswith("@10.77.0.11:5432/shop")
    assert set(values) == {"DATA_DIR", "ALLOWED_HOSTS", "DATABASE_URL", "SHOP_MODE", "SHOP_SECRET_KEY"}


def test_database_and_redis_urls_loopback_on_their_own_server():
    entry = shop(database={"engine": "mariadb", "server": "srv1", "name": "shop", "user": "shop",
                           "password_secret": "SHOP_DB_PASSWORD"},
                 redis={"server": "srv3", "db": 2, "port": 6380})
    env = parse_environment("shop", entry)
    secrets = {"SHOP_SECRET_KEY": "k", "SHOP_DB_PASSWORD": "a b"}
    here = process_variables(env, secrets, "srv1", {"srv1": "10.0.0.1", "srv3": "10.0.0.3"})
    assert here["DATABASE_URL"] == "mysql://shop:a%20b@127.0.0.1:3306/shop"
    assert here["REDIS_URL"] == "redis://10.0.0.3:6380/2"


@pytest.mark.parametrize("secrets, fragment", [
    ({"SHOP_SECRET_KEY": "k"}, "strackt_env_secrets.shop.SHOP_DB_PASSWORD is not set"),
    ({"SHOP_SECRET_KEY": "", "SHOP_DB_PASSWORD": "p"}, "strackt_env_secrets.shop.SHOP_SECRET_KEY is not set"),
    ({"SHOP_SECRET_KEY": "a\nb", "SHOP_DB_PASSWORD": "p"}, "must be one line"),
])
def test_missing_or_multiline_secret_is_named(secrets, fragment):
    env = parse_environment("shop", shop())
    with pytest.raises(MissingSecret, match=fragment):
        process_variables(env, secrets, "srv1", {})


def test_env_file_forms():
    text = "# c\n; c\nA = bare value \nB='single $x \\n'\nC=\"d\\\"q\\\\ \\n\"\nexport_X=1\n"
    assert parse_env_file(text) == {"A": "bare value", "B": "single $x \\n", "C": 'd"q\\ \\n', "export_X": "1"}


@pytest.mark.parametrize("line", ["no equals sign", "1X=2", "A B=3"])
def test_env_file_bad_lines(line):
    with pytest.raises(EnvFileError, match="line 2 is not KEY=VALUE"):
        parse_env_file("OK=1\n" + line + "\n")


# ---- the module, running real commands --------------------------------------------------------

@pytest.fixture
def app(tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "REVISION").write_text("abc\n")
    env_file = tmp_path / "env"
    env_file.write_text('DATA_DIR="/srv/x/data"\nMARK="a \\$b"\n')
    return {"app_dir": str(app_dir), "env_file": str(env_file), "user": USER}


def run(capsys, **args):
    with patch_module_args(dict(env="shop", **args)):
        with pytest.raises(SystemExit):
            migrations.main()
    return json.loads(capsys.readouterr().out)


def test_exit_0_is_nothing_pending_and_the_command_sees_the_env_file(capsys, app):
    result = run(capsys, action="check", check_command='test "$DATA_DIR" = /srv/x/data && test "$MARK" = "a \\$b" '
                                                       '&& test "$PWD" = "%s"' % app["app_dir"], **app)
    assert result["pending"] is False and result["changed"] is False and result["migrations"] == []


def test_any_other_exit_is_pending_with_its_output(capsys, app):
    result = run(capsys, action="check", check_command="echo 'pending: 0002_note_tags'; echo oops >&2; exit 3", **app)
    assert result["pending"] is True and result["changed"] is False
    assert result["migrations"] == ["pending: 0002_note_tags", "oops"]
    assert "pending: 0002_note_tags" in result["output"]


def test_no_check_command_nothing_to_check(capsys, app):
    assert run(capsys, action="check", **app)["pending"] is False


def test_apply_runs_the_release_when_pending_then_checks_again(capsys, app, tmp_path):
    marker = tmp_path / "migrated"
    args = dict(check_command="test -e %s" % marker, release_command="touch %s" % marker, **app)
    result = run(capsys, action="apply", **args)
    assert result["changed"] and result["released"] and result["pending"] and marker.exists()
    again = run(capsys, action="apply", **args)
    assert not again["changed"] and not again["released"]


def test_apply_refuses_when_still_pending(capsys, app):
    result = run(capsys, action="apply", check_command="exit 1", release_command="true", **app)
    assert result["failed"] and "still pending after the release of env 'shop'" in result["msg"]


def test_failed_release_is_reported(capsys, app):
    result = run(capsys, action="apply", check_command="exit 1", release_command="echo boom >&2; exit 2", **app)
    assert result["failed"] and "release command of env 'shop' failed (exit 2)" in result["msg"] and "boom" in result["msg"]


def test_check_mode_does_not_release(capsys, app, tmp_path):
    marker = tmp_path / "migrated"
    result = run(capsys, action="apply", check_command="test -e %s" % marker, release_command="touch %s" % marker,
                 _ansible_check_mode=True, **app)
    assert result["changed"] and not result["released"] and not marker.exists()


def test_not_deployed_here(capsys, app):
    os.unlink(os.path.join(app["app_dir"], "REVISION"))
    result = run(capsys, action="check", check_command="true", **app)
    assert result["failed"] and "REVISION not found: env 'shop' is not deployed here" in result["msg"]


def test_apply_needs_a_release_command(capsys, app):
    result = run(capsys, action="apply", check_command="exit 1", **app)
    assert result["failed"] and "action=apply needs release_command" in result["msg"]
