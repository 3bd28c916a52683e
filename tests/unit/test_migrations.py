"""Env file reading and Django output parsing of strackt.move.migrations, checked against
the env file the provision role writes."""

from __future__ import annotations

import os

import jinja2
import pytest

from ansible_collections.strackt.move.plugins.modules.migrations import (
    EnvFileError,
    parse_env_file,
    parse_showmigrations_plan,
)

TEMPLATE_DIR = os.path.join(
    os.path.dirname(__file__), "..", "..", "collections", "ansible_collections", "strackt", "move",
    "roles", "provision", "templates",
)


def render_env_file(password: str, secret_key: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), keep_trailing_newline=True)
    return env.get_template("env.j2").render(
        ansible_managed="Ansible managed",
        provision_env="shop",
        provision_db_host="10.77.0.11",
        strackt_env_secrets={"shop": {"database_password": password, "django_secret_key": secret_key}},
        provision_def={
            "name": "shop", "env_var_prefix": "SHOP_", "unit_name": "strackt-env-shop.service", "data_dir": "/srv/shop/data",
            "domains": ["shop.example.test", "www.example.test"],
            "database": {"name": "shop", "user": "shop", "port": 5432},
        },
    )


@pytest.mark.parametrize(
    "password",
    ["plain", 'with "quotes"', "back\\slash\\", "dollar $HOME ${X}", "tick `id`", "single ' quote",
     "  spaces  ", "#not a comment", "=equals=", "ünïcode"],
)
def test_env_file_written_by_provision_reads_back_unchanged(password):
    text = render_env_file(password, "k$y\\`\"")
    values = parse_env_file(text)
    assert values["SHOP_DB_PASSWORD"] == password
    assert values["SHOP_SECRET_KEY"] == "k$y\\`\""
    assert values["SHOP_DB_HOST"] == "10.77.0.11"
    assert values["SHOP_DB_PORT"] == "5432"
    assert values["SHOP_DATA_DIR"] == "/srv/shop/data"
    assert values["SHOP_ALLOWED_HOSTS"] == "shop.example.test,www.example.test,127.0.0.1,localhost"
    assert sorted(values) == sorted(
        "SHOP_" + k for k in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DATA_DIR",
                              "SECRET_KEY", "ALLOWED_HOSTS")
    )


def test_env_file_forms():
    text = "# comment\n; also\n\nA=bare value  \nB='single $x \\n'\nC=\"d\\\"q\\\\ \\n\"\nexport_X=1\n"
    assert parse_env_file(text) == {"A": "bare value", "B": "single $x \\n", "C": 'd"q\\ \\n', "export_X": "1"}


@pytest.mark.parametrize("line", ["NOEQUALS", "1BAD=x", "BAD KEY=x", "=x"])
def test_env_file_bad_lines(line):
    with pytest.raises(EnvFileError, match="line 2 is not KEY=VALUE"):
        parse_env_file("OK=1\n" + line + "\n")


def test_showmigrations_plan():
    out = "[X]  shop.0001_initial\n[ ]  shop.0002_order_customer\n[ ]  shop.0003_more (applied at x)\n"
    assert parse_showmigrations_plan(out) == ["shop.0002_order_customer", "shop.0003_more"]
    assert parse_showmigrations_plan("[X]  shop.0001_initial\n") == []
    assert parse_showmigrations_plan("(no migrations)\n") == []
