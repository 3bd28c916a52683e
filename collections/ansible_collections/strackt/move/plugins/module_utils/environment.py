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

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.strackt.move.plugins.module_utils.move_store import RECORD_STORE_ENV
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError, validate_env_name
from ansible_collections.strackt.move.plugins.module_utils import forwarding, hold, retention, stale_traffic
from ansible_collections.strackt.move.plugins.module_utils.stacks import DEFAULT_STACK, STACKS

# POSIX user/group names as useradd accepts them without --badname.
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SQL_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SERVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
PATH_CHARS_RE = re.compile(r"^[A-Za-z0-9._/+@:,=-]+$")
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")
REPO_SCHEMES = ("git://", "https://", "http://", "ssh://", "file://")
SCP_REPO_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~+-]+$")
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PROCESS_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?&=%+:@,;-]*$")
TIME_SPAN_RE = re.compile(r"^[1-9][0-9]{0,6}(ms|s|min|h|d)$")
NFT_SET_RE = re.compile(r"^(ip|ip6|inet) [A-Za-z_][A-Za-z0-9_]{0,63} [A-Za-z_][A-Za-z0-9_]{0,63}$")
# What strackt-move itself puts into every process's environment: not an env variable or secret.
BUILT_IN_VARIABLES = ("PORT", "DATA_DIR", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")
DATABASE_ENGINES = {"postgresql": 5432, "mariadb": 3306}
DEFAULT_HEALTH = {"path": "/", "status": 200, "timeout": 5}

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
        "server", "repo", "branch", "root", "data_paths", "domains", "user", "uid",
        "memory_mb", "disk_headroom_mb", "stack", "port", "processes", "schedule", "release",
        "migrations_check", "health", "env", "secrets", "packages", "database", "redis",
        "forwarding", "retention", "freeze_stop",
    )
)
REQUIRED_KEYS = frozenset(
    ("repo", "branch", "root", "data_paths", "domains", "user", "uid", "memory_mb", "disk_headroom_mb", "port")
)
DATABASE_KEYS = frozenset(("engine", "server", "name", "user", "port", "password_secret", "move", "move_to"))
REDIS_KEYS = frozenset(("server", "port", "db", "password_secret", "nft_allow_set"))
HEALTH_KEYS = frozenset(("path", "status", "timeout"))
JOB_KEYS = frozenset(("command", "every"))
# Keys of the first (Django-only) definition; an entry with them is refused with how to rewrite it.
OLD_KEYS = frozenset(("framework", "app_port"))

UNIT_DIR = "/etc/systemd/system"
ENV_FILE_DIR = "/etc/strackt/envs"
CADDY_SITES_DIR = "/etc/caddy/sites"
DEFAULT_STATE_DIR = "/var/lib/strackt-move"
# A file <CLOSED_DIR>/<env> closes the env's site to all but the servers and loopback (a move's
# target until the release; the old server after a rollback or finish).
CLOSED_DIR = "/var/lib/strackt-move/closed"


#: how the env's processes stop inside the freeze (module_utils/freeze.py): systemd's stop (the
#: app's graceful shutdown), or SIGKILL once no request is in flight - for apps that acknowledge a
#: write only once it is durable, whose other processes may die at any point
FREEZE_STOP_GRACEFUL = "graceful"
FREEZE_STOP_KILL = "kill"
FREEZE_STOPS = (FREEZE_STOP_GRACEFUL, FREEZE_STOP_KILL)


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
    """The connected database service; it stays where it is during a move unless ``move``
    (PostgreSQL only: its new home is the move's target, or ``move_to``)."""

    engine: str
    server: str
    name: str
    user: str
    port: int
    password_secret: str
    move: bool = False
    move_to: str = ""

    @property
    def url_scheme(self) -> str:
        return "postgresql" if self.engine == "postgresql" else "mysql"


