"""Parsing and validation of strackt_environments entries (plugins/module_utils/environment.py)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.strackt.move.plugins.module_utils.environment import (
    EnvironmentDefinitionError,
    find_environment,
    parse_environment,
)

SERVERS = {"srv1", "srv2", "srv3"}


def shop() -> dict:
    """The definition from docs/architecture.md."""
    return {
        "server": "srv1",
        "repo": "git://10.77.0.1/shop.git",
        "branch": "main",
        "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"],
        "domains": ["shop.example.test"],
        "app_port": 8001,
        "user": "shop",
        "uid": 1100,
        "memory_mb": 256,
        "disk_headroom_mb": 64,
        "framework": "django",
        "wsgi_app": "shopsite.wsgi:application",
        "database": {"server": "srv1", "name": "shop", "user": "shop", "port": 5432},
    }


def problems_of(entry: dict, name: str = "shop", servers=SERVERS) -> list[str]:
    with pytest.raises(EnvironmentDefinitionError) as info:
        parse_environment(name, entry, servers)
    return info.value.problems


def with_(key: str, value) -> dict:
    entry = shop()
    entry[key] = value
    return entry


def test_doc_example_parses_with_derived_names():
    env = parse_environment("shop", shop(), SERVERS)
    assert env.server == "srv1" and env.attached
    assert env.data_paths == ("/srv/shop/data",)
    assert env.database.port == 5432
    d = env.to_dict()
    assert d["app_dir"] == "/srv/shop/app"
    assert d["revision_file"] == "/srv/shop/app/REVISION"
    assert d["unit_name"] == "strackt-env-shop.service"
    assert d["unit_file"] == "/etc/systemd/system/strackt-env-shop.service"
    assert d["env_file"] == "/etc/strackt/envs/shop.env"
    assert d["site_file"] == "/etc/caddy/sites/shop.caddy"
    assert d["data_dir"] == "/srv/shop/data"
    assert d["data_paths"] == ["/srv/shop/data"] and d["domains"] == ["shop.example.test"]


# The env-name rule itself: names.py, tests/unit/test_names_clock_fileio.py


def test_paths_are_normalised():
    entry = with_("root", "/srv//shop/")
    entry["data_paths"] = ["/srv/shop/data/", "/srv/shop/./media"]
    env = parse_environment("shop", entry)
    assert env.root == "/srv/shop"
    assert env.data_paths == ("/srv/shop/data", "/srv/shop/media")


@pytest.mark.parametrize(
    "root, fragment",
    [
        ("srv/shop", "not absolute"),
        ("/srv/../etc/shop", "contains '..'"),
        ("/srv/my shop", "characters that are not allowed"),
        ("/srv/shop'x", "characters that are not allowed"),
        ('/srv/shop"', "characters that are not allowed"),
        ("/srv/$HOME", "characters that are not allowed"),
        ("/srv/shop\n", "characters that are not allowed"),
        ("/", "system directory"),
        ("/srv", "system directory"),
        ("/etc/", "system directory"),
        ("", "must be an absolute path"),
        (None, "must be an absolute path"),
    ],
)
def test_bad_root(root, fragment):
    entry = with_("root", root)
    entry["data_paths"] = ["/srv/shop/data"]
    found = problems_of(entry)
    assert any(p.startswith("strackt_environments.shop.root: ") and fragment in p for p in found), found


@pytest.mark.parametrize(
    "data_paths, fragment",
    [
        ([], "non-empty list"),
        ("/srv/shop/data", "non-empty list"),
        (["/srv/other/data"], "is not under root"),
        (["/srv/shop"], "is not under root"),
        (["/srv/shopping/data"], "is not under root"),
        (["/srv/shop/app/uploads"], "inside /srv/shop/app"),
        (["/srv/shop/data", "/srv/shop/data/"], "listed twice"),
        (["/srv/shop/data", "/srv/shop/data/uploads"], "list only the outer one"),
        (["data"], "not absolute"),
    ],
)
def test_bad_data_paths(data_paths, fragment):
    found = problems_of(with_("data_paths", data_paths))
    assert any("strackt_environments.shop.data_paths" in p and fragment in p for p in found), found


def test_domains_are_lowercased_and_trailing_dot_dropped():
    env = parse_environment("shop", with_("domains", ["Shop.Example.Test.", "www.shop.example.test"]))
    assert env.domains == ("shop.example.test", "www.shop.example.test")


@pytest.mark.parametrize(
    "domain",
    ["localhost", "shop..example.test", "-shop.example.test", "shop-.example.test", "shop_1.example.test",
     "sh op.example.test", "a" * 64 + ".example.test", "10.77.0.11", "", 42],
)
def test_bad_domains(domain):
    found = problems_of(with_("domains", [domain]))
    assert any(p.startswith("strackt_environments.shop.domains[0]: ") for p in found), found


def test_duplicate_domain():
    found = problems_of(with_("domains", ["shop.example.test", "SHOP.example.test"]))
    assert found == ["strackt_environments.shop.domains[1]: 'shop.example.test' is listed twice: remove the duplicate"]


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("app_port", 80, "between 1024 and 65535"),
        ("app_port", 70000, "between 1024 and 65535"),
        ("app_port", True, "whole number"),
        ("app_port", 8001.5, "whole number"),
        ("app_port", "80x", "whole number"),
        ("uid", 0, "between 1000 and 59999"),
        ("uid", -5, "between 1000 and 59999"),
        ("memory_mb", 0, "between 1 and"),
        ("disk_headroom_mb", -1, "between 0 and"),
        ("user", "root", "must not be root"),
        ("user", "Shop", "POSIX user name"),
        ("framework", "rails", "not supported"),
        ("wsgi_app", "mysite.wsgi", "module:callable"),
        ("wsgi_app", "mysite.wsgi:app; rm -rf /", "module:callable"),
        ("env_var_prefix", "my-app_", "upper-case letters"),
        ("env_var_prefix", "", "upper-case letters"),
        ("branch", "-main", "not a valid branch"),
        ("branch", "feature/x.lock", "not a valid branch"),
        ("branch", "a..b", "not a valid branch"),
        ("repo", "git://host/repo.git; rm -rf /", "without whitespace"),
        ("repo", "ftp://host/repo.git", "not a git URL"),
        ("repo", "git://host/$repo.git", "remove them"),
        ("server", "srv9", "not a host in the inventory"),
        ("server", "srv 1", "inventory host name"),
    ],
)
def test_field_problems_name_the_field(key, value, fragment):
    found = problems_of(with_(key, value))
    assert any(p.startswith("strackt_environments.shop.%s: " % key) and fragment in p for p in found), found


def test_the_django_framework_needs_its_wsgi_app():
    entry = shop()
    del entry["wsgi_app"]
    found = problems_of(entry)
    assert any(p.startswith("strackt_environments.shop.wsgi_app: is missing") for p in found), found


def test_the_env_var_prefix_defaults_to_the_env_name():
    assert parse_environment("my-app", shop()).env_var_prefix == "MY_APP_"
    assert parse_environment("shop", with_("env_var_prefix", "STORE_")).env_var_prefix == "STORE_"
    assert parse_environment("shop", shop()).to_dict()["wsgi_app"] == "shopsite.wsgi:application"


def test_string_numbers_from_extra_vars_are_accepted():
    env = parse_environment("shop", with_("app_port", "8002"))
    assert env.app_port == 8002


@pytest.mark.parametrize("repo", ["https://git.example.com/shop.git", "ssh://git@host/shop.git",
                                  "git@github.com:org/shop.git", "file:///srv/git/shop.git"])
def test_good_repos(repo):
    assert parse_environment("shop", with_("repo", repo)).repo == repo


def test_not_attached_is_valid_but_not_attached():
    for server in (None, ""):
        env = parse_environment("shop", with_("server", server))
        assert env.server is None and not env.attached
    entry = shop()
    del entry["server"]
    assert not parse_environment("shop", entry).attached


def test_unknown_and_missing_keys():
    entry = shop()
    entry["data_path"] = entry.pop("data_paths")
    found = problems_of(entry)
    assert any(p.startswith("strackt_environments.shop.data_path: unknown key") for p in found)
    assert "strackt_environments.shop.data_paths: is missing" in found


def test_database_problems():
    found = problems_of(with_("database", {"server": "db9", "name": "shop-db", "user": "shop", "port": 0, "pass": "x"}))
    joined = "\n".join(found)
    assert "strackt_environments.shop.database.pass: unknown key" in joined
    assert "strackt_environments.shop.database.server: 'db9' is not a host" in joined
    assert "strackt_environments.shop.database.name: 'shop-db' is not valid" in joined
    assert "strackt_environments.shop.database.port: must be between 1 and 65535" in joined
    assert problems_of(with_("database", "srv1")) == [
        "strackt_environments.shop.database: must be a mapping with server, name, user and port"
    ]


def test_every_problem_is_reported_at_once():
    entry = shop()
    entry.update(app_port=1, uid=1, root="relative", domains=["x"])
    found = problems_of(entry)
    fields = {p.split(":")[0] for p in found}
    assert {"strackt_environments.shop.app_port", "strackt_environments.shop.uid",
            "strackt_environments.shop.root", "strackt_environments.shop.domains[0]"} <= fields
    message = str(EnvironmentDefinitionError("shop", found))
    assert "group_vars/all/environments.yml" in message and "app_port" in message and "uid" in message


def test_entry_must_be_mapping():
    with pytest.raises(EnvironmentDefinitionError, match="must be a mapping"):
        parse_environment("shop", ["srv1"])


def test_find_environment_unknown_lists_known():
    with pytest.raises(EnvironmentDefinitionError, match=r"unknown env 'blog'.*known: shop"):
        find_environment("blog", {"shop": shop()})


def test_find_environment_refuses_shared_resources():
    other = copy.deepcopy(shop())
    other.update(root="/srv/blog", data_paths=["/srv/blog/data"], user="blog", uid=1101,
                 domains=["SHOP.example.test", "blog.example.test"])
    with pytest.raises(EnvironmentDefinitionError) as info:
        find_environment("shop", {"shop": shop(), "blog": other}, SERVERS)
    joined = "\n".join(info.value.problems)
    assert "strackt_environments.shop.app_port: 8001 is also used by env 'blog'" in joined
    assert "strackt_environments.shop.domains: shop.example.test also belong to env 'blog'" in joined
    assert "uid" not in joined and "root" not in joined


def test_find_environment_ok():
    other = copy.deepcopy(shop())
    other.update(root="/srv/blog", data_paths=["/srv/blog/data"], user="blog", uid=1101,
                 app_port=8002, domains=["blog.example.test"])
    env = find_environment("blog", {"shop": shop(), "blog": other}, SERVERS)
    assert env.name == "blog" and env.unit_name == "strackt-env-blog.service"


def test_shared_argument_specs_match_the_doc_fragment():
    import yaml

    from ansible_collections.strackt.move.plugins.doc_fragments.environment import ModuleDocFragment
    from ansible_collections.strackt.move.plugins.module_utils.environment import (
        environment_argument_spec,
        state_dir_argument_spec,
    )

    for spec, fragment in ((environment_argument_spec(), ModuleDocFragment.DOCUMENTATION),
                           (state_dir_argument_spec(), ModuleDocFragment.STATE_DIR)):
        documented = yaml.safe_load(fragment)["options"]
        assert set(spec) == set(documented)
        for name, option in spec.items():
            assert option["type"] == documented[name]["type"]
            assert option.get("default") == documented[name].get("default")
            assert bool(option.get("required")) == bool(documented[name].get("required"))
