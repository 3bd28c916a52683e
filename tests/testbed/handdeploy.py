"""Run a stack-neutral env (inventory.sample_app_environments) on a server BY HAND: what the
product will do from wave 2 on (issue 13), done here with plain commands so the sample apps and
their definitions can be checked before it can.

Everything is derived from the definition and the env's secrets; the layout follows the draft:
`strackt-env-<env>.target`, `strackt-env-<env>-<process>.service` (PartOf= and WantedBy= the
target), `strackt-env-<env>-<name>.timer` + `.service` per schedule entry, the code in
`<root>/app` with `REVISION`, the variables in `/etc/strackt/envs/<env>.env`, a Caddy site.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

ENV_FILE = "/etc/strackt/envs/{env}.env"
UNIT_DIR = "/etc/systemd/system"
CADDY_SITE = "/etc/caddy/sites/{env}.caddy"


class Remote(Protocol):
    def ssh(self, server: str, command: str, *, check: bool = True, input: str | None = None,
            timeout: float = 120) -> Any: ...


@dataclass(frozen=True)
class Placement:
    """Where the env runs and where its connected services are (server name -> address)."""
    server: str
    addresses: dict[str, str]

    def host_of(self, service_server: str) -> str:
        # On the service's own server the env connects over loopback, else to its address.
        return "127.0.0.1" if service_server == self.server else self.addresses[service_server]


def process_environment(definition: dict[str, Any], secrets: dict[str, str], where: Placement) -> dict[str, str]:
    """The variables every process of the env gets (PORT is added to the web process only)."""
    env = {"DATA_DIR": definition["data_paths"][0], "ALLOWED_HOSTS": ",".join(definition["domains"])}
    database = definition.get("database")
    if database:
        scheme = {"mariadb": "mysql", "mysql": "mysql", "postgresql": "postgresql"}[database["engine"]]
        password = quote(secrets[database["password_secret"]], safe="")
        env["DATABASE_URL"] = (f"{scheme}://{quote(database['user'], safe='')}:{password}"
                               f"@{where.host_of(database['server'])}:{database['port']}/{database['name']}")
    redis = definition.get("redis")
    if redis:
        password = quote(secrets[redis["password_secret"]], safe="")
        env["REDIS_URL"] = f"redis://:{password}@{where.host_of(redis['server'])}:{redis['port']}/{redis['db']}"
    env.update({str(k): str(v) for k, v in definition.get("env", {}).items()})
    env.update({name: secrets[name] for name in definition.get("secrets", [])})
    return env


def _env_file(env: dict[str, str]) -> str:
    for name, value in env.items():
        if "\n" in value or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"variable {name!r} cannot go into an environment file")
    # systemd's EnvironmentFile takes double-quoted values with backslash escapes
    return "".join(f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for k, v in env.items())


def _seconds(every: str) -> str:
    if not re.fullmatch(r"\d+(ms|s|min|h)?", every):
        raise ValueError(f"schedule interval {every!r} is not a systemd time span like 30s")
    return every


def unit_files(name: str, definition: dict[str, Any]) -> dict[str, str]:
    """File name (in /etc/systemd/system) -> content, for the target, processes and timers."""
    target = f"strackt-env-{name}.target"
    common = (f"User={definition['user']}\nGroup={definition['user']}\n"
              f"WorkingDirectory={definition['root']}/app\nEnvironmentFile={ENV_FILE.format(env=name)}\n")
    files = {target: (f"[Unit]\nDescription=env {name} (all its processes and timers)\n\n"
                      "[Install]\nWantedBy=multi-user.target\n")}
    for process, command in definition["processes"].items():
        port = f"Environment=PORT={definition['port']}\n" if process == "web" else ""
        # A Procfile line is a shell command line ($PORT expands), run as foreman does: sh -c 'exec ...'
        files[f"strackt-env-{name}-{process}.service"] = (
            f"[Unit]\nDescription=env {name}: {process}\nPartOf={target}\nAfter=network-online.target\n\n"
            f"[Service]\n{common}{port}ExecStart=/bin/sh -c {shlex.quote('exec ' + command)}\n"
            "Restart=on-failure\nRestartSec=1\nTimeoutStopSec=15\n\n"
            f"[Install]\nWantedBy={target}\n")
    for entry, job in definition.get("schedule", {}).items():
        every = _seconds(job["every"])
        files[f"strackt-env-{name}-{entry}.service"] = (
            f"[Unit]\nDescription=env {name}: {entry}\nPartOf={target}\n\n"
            f"[Service]\nType=oneshot\n{common}ExecStart=/bin/sh -c {shlex.quote('exec ' + job['command'])}\n")
        files[f"strackt-env-{name}-{entry}.timer"] = (
            f"[Unit]\nDescription=env {name}: {entry} every {every}\nPartOf={target}\n\n"
            f"[Timer]\nOnActiveSec={every}\nOnUnitActiveSec={every}\nAccuracySec=100ms\n\n"
            f"[Install]\nWantedBy={target}\n")
    return files


def caddy_site(name: str, definition: dict[str, Any]) -> str:
    sites = " ".join(f"http://{domain}" for domain in definition["domains"])
    return f"{sites} {{\n    reverse_proxy 127.0.0.1:{definition['port']}\n}}\n"


def run_as_env(name: str, definition: dict[str, Any], command: str) -> str:
    """A shell command line that runs `command` as the env's processes run (user, directory,
    environment), waits for it and passes its output and exit status through."""
    return ("systemd-run --quiet --wait --pipe --collect "
            f"--uid={definition['user']} --gid={definition['user']} "
            f"--working-directory={definition['root']}/app "
            f"-p EnvironmentFile={ENV_FILE.format(env=name)} "
            f"/bin/sh -c {shlex.quote('exec ' + command)}")


def deploy(bed: Remote, name: str, definition: dict[str, Any], secrets: dict[str, str],
           where: Placement, timeout: float = 60) -> None:
    """Put the env on `where.server` and start it; returns once it answers healthy through Caddy."""
    server, root, user = where.server, definition["root"], definition["user"]
    env_file = ENV_FILE.format(env=name)
    script = [
        "set -e",
        f"getent group {user} >/dev/null || groupadd --system --gid {definition['uid']} {user}",
        f"id -u {user} >/dev/null 2>&1 || useradd --system --uid {definition['uid']} --gid {user} "
        f"--home-dir {root} --no-create-home --shell /usr/sbin/nologin {user}",
        f"install -d -o root -g root -m 0755 {root}",
        f"rm -rf {root}/app",
        f"git clone -q --branch {shlex.quote(definition['branch'])} {shlex.quote(definition['repo'])} {root}/app",
        f"git -C {root}/app rev-parse HEAD > {root}/app/REVISION",
        *[f"install -d -o {user} -g {user} -m 0750 {path}" for path in definition["data_paths"]],
        "install -d -m 0755 /etc/strackt/envs",
        f"install -m 0640 -o root -g {user} /dev/null {env_file}",
    ]
    bed.ssh(server, "\n".join(script), timeout=timeout)
    bed.ssh(server, f"cat > {env_file}", input=_env_file(process_environment(definition, secrets, where)))
    units = unit_files(name, definition)
    for filename, text in units.items():
        bed.ssh(server, f"cat > {UNIT_DIR}/{filename}", input=text)
    bed.ssh(server, "systemctl daemon-reload")
    if definition.get("release"):
        bed.ssh(server, run_as_env(name, definition, definition["release"]), timeout=timeout)
    enable = " ".join(units)
    bed.ssh(server, f"systemctl enable --quiet {enable} && systemctl start strackt-env-{name}.target", timeout=timeout)
    bed.ssh(server, f"cat > {CADDY_SITE.format(env=name)} && systemctl reload caddy", input=caddy_site(name, definition))
    health = definition["health"]
    domain = definition["domains"][0]
    bed.ssh(server, f"for i in $(seq {int(timeout * 5)}); do "
                    f"[ \"$(curl -s -o /dev/null -w '%{{http_code}}' -m {health['timeout']} -H 'Host: {domain}' "
                    f"http://127.0.0.1{health['path']})\" = {health['status']} ] && exit 0; sleep 0.2; done; "
                    f"echo '{name} did not answer {health['status']} on {health['path']}' >&2; "
                    f"systemctl --no-pager status 'strackt-env-{name}*' >&2; exit 1", timeout=timeout + 30)


def remove(bed: Remote, name: str, definition: dict[str, Any], server: str) -> None:
    """Take the env off `server` again: units, env file, Caddy site, code, data, user."""
    units = " ".join(unit_files(name, definition))
    root, user = definition["root"], definition["user"]
    bed.ssh(server, "\n".join([
        f"systemctl stop strackt-env-{name}.target {units} 2>/dev/null || true",
        f"systemctl disable --quiet {units} 2>/dev/null || true",
        f"cd {UNIT_DIR} && rm -f {units} && rm -rf strackt-env-{name}.target.wants",
        "systemctl daemon-reload",
        f"systemctl reset-failed 'strackt-env-{name}*' 2>/dev/null || true",
        f"rm -f {ENV_FILE.format(env=name)} {CADDY_SITE.format(env=name)}",
        "if systemctl is-active -q caddy; then systemctl reload caddy; fi",
        f"rm -rf {root}",
        f"id -u {user} >/dev/null 2>&1 && userdel {user} || true",
        f"getent group {user} >/dev/null && groupdel {user} || true",
    ]), timeout=120)
