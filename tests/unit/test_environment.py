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
    """A Django env on PostgreSQL (the testbed's shop, README "Define your env")."""
    return {
        "server": "srv1",
        "repo": "git://10.77.0.1/shop.git",
        "branch": "main",
        "root": "/srv/shop",
        "data_paths": ["/srv/shop/data"],
        "domains": ["shop.example.test"],
        "user": "shop",
        "uid": 1100,
        "memory_mb": 256,
        "disk_headroom_mb": 64,
        "stack": "django",
        "port": 8001,
        "processes": {"web": "gunicorn --bind 127.0.0.1:$PORT shopsite.wsgi:application"},
        "health": {"path": "/health"},
        "secrets": ["SHOP_SECRET_KEY"],
        "database": {"engine": "postgresql", "server": "srv1", "name": "shop", "user": "shop", "port": 5432,
                     "password_secret": "SHOP_DB_PASSWORD"},
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
    assert d["target_unit"] == "strackt-env-shop.target"
    assert d["web_unit"] == "strackt-env-shop-web.service"
    assert d["process_units"] == ["strackt-env-shop-web.service"] and d["timer_units"] == []
    assert d["unit_files"] == ["/etc/systemd/system/strackt-env-shop.target",
                               "/etc/systemd/system/strackt-env-shop-web.service"]
    assert d["units"] == ["strackt-env-shop.target", "strackt-env-shop-web.service"]
    assert not {"unit_name", "unit_file", "app_port", "framework"} & set(d), "the old aliases are gone"
    assert d["closed_file"] == "/var/lib/strackt-move/closed/shop"
    assert d["backup_root"] == "/srv/shop/.strackt-backup" and d["data_paths_rel"] == ["data"]
    assert d["port"] == 8001 and d["stack"] == "django"
    assert d["health"] == {"path": "/health", "status": 200, "timeout": 5}
    assert d["uid"] == 1100 and d["user"] == "shop"
    assert d["env_file"] == "/etc/strackt/envs/shop.env"
    assert d["site_file"] == "/etc/caddy/sites/shop.caddy"
    assert d["data_dir"] == "/srv/shop/data"
    assert d["data_paths"] == ["/srv/shop/data"] and d["domains"] == ["shop.example.test"]
    # provision makes these in one module run: code root-owned, data the env user's
    assert d["directories"] == [{"path": "/srv/shop"}, {"path": "/srv/shop/app"},
                                {"path": "/srv/shop/data", "owner": "shop", "group": "shop", "mode": "0750"},
                                {"path": "/etc/strackt/envs"}, {"path": "/etc/caddy/sites"},
                                {"path": "/var/lib/strackt-move/closed"}]


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
        ("port", 80, "between 1024 and 65535"),
        ("port", 70000, "between 1024 and 65535"),
        ("port", True, "whole number"),
        ("port", 8001.5, "whole number"),
        ("port", "80x", "whole number"),
        ("port", 2099, "hold switch port"),
        ("uid", 0, "between 1000 and 59999"),
        ("uid", -5, "between 1000 and 59999"),
        ("memory_mb", 0, "between 1 and"),
        ("disk_headroom_mb", -1, "between 0 and"),
        ("user", "root", "must not be root"),
        ("user", "Shop", "POSIX user name"),
        ("stack", "rubyonrails", "not a known stack"),
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


def test_string_numbers_from_extra_vars_are_accepted():
    env = parse_environment("shop", with_("port", "8002"))
    assert env.port == 8002


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
    found = problems_of(with_("database", {"server": "db9", "name": "shop-db", "user": "shop", "port": 0, "pass": "x",
                                           "password_secret": "P"}))
    joined = "\n".join(found)
    assert "strackt_environments.shop.database.pass: unknown key" in joined
    assert "strackt_environments.shop.database.server: 'db9' is not a host" in joined
    assert "strackt_environments.shop.database.name: 'shop-db' is not valid" in joined
    assert "strackt_environments.shop.database.port: must be between 1 and 65535" in joined
    assert problems_of(with_("database", "srv1")) == [
        "strackt_environments.shop.database: must be a mapping with engine, server, name, user, port and password_secret"
    ]


def test_every_problem_is_reported_at_once():
    entry = shop()
    entry.update(port=1, uid=1, root="relative", domains=["x"])
    found = problems_of(entry)
    fields = {p.split(":")[0] for p in found}
    assert {"strackt_environments.shop.port", "strackt_environments.shop.uid",
            "strackt_environments.shop.root", "strackt_environments.shop.domains[0]"} <= fields
    message = str(EnvironmentDefinitionError("shop", found))
    assert "group_vars/all/environments.yml" in message and "port" in message and "uid" in message


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
    assert "strackt_environments.shop.port: 8001 is also used by env 'blog'" in joined
    assert "strackt_environments.shop.domains: shop.example.test also belong to env 'blog'" in joined
    assert "uid" not in joined and "root" not in joined


def test_find_environment_ok():
    other = copy.deepcopy(shop())
    other.update(root="/srv/blog", data_paths=["/srv/blog/data"], user="blog", uid=1101,
                 port=8002, domains=["blog.example.test"])
    env = find_environment("blog", {"shop": shop(), "blog": other}, SERVERS)
    assert env.name == "blog" and env.target_unit == "strackt-env-blog.target"


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


# ---- the stack-neutral fields (issue 13) -------------------------------------------------------

def notes() -> dict:
    """A Flask + Alembic env on MariaDB with a worker and a timer (the testbed's notes)."""
    return {
        "server": "srv1", "repo": "git://10.77.0.1/notes.git", "branch": "main", "root": "/srv/notes",
        "data_paths": ["/srv/notes/data"], "domains": ["notes.example.test"], "user": "notes", "uid": 1101,
        "memory_mb": 256, "disk_headroom_mb": 64, "stack": "flask-alembic", "port": 8002,
        "processes": {"web": "gunicorn --bind 127.0.0.1:$PORT notes.app:app", "worker": "python3 -m notes.worker"},
        "schedule": {"cull-cache": {"command": "python3 -m notes.cull", "every": "30s"}},
        "migrations_check": "python3 -m notes.migrations_check",
        "health": {"path": "/up", "status": 200, "timeout": 5},
        "env": {"NOTES_CACHE_TTL": 20, "NOTES_DEBUG": False},
        "secrets": ["NOTES_SECRET_KEY"],
        "database": {"engine": "mariadb", "server": "srv1", "name": "notes", "user": "notes",
                     "password_secret": "NOTES_DB_PASSWORD"},
    }


def notes_with(key: str, value) -> dict:
    entry = notes()
    entry[key] = value
    return entry


def test_notes_derived_units_web_first_and_preset_filled():
    env = parse_environment("notes", notes(), SERVERS, {"NOTES_SECRET_KEY", "NOTES_DB_PASSWORD"})
    assert env.process_units == ("strackt-env-notes-web.service", "strackt-env-notes-worker.service")
    assert env.timer_units == ("strackt-env-notes-cull-cache.timer",)
    assert env.job_units == ("strackt-env-notes-cull-cache.service",)
    assert env.unit_files[0] == "/etc/systemd/system/strackt-env-notes.target" and len(env.unit_files) == 5
    assert env.release == "alembic upgrade head"  # from the flask-alembic preset
    assert env.migrations_check == "python3 -m notes.migrations_check"  # the definition wins
    assert "python3-alembic" in env.packages
    assert env.database is not None and env.database.port == 3306 and env.database.url_scheme == "mysql"
    assert env.env == {"NOTES_CACHE_TTL": "20", "NOTES_DEBUG": "false"}
    assert env.redis is None


def test_preset_processes_merge_by_name_and_generic_has_none():
    entry = notes_with("stack", "node")
    entry["processes"] = {"worker": "node worker.js"}
    del entry["migrations_check"], entry["health"]
    env = parse_environment("notes", entry)
    assert env.processes == {"web": "node server.js", "worker": "node worker.js"}
    assert env.release is None and env.migrations_check is None and env.health.path == "/"
    entry = notes_with("stack", "rails")
    del entry["migrations_check"], entry["health"]
    rails = parse_environment("notes", entry)
    assert rails.health.path == "/up" and rails.migrations_check == "bundle exec rails db:abort_if_pending_migrations"
    entry = notes_with("stack", "generic")
    entry["processes"] = {"worker": "x"}
    found = problems_of(entry, "notes")
    assert any(p.startswith("strackt_environments.notes.processes.web: is missing") for p in found), found


def test_stack_defaults_to_generic_and_release_can_be_switched_off():
    entry = notes()
    del entry["stack"]
    entry["release"] = ""
    env = parse_environment("notes", entry)
    assert env.stack == "generic" and env.release is None and env.packages == ()


@pytest.mark.parametrize(
    "key, value, where, fragment",
    [
        ("stack", "spring", "stack", "not a known stack: use one of django, flask-alembic, generic, laravel, node, rails"),
        ("processes", {"worker": "python3 -m notes.worker"}, "processes.web", "is missing"),
        ("processes", ["web: gunicorn"], "processes", "must be a mapping"),
        ("processes", {"web": "gunicorn", "Web_2": "x"}, "processes.Web_2", "not a process name"),
        ("processes", {"web": ""}, "processes.web", "must be a command line"),
        ("processes", {"web": "a\nb"}, "processes.web", "must be a command line"),
        ("migrations_check", True, "migrations_check", "must be a command line"),
        ("migrations_check", ["alembic", "check"], "migrations_check", "must be a command line"),
        ("migrations_check", "alembic check\nrm -rf /", "migrations_check", "must be a command line"),
        ("release", 42, "release", "must be a command line"),
        ("schedule", {"cull": {"command": "x", "every": "often"}}, "schedule.cull.every", "not an interval"),
        ("schedule", {"cull": {"command": "x"}}, "schedule.cull.every", "is missing"),
        ("schedule", {"web": {"command": "x", "every": "5s"}}, "schedule.web", "also a process name"),
        ("schedule", {"cull": "python3 -m cull"}, "schedule.cull", "must be a mapping"),
        ("health", {"path": "up"}, "health.path", "not a URL path"),
        ("health", {"path": "/up", "status": 99}, "health.status", "between 100 and 599"),
        ("health", {"path": "/up", "timeout": 0}, "health.timeout", "between 1 and 300"),
        ("health", {"url": "/up"}, "health.url", "unknown key"),
        ("health", "/up", "health", "must be a mapping"),
        ("env", {"PORT": "9000"}, "env.PORT", "set by strackt-move itself"),
        ("env", {"DATABASE_URL": "x"}, "env.DATABASE_URL", "set by strackt-move itself"),
        ("env", {"1X": "a"}, "env.1X", "not a variable name"),
        ("env", {"X": ["a"]}, "env.X", "single value"),
        ("env", {"X": "a\nb"}, "env.X", "one line"),
        ("secrets", "NOTES_SECRET_KEY", "secrets", "must be a list"),
        ("secrets", ["NOTES_SECRET_KEY", "NOTES_SECRET_KEY"], "secrets[1]", "listed twice"),
        ("secrets", ["DATA_DIR"], "secrets[0]", "already a variable"),
        ("secrets", ["NOT-A-NAME"], "secrets[0]", "is not valid"),
        ("packages", ["python3-flask", "Bad Name"], "packages[1]", "Debian package name"),
        ("packages", "python3-flask", "packages", "must be a list"),
        ("database", {"engine": "oracle", "server": "srv1", "name": "n", "user": "u", "password_secret": "P"},
         "database.engine", "not supported: use one of mariadb, postgresql"),
        ("database", {"server": "srv1", "name": "n", "user": "u"}, "database.password_secret", "is missing"),
        ("redis", {"port": 6379}, "redis.server", "is missing"),
        ("redis", {"server": "srv1", "db": -1}, "redis.db", "between 0 and"),
        ("redis", {"server": "srv1", "nft_allow_set": "strackt_redis"}, "redis.nft_allow_set", "'<family> <table> <set>'"),
        ("redis", {"server": "srv1", "acl": "x"}, "redis.acl", "unknown key"),
    ],
)
def test_new_field_problems_name_the_field(key, value, where, fragment):
    found = problems_of(notes_with(key, value), "notes")
    assert any(p.startswith("strackt_environments.notes.%s: " % where) and fragment in p for p in found), found


def test_secret_names_not_defined_are_named():
    entry = notes()
    entry["redis"] = {"server": "srv1", "password_secret": "REDIS_PW"}
    assert parse_environment("notes", entry).redis.password_secret == "REDIS_PW"  # nothing to check against
    with pytest.raises(EnvironmentDefinitionError) as info:
        parse_environment("notes", entry, SERVERS, {"NOTES_SECRET_KEY"})
    assert info.value.problems == [
        "strackt_environments.notes.database.password_secret: secret 'NOTES_DB_PASSWORD' is not defined: add it to "
        "strackt_env_secrets.notes (group_vars/all/secrets.yml)",
        "strackt_environments.notes.redis.password_secret: secret 'REDIS_PW' is not defined: add it to "
        "strackt_env_secrets.notes (group_vars/all/secrets.yml)",
    ]


def test_old_definition_is_refused_with_how_to_rewrite_it():
    old = shop()
    del old["stack"], old["port"], old["processes"], old["health"], old["secrets"]
    old.update(framework="django", app_port=8001)
    old["database"] = {"server": "srv1", "name": "shop", "user": "shop", "port": 5432}
    found = problems_of(old)
    assert len(found) == 1
    message = found[0]
    assert message.startswith("strackt_environments.shop uses the old definition (framework/app_port)")
    for step in ("framework: django -> stack: django", "app_port: 8001 -> port: 8001", "processes: {web:",
                 "password_secret", "formerly database_password", "formerly django_secret_key",
                 "Define your env", "DATABASE_URL"):
        assert step in message, step


def test_redis_defaults():
    entry = notes()
    entry["redis"] = {"server": "srv2"}
    redis = parse_environment("notes", entry, SERVERS).redis
    assert (redis.server, redis.port, redis.db, redis.password_secret, redis.nft_allow_set) == ("srv2", 6379, 0, None, None)


def test_schedule_every_as_seconds_number():
    entry = notes_with("schedule", {"cull": {"command": "python3 -m notes.cull", "every": 45}})
    assert parse_environment("notes", entry).schedule["cull"].every == "45s"


def test_database_move_is_opt_in_postgresql_only_and_move_to_names_a_server():
    assert parse_environment("shop", shop(), SERVERS).database.move is False
    moving = dict(shop()["database"], move=True, move_to="srv3")
    parsed = parse_environment("shop", with_("database", moving), SERVERS).database
    assert (parsed.move, parsed.move_to) == (True, "srv3")
    found = "\n".join(problems_of(with_("database", dict(moving, move="yes", move_to="db9"))))
    assert "strackt_environments.shop.database.move: must be true or false, got 'yes'" in found
    assert "strackt_environments.shop.database.move_to: 'db9' is not a host" in found
    mariadb = dict(shop()["database"], engine="mariadb", port=3306, move=True)
    assert problems_of(with_("database", mariadb)) == [
        "strackt_environments.shop.database.move: only a PostgreSQL database can move with its env (by logical "
        "replication); remove database.move or leave it false for mariadb"]


def test_freeze_stop_is_graceful_unless_the_env_chooses_kill():
    assert parse_environment("shop", shop(), SERVERS).freeze_stop == "graceful"
    assert parse_environment("shop", with_("freeze_stop", "kill"), SERVERS).to_dict()["freeze_stop"] == "kill"
    found = problems_of(with_("freeze_stop", "sigterm"))
    assert len(found) == 1 and "freeze_stop" in found[0] and "graceful" in found[0] and "'sigterm'" in found[0]
