# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment definition: one entry of ``strackt_environments``, parsed and validated.

``parse_environment(name, entry)`` turns the inventory mapping into an ``Environment``
or raises ``EnvironmentDefinitionError`` listing every problem, each naming the field
(``strackt_environments.<env>.<field>``) and what to do about it.

Also holds the argument spec every strackt.move module shares (``environment_argument_spec``),
the counterpart of ``plugins/doc_fragments/environment.py``, and ``env_module``: the
AnsibleModule of a module that acts on one env, its env name checked.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError, validate_env_name
from ansible_collections.strackt.move.plugins.module_utils import hold

# POSIX user/group names as useradd accepts them without --badname.
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SQL_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SERVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
PATH_CHARS_RE = re.compile(r"^[A-Za-z0-9._/+@:,=-]+$")
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")
REPO_SCHEMES = ("git://", "https://", "http://", "ssh://", "file://")
SCP_REPO_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~+-]+$")
FRAMEWORKS = ("django",)

# A root here could be removed by a rollback: never one of these.
FORBIDDEN_ROOTS = frozenset(
    (
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt",
        "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
        "/var/lib", "/var/log", "/usr/local",
    )
)

KNOWN_KEYS = frozenset(
    (
        "server", "repo", "branch", "root", "data_paths", "domains", "app_port", "user", "uid",
        "memory_mb", "disk_headroom_mb", "framework", "database", "wsgi_app", "env_var_prefix",
    )
)
#: wsgi_app is required by the django framework (checked with it); env_var_prefix has a default
REQUIRED_KEYS = KNOWN_KEYS - {"server", "wsgi_app", "env_var_prefix"}
#: what gunicorn serves: ``module.path:callable``
WSGI_APP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
ENV_VAR_PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,30}$")
DATABASE_KEYS = frozenset(("server", "name", "user", "port"))

UNIT_DIR = "/etc/systemd/system"
ENV_FILE_DIR = "/etc/strackt/envs"
CADDY_SITES_DIR = "/etc/caddy/sites"
DEFAULT_STATE_DIR = "/var/lib/strackt-move"


class EnvironmentDefinitionError(ValueError):
    """An entry of strackt_environments is unusable. ``problems`` lists each one."""

    def __init__(self, env: str, problems: list[str]) -> None:
        self.env = env
        self.problems = problems
        super().__init__(
            "environment %r is not valid (fix it in strackt_environments, "
            "group_vars/all/environments.yml): %s" % (env, "; ".join(problems))
        )


@dataclass(frozen=True)
class Database:
    """The connected database service; it stays where it is during a move."""

    server: str
    name: str
    user: str
    port: int