@dataclass(frozen=True)
class Redis:
    """A connected Redis; ``nft_allow_set`` (family table set) lists the addresses let through."""

    server: str
    port: int
    db: int
    password_secret: str | None
    nft_allow_set: str | None


@dataclass(frozen=True)
class Health:
    """What a healthy env answers: ``status`` for GET ``path`` within ``timeout`` seconds."""

    path: str
    status: int
    timeout: int


@dataclass(frozen=True)
class Job:
    """A schedule entry: ``command`` run every ``every`` (a systemd time span) by a timer."""

    command: str
    every: str


@dataclass(frozen=True)
class Environment:
    """One web-app environment as the inventory defines it (stack presets applied)."""

    name: str
    server: str | None
    repo: str
    branch: str
    root: str
    data_paths: tuple[str, ...]
    domains: tuple[str, ...]
    user: str
    uid: int
    memory_mb: int
    disk_headroom_mb: int
    stack: str
    port: int
    processes: dict[str, str]
    schedule: dict[str, Job]
    release: str | None
    migrations_check: str | None
    health: Health
    env: dict[str, str]
    secrets: tuple[str, ...]
    packages: tuple[str, ...]
    database: Database | None
    redis: Redis | None
    # how long the old server forwards after a switch-over (module_utils/forwarding.py)
    forwarding: forwarding.Settings = forwarding.Settings()
    # how long the old server keeps the env's stopped copy after a move (module_utils/retention.py)
    retention_s: int = retention.DEFAULT_RETENTION_S
    freeze_stop: str = FREEZE_STOP_GRACEFUL

    @property
    def attached(self) -> bool:
        return self.server is not None

    @property
    def app_dir(self) -> str:
        return posixpath.join(self.root, "app")

    @property
    def revision_file(self) -> str:
        return posixpath.join(self.app_dir, "REVISION")

    def unit_of(self, part: str, kind: str = "service") -> str:
        """The unit of one process or schedule entry: strackt-env-<env>-<part>.<kind>."""
        return "strackt-env-%s-%s.%s" % (self.name, part, kind)

    @property
    def target_unit(self) -> str:
        """The env as a whole: every process and timer is PartOf= it (the freeze stops it)."""
        return "strackt-env-%s.target" % self.name

    @property
    def web_unit(self) -> str:
        return self.unit_of("web")

    @property
    def process_names(self) -> tuple[str, ...]:
        """web first, then the others by name."""
        return ("web",) + tuple(sorted(p for p in self.processes if p != "web"))

    @property
    def process_units(self) -> tuple[str, ...]:
        return tuple(self.unit_of(p) for p in self.process_names)

    @property
    def timer_units(self) -> tuple[str, ...]:
        return tuple(self.unit_of(n, "timer") for n in sorted(self.schedule))

    @property
    def job_units(self) -> tuple[str, ...]:
        """The .service each timer starts."""
        return tuple(self.unit_of(n) for n in sorted(self.schedule))

    @property
    def units(self) -> tuple[str, ...]:
        """Every unit of the env, in the order to stop them: the target, the timers, the services."""
        return (self.target_unit,) + self.timer_units + self.process_units + self.job_units

    @property
    def unit_files(self) -> tuple[str, ...]:
        units = (self.target_unit,) + self.process_units + self.job_units + self.timer_units
        return tuple(posixpath.join(UNIT_DIR, unit) for unit in units)

    @property
    def env_file(self) -> str:
        return posixpath.join(ENV_FILE_DIR, "%s.env" % self.name)

    @property
    def site_file(self) -> str:
        return posixpath.join(CADDY_SITES_DIR, "%s.caddy" % self.name)

    @property
    def closed_file(self) -> str:
        return posixpath.join(CLOSED_DIR, self.name)

    @property
    def access_log(self) -> str:
        """The site's JSON access log: what the old server still takes after a move (stale traffic)."""
        return stale_traffic.access_log_path(self.name)

    @property
    def backup_root(self) -> str:
        return posixpath.join(self.root, ".strackt-backup")

    @property
    def data_dir(self) -> str:
        """The app's data directory (DATA_DIR): the first data path."""
        return self.data_paths[0]

    @property
    def data_paths_rel(self) -> tuple[str, ...]:
        return tuple(posixpath.relpath(path, self.root) for path in self.data_paths)

    @property
    def directories(self) -> list[dict[str, str]]:
        """What provision makes on a server (module env_directories), in order: the root and
        the app directory (root's: the code is not the app's to change), the data paths (the
        env user's, 0750), the env files' and the front proxy's sites and closed sites."""
        env_user = dict(owner=self.user, group=self.user, mode="0750")
        return ([dict(path=self.root), dict(path=self.app_dir)]
                + [dict(env_user, path=path) for path in self.data_paths]
                + [dict(path=ENV_FILE_DIR), dict(path=CADDY_SITES_DIR), dict(path=CLOSED_DIR)])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for Ansible results, with the derived names roles need and the front
        proxy's hold switch settings (the provision templates and the freeze take them from here)."""
        result = asdict(self)
        for key in ("data_paths", "domains", "secrets", "packages"):
            result[key] = list(result[key])
        result.update(
            attached=self.attached,
            app_dir=self.app_dir,
            revision_file=self.revision_file,
            target_unit=self.target_unit,
            web_unit=self.web_unit,
            process_units=list(self.process_units),
            timer_units=list(self.timer_units),
            job_units=list(self.job_units),
            units=list(self.units),
            unit_files=list(self.unit_files),
            env_file=self.env_file,
            site_file=self.site_file,
            closed_dir=CLOSED_DIR,
            closed_file=self.closed_file,
            access_log=self.access_log,
            backup_root=self.backup_root,
            data_dir=self.data_dir,
            data_paths_rel=list(self.data_paths_rel),
            directories=self.directories,
            retained_paths=retention.copy_paths(self.root, self.app_dir, self.data_paths),
        )
        result.update(hold.settings())
        return result


