"""The attachment rewrite changes only strackt_environments.<env>.server."""

import pytest
import yaml

from ansible_collections.strackt.move.plugins.modules.attachment import rewrite, rewrite_database_server

TEXT = """# Environment definitions. strackt.move rewrites `server:` at switch-over and rollback.
strackt_environments:
  blog:
    server: srv1   # keep this comment
    root: /srv/blog
  shop:
    repo: git://10.77.0.1/shop.git
    server: srv1
    database:
      server: srv1
      name: shop
other: {server: srv9}
"""


def test_only_the_env_server_changes():
    new, old = rewrite(TEXT, "shop", "srv2")
    assert old == "srv1"
    before, after = yaml.safe_load(TEXT), yaml.safe_load(new)
    before["strackt_environments"]["shop"]["server"] = "srv2"
    assert after == before
    assert after["strackt_environments"]["shop"]["database"]["server"] == "srv1"
    assert [ln for ln in new.splitlines() if ln not in TEXT.splitlines()] == ["    server: srv2"]


def test_comment_kept_and_missing_server_added():
    new, _ = rewrite(TEXT, "blog", "srv3")
    assert "    server: srv3   # keep this comment" in new
    text = "strackt_environments:\n  shop:\n    root: /srv/shop\n"
    new, old = rewrite(text, "shop", "srv2")
    assert old is None and yaml.safe_load(new)["strackt_environments"]["shop"] == {"server": "srv2", "root": "/srv/shop"}


def test_unknown_env_or_file():
    with pytest.raises(ValueError, match="not in strackt_environments"):
        rewrite(TEXT, "wiki", "srv2")
    with pytest.raises(ValueError, match="no top-level"):
        rewrite("foo: 1\n", "shop", "srv2")


FLOW = """strackt_environments:
  shop:
    server: srv2
    database: {engine: postgresql, server: srv1, name: shop, user: shop, port: 5432,
               password_secret: SHOP_DB_PASSWORD}
    redis: {server: srv1, port: 6379}
  blog:
    server: srv1
    database: {server: srv1, name: blog}
"""


@pytest.mark.parametrize("text", [TEXT, FLOW], ids=["block", "flow"])
def test_the_database_server_changes_alone_block_or_flow(text):
    new = rewrite_database_server(text, "shop", "srv2")
    before, after = yaml.safe_load(text), yaml.safe_load(new)
    before["strackt_environments"]["shop"]["database"]["server"] = "srv2"
    assert after == before  # the env's own server, redis and the other env untouched


def test_an_env_without_a_database_is_refused():
    with pytest.raises(ValueError, match="env blog has no database"):
        rewrite_database_server(TEXT, "blog", "srv2")