@dataclass(frozen=True)
class Environment:
    """One web-app environment as the inventory defines it."""

    name: str
    server: str | None
    repo: str
    branch: str
    root: str
    data_paths: tuple[str, ...]
    domains: tuple[str, ...]
    app_port: int
    user: str
    uid: int
    memory_mb: int
    disk_headroom_mb: int
    framework: str
    database: Database
    wsgi_app: str = ""  # module:callable gunicorn serves (framework django)
    env_var_prefix: str = ""  # of the variables in the env file, as the app reads them

    @property
    def attached(self) -> bool:
        return self.server is not None

    @property
    def app_dir(self) -> str:
        return posixpath.join(self.root, "app")

    @property
    def revision_file(self) -> str:
        return posixpath.join(self.app_dir, "REVISION")

    @property
    def unit_name(self) -> str:
        return "strackt-env-%s.service" % self.name

    @property
    def unit_file(self) -> str:
        return posixpath.join(UNIT_DIR, self.unit_name)

    @property
    def env_file(self) -> str:
        return posixpath.join(ENV_FILE_DIR, "%s.env" % self.name)

    @property
    def site_file(self) -> str:
        return posixpath.join(CADDY_SITES_DIR, "%s.caddy" % self.name)

    @property
    def data_dir(self) -> str:
        """The app's data directory (``<env_var_prefix>DATA_DIR`` in its env file): the first data path."""
        return self.data_paths[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for Ansible results, with the derived names roles need and the front
        proxy's hold switch settings (the provision templates and the freeze take them from here)."""
        result = asdict(self)
        result["data_paths"] = list(self.data_paths)
        result["domains"] = list(self.domains)
        result.update(
            attached=self.attached,
            app_dir=self.app_dir,
            revision_file=self.revision_file,
            unit_name=self.unit_name,
            unit_file=self.unit_file,
            env_file=self.env_file,
            site_file=self.site_file,
            data_dir=self.data_dir,
        )
        result.update(hold.settings())
        return result


def environment_argument_spec() -> dict[str, Any]:
    """Options every strackt.move module shares (see doc fragment strackt.move.environment)."""
    return dict(
        env=dict(type="str", required=True),
    )


def state_dir_argument_spec() -> dict[str, Any]:
    """The option of modules that touch move records (doc fragment strackt.move.environment.state_dir)."""
    return dict(
        state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    )


def _env_name(name: Any) -> str:
    """The env name (names.validate_env_name, the one rule), or EnvironmentDefinitionError."""
    try:
        return validate_env_name(name)
    except EnvNameError as exc:
        raise EnvironmentDefinitionError(str(name), [str(exc)]) from None


def env_module(options: dict[str, Any], **module_kwargs: Any) -> tuple[AnsibleModule, str]:
    """An AnsibleModule with the env option plus ``options`` (``module_kwargs`` go to
    AnsibleModule), and its env name: a name that breaks the rule fails the task, saying so."""
    argument_spec = environment_argument_spec()
    argument_spec.update(options)
    module = AnsibleModule(argument_spec=argument_spec, **module_kwargs)
    try:
        env = _env_name(module.params["env"])
    except EnvironmentDefinitionError as exc:
        module.fail_json(msg=str(exc))
    return module, env


class _Checker:
    """Collects problems so one run reports all of them."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.problems: list[str] = []

    def where(self, key: str) -> str:
        return "strackt_environments.%s.%s" % (self.env, key)

    def add(self, key: str, message: str) -> None:
        self.problems.append("%s: %s" % (self.where(key), message))

    def integer(self, key: str, value: Any, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.add(key, "must be a whole number between %d and %d, got %r" % (minimum, maximum, value))
            return 0
        if isinstance(value, str):
            if not value.strip().isdigit():
                self.add(key, "must be a whole number between %d and %d, got %r" % (minimum, maximum, value))
                return 0
            value = int(value.strip())
        if not minimum <= value <= maximum:
            self.add(key, "must be between %d and %d, got %d" % (minimum, maximum, value))
        return value

    def text(self, key: str, value: Any, pattern: re.Pattern[str], hint: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.add(key, "%r is not valid: %s" % (value, hint))
            return ""
        return value

    def path(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.add(key, "must be an absolute path such as /srv/<env>, got %r" % (value,))
            return ""
        if not value.startswith("/"):
            self.add(key, "%r is not absolute: start it with '/'" % value)
            return ""
        if not PATH_CHARS_RE.fullmatch(value):
            self.add(
                key,
                "%r contains characters that are not allowed (whitespace, quotes, '$', "
                "newline, backslash, ...): use only letters, digits and . _ / + @ : , = -" % value,
            )
            return ""
        if ".." in value.split("/"):
            self.add(key, "%r contains '..': give the normalised path" % value)
            return ""
        normal = posixpath.normpath(value)
        if normal.startswith("//"):
            normal = "/" + normal.lstrip("/")
        return normal


def _domain(check: _Checker, key: str, value: Any) -> str:
    if not isinstance(value, str):
        check.add(key, "%r is not a host name such as www.example.com" % (value,))
        return ""
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        len(name) > 253
        or len(labels) < 2
        or not all(LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        check.add(
            key,
            "%r is not a valid host name: use dot-separated labels of letters, digits and "
            "'-' (not at either end), at least two labels, such as www.example.com" % (value,),
        )
        return ""
    return name


def _repo(check: _Checker, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        check.add("repo", "must be a git URL without whitespace, such as git://git.example.com/myapp.git")
        return ""
    if value.startswith(REPO_SCHEMES) or SCP_REPO_RE.fullmatch(value):
        if any(c in value for c in "'\"$`\\;"):
            check.add("repo", "%r contains quotes, '$', '`', '\\' or ';': remove them" % value)
            return ""
        return value
    check.add(
        "repo",
        "%r is not a git URL: use git://, https://, ssh://, file:// or user@host:path" % value,
    )
    return ""


def _branch(check: _Checker, value: Any) -> str:
    hint = "use a git branch name such as main (letters, digits, . _ / + -)"
    branch = check.text("branch", value, BRANCH_RE, hint)
    if branch and (
        branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
    ):
        check.add("branch", "%r is not a valid branch name: %s" % (branch, hint))
        return ""
    return branch


def _data_paths(check: _Checker, value: Any, root: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        check.add("data_paths", "must be a non-empty list of absolute paths under root, such as [%s/data]" % (root or "/srv/<env>"))
        return ()
    paths: list[str] = []
    for index, item in enumerate(value):
        key = "data_paths[%d]" % index
        path = check.path(key, item)
        if not path:
            continue
        if root:
            if not path.startswith(root + "/"):
                check.add(key, "%r is not under root %r: every data path must be inside root" % (path, root))
                continue
            app_dir = root + "/app"
            if path == app_dir or path.startswith(app_dir + "/"):
                check.add(key, "%r is inside %s, which deploy replaces: put data elsewhere under root" % (path, app_dir))
                continue
        if path in paths:
            check.add(key, "%r is listed twice: remove the duplicate" % path)
            continue
        paths.append(path)
    for path in paths:
        for other in paths:
            if other != path and other.startswith(path + "/"):
                check.add("data_paths", "%r is inside %r: list only the outer one" % (other, path))
    return tuple(paths)


def _database(check: _Checker, value: Any, servers: frozenset[str] | None) -> Database:
    empty = Database(server="", name="", user="", port=0)
    if not isinstance(value, Mapping):
        check.add("database", "must be a mapping with server, name, user and port")
        return empty
    for key in sorted(set(value) - DATABASE_KEYS, key=str):
        check.add("database.%s" % key, "unknown key: remove it (known: %s)" % ", ".join(sorted(DATABASE_KEYS)))
    for key in sorted(DATABASE_KEYS - set(value)):
        check.add("database.%s" % key, "is missing")
    server = check.text(
        "database.server", value.get("server"), SERVER_RE,
        "give the inventory name of the server that runs the database",
    )
    if server and servers is not None and server not in servers:
        check.add("database.server", "%r is not a host in the inventory's servers group" % server)
    return Database(
        server=server,
        name=check.text("database.name", value.get("name"), SQL_NAME_RE, "use lower-case letters, digits and '_'"),
        user=check.text("database.user", value.get("user"), SQL_NAME_RE, "use lower-case letters, digits and '_'"),
        port=check.integer("database.port", value.get("port", 5432), 1, 65535),
    )


def _wsgi_app(check: "_Checker", value: Any, framework: str) -> str:
    if value is None:
        if framework == "django":
            check.add("wsgi_app", "is missing: the django framework needs the WSGI application gunicorn serves, "
                                  "as module:callable (such as mysite.wsgi:application)")
        return ""
    return check.text("wsgi_app", value, WSGI_APP_RE,
                      "give the WSGI application as module:callable, such as mysite.wsgi:application")


def default_env_var_prefix(env: str) -> str:
    """``my-app`` -> ``MY_APP_``: the env's name, as the app's variables are prefixed unless told otherwise."""
    return env.replace("-", "_").upper() + "_"


def _env_var_prefix(check: "_Checker", value: Any, env: str) -> str:
    if value is None:
        return default_env_var_prefix(env)
    return check.text("env_var_prefix", value, ENV_VAR_PREFIX_RE,
                      "use upper-case letters, digits and '_', a letter first (such as MYAPP_)")


def parse_environment(
    name: Any,
    entry: Any,
    servers: frozenset[str] | set[str] | list[str] | None = None,
) -> Environment:
    """Validate one entry of strackt_environments and return it as an Environment.

    ``servers``, when given, is the set of inventory host names an env may be attached to.
    Raises EnvironmentDefinitionError naming every field that is wrong.
    """
    env = _env_name(name)
    known_servers = frozenset(servers) if servers is not None else None
    check = _Checker(env)
    if not isinstance(entry, Mapping):
        raise EnvironmentDefinitionError(env, ["strackt_environments.%s must be a mapping, got %s" % (env, type(entry).__name__)])

    for key in sorted(set(entry) - KNOWN_KEYS, key=str):
        check.add(str(key), "unknown key: remove it or fix its spelling (known: %s)" % ", ".join(sorted(KNOWN_KEYS)))
    for key in sorted(REQUIRED_KEYS - set(entry)):
        check.add(key, "is missing")

    server = entry.get("server")
    if server in (None, ""):
        server = None
    else:
        server = check.text("server", server, SERVER_RE, "give an inventory host name, or leave it empty when not attached") or None
        if server and known_servers is not None and server not in known_servers:
            check.add("server", "%r is not a host in the inventory's servers group" % server)

    root = check.path("root", entry.get("root"))
    if root in FORBIDDEN_ROOTS:
        check.add("root", "%r is a system directory: give a directory of its own such as /srv/%s" % (root, env))
        root = ""

    raw_domains = entry.get("domains")
    domains: list[str] = []
    if not isinstance(raw_domains, (list, tuple)) or not raw_domains:
        check.add("domains", "must be a non-empty list of host names, such as [%s.example.com]" % env)
    else:
        for index, item in enumerate(raw_domains):
            domain = _domain(check, "domains[%d]" % index, item)
            if domain and domain in domains:
                check.add("domains[%d]" % index, "%r is listed twice: remove the duplicate" % domain)
            elif domain:
                domains.append(domain)

    framework = entry.get("framework")
    if framework not in FRAMEWORKS:
        check.add("framework", "%r is not supported: use one of %s" % (framework, ", ".join(FRAMEWORKS)))
        framework = ""

    result = Environment(
        name=env,
        server=server,
        repo=_repo(check, entry.get("repo")),
        branch=_branch(check, entry.get("branch")),
        root=root,
        data_paths=_data_paths(check, entry.get("data_paths"), root),
        domains=tuple(domains),
        app_port=check.integer("app_port", entry.get("app_port"), 1024, 65535),
        user=check.text(
            "user", entry.get("user"), USER_RE,
            "use a POSIX user name: lower-case letter or '_' first, then letters, digits, '_' or '-', at most 32",
        ),
        uid=check.integer("uid", entry.get("uid"), 1000, 59999),
        memory_mb=check.integer("memory_mb", entry.get("memory_mb"), 1, 1048576),
        disk_headroom_mb=check.integer("disk_headroom_mb", entry.get("disk_headroom_mb"), 0, 1048576),
        framework=str(framework),
        database=_database(check, entry.get("database"), known_servers),
        wsgi_app=_wsgi_app(check, entry.get("wsgi_app"), str(framework)),
        env_var_prefix=_env_var_prefix(check, entry.get("env_var_prefix"), env),
    )
    if result.user == "root":
        check.add("user", "must not be root: give the env a user of its own")
    if check.problems:
        raise EnvironmentDefinitionError(env, check.problems)
    return result


def find_environment(
    name: Any,
    environments: Any,
    servers: frozenset[str] | set[str] | list[str] | None = None,
) -> Environment:
    """Look ``name`` up in the whole strackt_environments mapping and parse it.

    Also checks what only the whole mapping shows: app_port, uid, user, root and domains
    must not be shared with another env.
    """
    env = _env_name(name)
    if not isinstance(environments, Mapping):
        raise EnvironmentDefinitionError(env, ["strackt_environments must be a mapping of env name to definition"])
    if env not in environments:
        known = ", ".join(sorted(str(k) for k in environments)) or "none"
        raise EnvironmentDefinitionError(
            env, ["unknown env %r: it is not in strackt_environments (known: %s)" % (env, known)]
        )
    result = parse_environment(env, environments[env], servers)
    problems = []
    for other_name, other in environments.items():
        if other_name == env or not isinstance(other, Mapping):
            continue
        for key in ("app_port", "uid", "user", "root"):
            if other.get(key) is not None and str(other.get(key)) == str(getattr(result, key)):
                problems.append(
                    "strackt_environments.%s.%s: %r is also used by env %r: give each env its own"
                    % (env, key, getattr(result, key), other_name)
                )
        other_domains = other.get("domains") or []
        if isinstance(other_domains, (list, tuple)):
            shared = sorted(set(result.domains) & {str(d).lower().rstrip(".") for d in other_domains})
            if shared:
                problems.append(
                    "strackt_environments.%s.domains: %s also belong to env %r: a domain can serve one env only"
                    % (env, ", ".join(shared), other_name)
                )
    if problems:
        raise EnvironmentDefinitionError(env, problems)
    return result