def environment_argument_spec() -> dict[str, Any]:
    """Options every strackt.move module shares (see doc fragment strackt.move.environment)."""
    return dict(
        env=dict(type="str", required=True),
    )


def state_dir_argument_spec() -> dict[str, Any]:
    """The options of modules that touch move records (doc fragment strackt.move.environment.state_dir):
    the state directory and the record store (``move_store.open_store``; a DSN may hold a password)."""
    return dict(
        state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
        record_store=dict(type="str", no_log=True, fallback=(env_fallback, [RECORD_STORE_ENV])),
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


def definition_module(options: dict[str, Any], **module_kwargs: Any) -> tuple[AnsibleModule, str]:
    """``env_module`` with the ``environments`` option (the whole strackt_environments mapping)."""
    argument_spec = dict(environments=dict(type="dict", required=True))
    argument_spec.update(options)
    return env_module(argument_spec, **module_kwargs)


def load_environment(module: AnsibleModule, name: str, servers: Any = None, secret_names: Any = None) -> Environment:
    """find_environment on the module's ``environments``; a bad definition fails the task naming every problem."""
    try:
        return find_environment(name, module.params["environments"],
                                frozenset(servers) if servers is not None else None, secret_names)
    except EnvironmentDefinitionError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems)
        raise  # fail_json exits; this is for type checkers


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


def _mapping_keys(check: _Checker, key: str, value: Mapping[Any, Any], known: frozenset[str],
                  required: frozenset[str] = frozenset()) -> None:
    for extra in sorted(set(value) - known, key=str):
        check.add("%s.%s" % (key, extra), "unknown key: remove it (known: %s)" % ", ".join(sorted(known)))
    for missing in sorted(required - set(value)):
        check.add("%s.%s" % (key, missing), "is missing")


