"""strackt.move.env_info as Ansible runs it: arguments in, JSON out."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.modules import env_info
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import run_work



def shop() -> dict:
    return {
        "server": "srv1", "repo": "git://10.77.0.1/shop.git", "branch": "main", "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test"], "port": 8001,
        "user": "shop", "uid": 1100, "memory_mb": 256, "disk_headroom_mb": 64, "stack": "django",
        "processes": {"web": "gunicorn --bind 127.0.0.1:$PORT shopsite.wsgi:application"},
        "secrets": ["SHOP_SECRET_KEY"],
        "database": {"server": "srv1", "name": "shop", "user": "shop", "password_secret": "SHOP_DB_PASSWORD"},
    }


@pytest.fixture(params=["module", "action plugin"])
def run(request, capsys):
    """Run env_info as a module (a payload on a host) and as its action plugin (in the worker):
    both must give the same result for the same arguments."""

    def call(**args):
        if request.param == "module":
            with patch_module_args(args):
                with pytest.raises(SystemExit):
                    env_info.main()
            return json.loads(capsys.readouterr().out)
        return json.loads(json.dumps(run_work("env_info", env_info.argument_spec(), env_info.work, args, False)))

    return call


def test_returns_normalised_definition(run):
    entry = shop()
    entry["root"] = "/srv/shop/"
    result = run(env="shop", environments={"shop": entry}, servers=["srv1", "srv2"], require_attached=True)
    assert result["changed"] is False
    assert result["environment"]["root"] == "/srv/shop"
    assert result["environment"]["target_unit"] == "strackt-env-shop.target"
    assert result["environment"]["server"] == "srv1"


def test_unknown_env(run):
    result = run(env="blog", environments={"shop": shop()})
    assert result["failed"] and "unknown env 'blog'" in result["msg"]


def test_invalid_definition_lists_problems(run):
    entry = shop()
    entry["uid"] = 0
    result = run(env="shop", environments={"shop": entry}, servers=["srv2"])
    assert result["failed"]
    assert "strackt_environments.shop.uid: must be between 1000 and 59999, got 0" in result["problems"]
    assert "strackt_environments.shop.server: 'srv1' is not a host in the inventory's servers group" in result["problems"]


def test_require_attached(run):
    entry = shop()
    entry["server"] = None
    assert run(env="shop", environments={"shop": entry})["environment"]["attached"] is False
    result = run(env="shop", environments={"shop": entry}, require_attached=True)
    assert result["failed"] and "is not attached to a server" in result["msg"]


def test_secret_names_are_checked_when_given(run):
    result = run(env="shop", environments={"shop": shop()}, secret_names=["SHOP_SECRET_KEY"])
    assert result["failed"]
    assert result["problems"] == [
        "strackt_environments.shop.database.password_secret: secret 'SHOP_DB_PASSWORD' is not defined: "
        "add it to strackt_env_secrets.shop (group_vars/all/secrets.yml)"]
    ok = run(env="shop", environments={"shop": shop()}, secret_names=["SHOP_SECRET_KEY", "SHOP_DB_PASSWORD"])
    assert ok["environment"]["secrets"] == ["SHOP_SECRET_KEY"]
