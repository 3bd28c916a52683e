"""strackt.move.env_info as Ansible runs it: arguments in, JSON out."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.modules import env_info



def shop() -> dict:
    return {
        "server": "srv1", "repo": "git://10.77.0.1/shop.git", "branch": "main", "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test"], "app_port": 8001,
        "user": "shop", "uid": 1100, "memory_mb": 256, "disk_headroom_mb": 64, "framework": "django", "wsgi_app": "shopsite.wsgi:application",
        "database": {"server": "srv1", "name": "shop", "user": "shop", "port": 5432},
    }


def run(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            env_info.main()
    return json.loads(capsys.readouterr().out)


def test_returns_normalised_definition(capsys):
    entry = shop()
    entry["root"] = "/srv/shop/"
    result = run(capsys, env="shop", environments={"shop": entry}, servers=["srv1", "srv2"], require_attached=True)
    assert result["changed"] is False
    assert result["environment"]["root"] == "/srv/shop"
    assert result["environment"]["unit_name"] == "strackt-env-shop.service"
    assert result["environment"]["server"] == "srv1"


def test_unknown_env(capsys):
    result = run(capsys, env="blog", environments={"shop": shop()})
    assert result["failed"] and "unknown env 'blog'" in result["msg"]


def test_invalid_definition_lists_problems(capsys):
    entry = shop()
    entry["uid"] = 0
    result = run(capsys, env="shop", environments={"shop": entry}, servers=["srv2"])
    assert result["failed"]
    assert "strackt_environments.shop.uid: must be between 1000 and 59999, got 0" in result["problems"]
    assert "strackt_environments.shop.server: 'srv1' is not a host in the inventory's servers group" in result["problems"]


def test_require_attached(capsys):
    entry = shop()
    entry["server"] = None
    assert run(capsys, env="shop", environments={"shop": entry})["environment"]["attached"] is False
    result = run(capsys, env="shop", environments={"shop": entry}, require_attached=True)
    assert result["failed"] and "is not attached to a server" in result["msg"]