def _server_ref(check: _Checker, key: str, value: Any, servers: frozenset[str] | None, what: str) -> str:
    server = check.text(key, value, SERVER_RE, "give the inventory name of the server that runs the %s" % what)
    if server and servers is not None and server not in servers:
        check.add(key, "%r is not a host in the inventory's servers group" % server)
    return server


def _secret_ref(check: _Checker, key: str, value: Any, secret_names: frozenset[str] | None) -> str:
    name = check.text(key, value, VAR_NAME_RE, "give the name of a secret in strackt_env_secrets.%s" % check.env)
    if name and secret_names is not None and name not in secret_names:
        check.add(key, "secret %r is not defined: add it to strackt_env_secrets.%s (group_vars/all/secrets.yml)"
                  % (name, check.env))
    return name


def _database(check: _Checker, value: Any, servers: frozenset[str] | None,
              secret_names: frozenset[str] | None) -> Database | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        check.add("database", "must be a mapping with engine, server, name, user, port and password_secret")
        return None
    required = frozenset(("server", "name", "user", "password_secret"))
    _mapping_keys(check, "database", value, DATABASE_KEYS, required)
    engine = value.get("engine", "postgresql")
    if engine not in DATABASE_ENGINES:
        check.add("database.engine", "%r is not supported: use one of %s" % (engine, ", ".join(sorted(DATABASE_ENGINES))))
        engine = "postgresql"
    password = value.get("password_secret")
    return Database(
        engine=str(engine),
        server=_server_ref(check, "database.server", value.get("server"), servers, "database"),
        name=check.text("database.name", value.get("name"), SQL_NAME_RE, "use lower-case letters, digits and '_'"),
        user=check.text("database.user", value.get("user"), SQL_NAME_RE, "use lower-case letters, digits and '_'"),
        port=check.integer("database.port", value.get("port", DATABASE_ENGINES[str(engine)]), 1, 65535),
        password_secret=_secret_ref(check, "database.password_secret", password, secret_names) if password else "",
        move=_database_move(check, value, str(engine)),
        move_to=_server_ref(check, "database.move_to", value["move_to"], servers, "database after a move")
        if value.get("move_to") is not None else "",
    )


def _database_move(check: _Checker, value: Mapping[str, Any], engine: str) -> bool:
    move = value.get("move", False)
    if not isinstance(move, bool):
        check.add("database.move", "must be true or false, got %r" % (move,))
        return False
    if move and engine != "postgresql":
        check.add("database.move", "only a PostgreSQL database can move with its env (by logical replication); "
                                   "remove database.move or leave it false for %s" % engine)
        return False
    return move


def _redis(check: _Checker, value: Any, servers: frozenset[str] | None,
           secret_names: frozenset[str] | None) -> Redis | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        check.add("redis", "must be a mapping with server, port, db and password_secret")
        return None
    _mapping_keys(check, "redis", value, REDIS_KEYS, frozenset(("server",)))
    password = value.get("password_secret")
    allow_set = value.get("nft_allow_set")
    if allow_set is not None:
        allow_set = check.text("redis.nft_allow_set", allow_set, NFT_SET_RE,
                               "give the nftables set as '<family> <table> <set>', such as 'inet filter redis_clients'") or None
    return Redis(
        server=_server_ref(check, "redis.server", value.get("server"), servers, "Redis"),
        port=check.integer("redis.port", value.get("port", 6379), 1, 65535),
        db=check.integer("redis.db", value.get("db", 0), 0, 65535),
        password_secret=_secret_ref(check, "redis.password_secret", password, secret_names) if password is not None else None,
        nft_allow_set=allow_set,
    )


def _command(check: _Checker, key: str, value: Any, example: str) -> str:
    """A shell command line: one non-empty line of text."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value or "\0" in value:
        check.add(key, "must be a command line (one line of text such as %r), got %r" % (example, value))
        return ""
    return value.strip()


def _optional_command(check: _Checker, key: str, value: Any, example: str) -> str | None:
    if value is None or value == "":
        return None
    return _command(check, key, value, example) or None


def _processes(check: _Checker, value: Any, preset: Mapping[str, str]) -> dict[str, str]:
    if value is not None and not isinstance(value, Mapping):
        check.add("processes", "must be a mapping of process name to command, such as {web: 'gunicorn app:app'}")
        value = {}
    merged = dict(preset)
    merged.update(value or {})
    processes: dict[str, str] = {}
    for name, command in merged.items():
        key = "processes.%s" % name
        if not isinstance(name, str) or not PROCESS_RE.fullmatch(name):
            check.add(key, "%r is not a process name: lower-case letters, digits and '-', at most 30" % (name,))
            continue
        processes[name] = _command(check, key, command, "gunicorn --bind 127.0.0.1:$PORT app:app")
    if "web" not in merged:
        check.add("processes.web", "is missing: give the command of the web process, which listens on "
                  "127.0.0.1:$PORT (the stack's preset has none)")
    return processes


def _schedule(check: _Checker, value: Any, processes: Mapping[str, str]) -> dict[str, Job]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.add("schedule", "must be a mapping of name to {command, every}, such as {cleanup: {command: ..., every: 10min}}")
        return {}
    jobs: dict[str, Job] = {}
    for name, job in value.items():
        key = "schedule.%s" % name
        if not isinstance(name, str) or not PROCESS_RE.fullmatch(name):
            check.add(key, "%r is not a schedule name: lower-case letters, digits and '-', at most 30" % (name,))
            continue
        if name in processes:
            check.add(key, "%r is also a process name: each process and schedule entry needs its own name" % name)
            continue
        if not isinstance(job, Mapping):
            check.add(key, "must be a mapping {command: ..., every: 30s}")
            continue
        _mapping_keys(check, key, job, JOB_KEYS, JOB_KEYS)
        every = job.get("every")
        if isinstance(every, int) and not isinstance(every, bool) and every > 0:
            every = "%ds" % every
        if not isinstance(every, str) or not TIME_SPAN_RE.fullmatch(every):
            check.add(key + ".every", "%r is not an interval: give a number with ms, s, min, h or d, such as 30s" % (every,))
            every = ""
        jobs[name] = Job(command=_command(check, key + ".command", job.get("command"), "python3 -m app.cleanup"),
                         every=str(every))
    return jobs


def _forwarding(check: _Checker, value: Any) -> forwarding.Settings:
    settings, problems = forwarding.parse_settings(value)
    for key, message in problems:
        check.add(key, message)
    return settings


def _freeze_stop(check: _Checker, value: Any) -> str:
    if value not in FREEZE_STOPS:
        check.add("freeze_stop", "must be %s (the app's own shutdown, the default) or %s (SIGKILL once no request "
                                 "is in flight: only for an app that acknowledges a write once it is durable), "
                                 "not %r" % (FREEZE_STOP_GRACEFUL, FREEZE_STOP_KILL, value))
        return FREEZE_STOP_GRACEFUL
    return str(value)


def _retention(check: _Checker, value: Any) -> int:
    seconds, problems = retention.parse_retention(value)
    for key, message in problems:
        check.add(key, message)
    return seconds


def _health(check: _Checker, value: Any, preset_path: str) -> Health:
    merged: dict[str, Any] = dict(DEFAULT_HEALTH, path=preset_path)
    if value is not None and not isinstance(value, Mapping):
        check.add("health", "must be a mapping such as {path: /up, status: 200, timeout: 5}")
    elif value is not None:
        _mapping_keys(check, "health", value, HEALTH_KEYS)
        merged.update(value)
    path = merged["path"]
    if not isinstance(path, str) or not HEALTH_PATH_RE.fullmatch(path):
        check.add("health.path", "%r is not a URL path: start it with '/', such as /up" % (path,))
        path = "/"
    return Health(path=path, status=check.integer("health.status", merged["status"], 100, 599),
                  timeout=check.integer("health.timeout", merged["timeout"], 1, 300))


def _variables(check: _Checker, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.add("env", "must be a mapping of variable name to value, such as {APP_MODE: production}")
        return {}
    variables: dict[str, str] = {}
    for name, item in value.items():
        key = "env.%s" % name
        if not isinstance(name, str) or not VAR_NAME_RE.fullmatch(name):
            check.add(key, "%r is not a variable name: letters, digits and '_', not a digit first" % (name,))
        elif name in BUILT_IN_VARIABLES:
            check.add(key, "%s is set by strackt-move itself (built in: %s): remove it" % (name, ", ".join(BUILT_IN_VARIABLES)))
        elif isinstance(item, (Mapping, list, tuple)) or item is None:
            check.add(key, "must be a single value (text or number), got %r" % (item,))
        elif "\n" in str(item) or "\0" in str(item):
            check.add(key, "must be one line: an env file cannot hold a newline")
        else:
            variables[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return variables


def _secret_list(check: _Checker, value: Any, variables: Mapping[str, str],
                 secret_names: frozenset[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        check.add("secrets", "must be a list of secret names (keys of strackt_env_secrets.%s)" % check.env)
        return ()
    names: list[str] = []
    for index, item in enumerate(value):
        key = "secrets[%d]" % index
        name = _secret_ref(check, key, item, secret_names)
        if not name:
            continue
        if name in BUILT_IN_VARIABLES or name in variables:
            check.add(key, "%s is already a variable (built in or in env): give the secret another name" % name)
        elif name in names:
            check.add(key, "%r is listed twice: remove the duplicate" % name)
        else:
            names.append(name)
    return tuple(names)


def _packages(check: _Checker, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        check.add("packages", "must be a list of Debian package names, such as [python3-flask, gunicorn]")
        return ()
    packages: list[str] = []
    for index, item in enumerate(value):
        name = check.text("packages[%d]" % index, item, PACKAGE_RE, "give a Debian package name such as python3-flask")
        if name and name not in packages:
            packages.append(name)
    return tuple(packages)


def old_definition_problem(env: str, entry: Mapping[Any, Any]) -> str:
    """How to rewrite an entry of the first, Django-only schema (framework, app_port)."""
    steps = []
    if "framework" in entry:
        steps.append("framework: %s -> stack: %s" % (entry.get("framework"), entry.get("framework")))
    if "app_port" in entry:
        steps.append("app_port: %s -> port: %s" % (entry.get("app_port"), entry.get("app_port")))
    steps += [
        "add processes: {web: <command that listens on 127.0.0.1:$PORT>} (for the former default: "
        "'gunicorn --bind 127.0.0.1:$PORT --workers 2 <project>.wsgi:application')",
        "add health: {path: <a path your app answers 200 on>}",
        "give database an engine (postgresql) and password_secret (the key of strackt_env_secrets.%s that "
        "holds its password, formerly database_password)" % env,
        "list the app's other secrets under secrets (formerly django_secret_key), by the variable names the "
        "app reads; the app now gets DATABASE_URL, DATA_DIR, ALLOWED_HOSTS and PORT instead of <PREFIX>DB_HOST etc.",
    ]
    return ("strackt_environments.%s uses the old definition (framework/app_port), which strackt-move no longer "
            "reads: rewrite it (README, 'Define your env'): %s" % (env, "; ".join(steps)))


def parse_environment(
    name: Any,
    entry: Any,
    servers: frozenset[str] | set[str] | list[str] | None = None,
    secret_names: frozenset[str] | set[str] | list[str] | None = None,
) -> Environment:
    """Validate one entry of strackt_environments and return it as an Environment.

    ``servers``, when given, is the set of inventory host names an env may be attached to;
    ``secret_names``, when given, the keys of ``strackt_env_secrets.<env>`` (every secret the
    definition names must be one of them). Raises EnvironmentDefinitionError naming every field
    that is wrong.
    """
    env = _env_name(name)
    known_servers = frozenset(servers) if servers is not None else None
    known_secrets = frozenset(secret_names) if secret_names is not None else None
    check = _Checker(env)
    if not isinstance(entry, Mapping):
        raise EnvironmentDefinitionError(env, ["strackt_environments.%s must be a mapping, got %s" % (env, type(entry).__name__)])
    if OLD_KEYS & set(entry):
        raise EnvironmentDefinitionError(env, [old_definition_problem(env, entry)])

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

    stack = entry.get("stack", DEFAULT_STACK)
    if stack not in STACKS:
        check.add("stack", "%r is not a known stack: use one of %s (generic: no defaults)" % (stack, ", ".join(sorted(STACKS))))
        stack = DEFAULT_STACK
    preset = STACKS[str(stack)]
    processes = _processes(check, entry.get("processes"), preset.processes)
    variables = _variables(check, entry.get("env"))

    result = Environment(
        name=env,
        server=server,
        repo=_repo(check, entry.get("repo")),
        branch=_branch(check, entry.get("branch")),
        root=root,
        data_paths=_data_paths(check, entry.get("data_paths"), root),
        domains=tuple(domains),
        user=check.text(
            "user", entry.get("user"), USER_RE,
            "use a POSIX user name: lower-case letter or '_' first, then letters, digits, '_' or '-', at most 32",
        ),
        uid=check.integer("uid", entry.get("uid"), 1000, 59999),
        memory_mb=check.integer("memory_mb", entry.get("memory_mb"), 1, 1048576),
        disk_headroom_mb=check.integer("disk_headroom_mb", entry.get("disk_headroom_mb"), 0, 1048576),
        stack=str(stack),
        port=check.integer("port", entry.get("port"), 1024, 65535),
        processes=processes,
        schedule=_schedule(check, entry.get("schedule"), processes),
        release=_optional_command(check, "release", entry.get("release", preset.release), "alembic upgrade head"),
        migrations_check=_optional_command(
            check, "migrations_check", entry.get("migrations_check", preset.migrations_check),
            "python3 manage.py migrate --check"),
        health=_health(check, entry.get("health"), preset.health_path),
        env=variables,
        secrets=_secret_list(check, entry.get("secrets"), variables, known_secrets),
        packages=_packages(check, entry.get("packages", list(preset.packages))),
        database=_database(check, entry.get("database"), known_servers, known_secrets),
        redis=_redis(check, entry.get("redis"), known_servers, known_secrets),
        forwarding=_forwarding(check, entry.get("forwarding")),
        retention_s=_retention(check, entry.get("retention")),
        freeze_stop=_freeze_stop(check, entry.get("freeze_stop", FREEZE_STOP_GRACEFUL)),
    )
    if result.user == "root":
        check.add("user", "must not be root: give the env a user of its own")
    if result.port == hold.HOLD_PORT:
        check.add("port", "%d is strackt-move's hold switch port: give the web process another" % result.port)
    if check.problems:
        raise EnvironmentDefinitionError(env, check.problems)
    return result


def find_environment(
    name: Any,
    environments: Any,
    servers: frozenset[str] | set[str] | list[str] | None = None,
    secret_names: frozenset[str] | set[str] | list[str] | None = None,
) -> Environment:
    """Look ``name`` up in the whole strackt_environments mapping and parse it.

    Also checks what only the whole mapping shows: port, uid, user, root and domains
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
    result = parse_environment(env, environments[env], servers, secret_names)
    problems = []
    for other_name, other in environments.items():
        if other_name == env or not isinstance(other, Mapping):
            continue
        for key in ("port", "uid", "user", "root"):
            theirs = other.get(key, other.get("app_port") if key == "port" else None)
            if theirs is not None and str(theirs) == str(getattr(result, key)):
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
