"""Bring the whole testbed up, reset it between tests, and tear it down by recorded PIDs."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import dns as tb_dns
from . import gitrepo, inventory, network, servers, services
from .config import ENV_NAME, ENV_SOURCE, REPO_ROOT, TestbedConfig
from .rootfs import ensure_rootfs
from .shell import run

#: a unix socket's path holds at most 107 bytes
MAX_UNIX_SOCKET_PATH = 107


def _log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the PID it names one process, not a reused PID."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return None


@dataclass
class Process:
    pid: int
    start_time: str | None

    @classmethod
    def of(cls, pid: int) -> "Process":
        return cls(pid, _start_time(pid))

    def alive(self) -> bool:
        return servers.pid_alive(self.pid) and _start_time(self.pid) == self.start_time


class Testbed:
    """One testbed (index from STRACKT_TESTBED_INDEX)."""

    __test__ = False  # not a pytest test class

    def __init__(self, cfg: TestbedConfig | None = None) -> None:
        self.cfg = cfg or TestbedConfig.from_env()

    # ---- recorded state -------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.cfg.state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.cfg.state_dir, 0o700)
        tmp = self.cfg.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.cfg.state_file)

    def processes(self) -> dict[str, Process]:
        return {name: Process(*p) for name, p in self._load().get("processes", {}).items()}

    @property
    def secrets(self) -> dict[str, str]:
        return self._load().get("secrets", {})

    # ---- facts tests use ------------------------------------------------
    @property
    def inventory_dir(self) -> Path:
        return self.cfg.inventory_dir

    @property
    def addresses(self) -> dict[str, str]:
        return {s.name: s.address for s in self.cfg.servers}

    @property
    def dns_server(self) -> str:
        return self.cfg.dns_address

    def is_up(self) -> bool:
        procs = self.processes()
        wanted = {s.name for s in self.cfg.servers} | {"dns", "git"}
        return bool(procs) and wanted <= procs.keys() and all(p.alive() for p in procs.values()) \
            and self._load().get("ready", False)

    def ssh_command(self, server: str, *extra: str) -> list[str]:
        addr = self.cfg.server(server).address
        return ["ssh", "-i", str(self.cfg.ssh_key), "-o", f"UserKnownHostsFile={self.cfg.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                *extra, f"root@{addr}"]

    @property
    def mux_dir(self) -> Path:
        return self.cfg.state_dir / "ssh-mux"

    def mux_options(self) -> list[str]:
        """ssh options that share one kept-open connection per server between ``ssh`` calls.

        Why: a new connection costs a key exchange and a new sshd (0.3-0.4 s of CPU on both ends
        together, 0.8 s of wall time under the suite's load, measured 2026-12-01), and tests poll
        servers many times a second; over the shared connection a call costs a tenth of that.
        None when the socket's path would be too long (then every call connects anew)."""
        socket = self.mux_dir / "%C"  # %C: 40 hex; ssh adds 17 characters while it binds
        if len(str(socket)) - 2 + 40 + 17 > MAX_UNIX_SOCKET_PATH:
            return []
        self.mux_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={socket}", "-o", "ControlPersist=30",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

    def close_shared_connections(self) -> None:
        """End the kept-open connections of ``ssh`` (before the servers go)."""
        for sock in self.mux_dir.iterdir() if self.mux_dir.is_dir() else ():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "testbed"],
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(self.mux_dir, ignore_errors=True)

    def ssh(self, server: str, command: str, *, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``server`` as root, over the connection kept open for that server
        (``ssh_command`` makes a connection of its own, for what must not share one)."""
        result = subprocess.run(self.ssh_command(server, *self.mux_options()) + [command], input=input,
                                text=True, capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"on {server}: {command!r} exited {result.returncode}: "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result

    # ---- up ---------------------------------------------------------------
    def up(self, deploy: bool = True) -> None:
        if self.is_up():
            _log(f"testbed {self.cfg.index} is already up")
            return
        if self._load():
            _log("found a half-started testbed; tearing it down first")
            self.down()
        started = time.monotonic()
        rootfs = ensure_rootfs(_log)
        servers.raise_host_limits()
        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.state_dir, 0o700)
        state: dict[str, Any] = {"index": cfg.index, "processes": {}, "ready": False}
        state["secrets"] = {
            "tsig_secret": tb_dns.new_tsig_secret(),
            "database_password": pysecrets.token_urlsafe(18),
            "django_secret_key": pysecrets.token_urlsafe(40),
            # the sample apps notes and drop (URL-safe, so they need no quoting in DATABASE_URL/REDIS_URL)
            "notes_db_password": pysecrets.token_urlsafe(18),
            "notes_secret_key": pysecrets.token_urlsafe(40),
            "redis_password": pysecrets.token_urlsafe(24),
        }
        self._save(state)

        if not cfg.ssh_key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "strackt-testbed-controller",
                 "-f", str(cfg.ssh_key)])
        pubkey = cfg.ssh_key.with_suffix(".pub").read_text()

        network.create_bridge(cfg)
        network.create_namespace(cfg, cfg.dns_netns, f"{cfg.prefix}-dns", cfg.dns_address)
        host_keys: dict[str, list[str]] = {}
        for server in cfg.servers:
            network.create_namespace(cfg, server.netns, server.host_veth, server.address)
            root = servers.mount_overlay(cfg, server, rootfs)
            # Only srv1 hosts the connected services; the others never start them.
            mask = () if server.name == ENV_SOURCE else services.SOURCE_ONLY_UNITS
            host_keys[server.name] = servers.personalise(cfg, server, root, pubkey, mask)
            if server.name == ENV_SOURCE:
                services.configure_source(cfg, root, state["secrets"])
        inventory.write_inventory(cfg, host_keys, state["secrets"])

        conf = tb_dns.write_config(cfg, state["secrets"]["tsig_secret"], cfg.server(ENV_SOURCE).address)
        state["processes"]["dns"] = list(vars(Process.of(tb_dns.start(cfg, conf))).values())
        self._save(state)
        gitrepo.create_repos(cfg)
        state["processes"]["git"] = list(vars(Process.of(gitrepo.start_daemon(cfg))).values())
        self._save(state)
        for server in cfg.servers:
            pid = servers.boot(cfg, server, servers.root_dir(cfg, server))
            state["processes"][server.name] = list(vars(Process.of(pid)).values())
            self._save(state)

        tb_dns.wait_ready(cfg)
        gitrepo.wait_daemon(cfg)
        with ThreadPoolExecutor(len(cfg.servers)) as pool:
            list(pool.map(self._wait_booted, [s.name for s in cfg.servers]))
        _log(f"servers booted in {time.monotonic() - started:.1f}s")
        self._create_database()
        if deploy:
            self.deploy_env()
        state["ready"] = True
        self._save(state)
        _log(f"testbed {cfg.index} up in {time.monotonic() - started:.1f}s; inventory: {cfg.inventory_dir}")

    def _wait_booted(self, server: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            result = self.ssh(server, "systemctl is-system-running --wait", check=False, timeout=30)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = self.ssh(server, "systemctl --failed --no-legend --plain", check=False).stdout
                    _log(f"{server} is degraded: {failed.strip()}")
                return
            last = (result.stderr or result.stdout).strip()
            time.sleep(0.3)
        raise RuntimeError(f"{server} did not finish booting within {timeout}s: {last}")

    def _create_database(self) -> None:
        """The connected services: PostgreSQL on srv1 with the env's database and role, MariaDB
        with the database and accounts of the sample app notes (Redis needs nothing more)."""
        password = self.secrets["database_password"].replace("'", "''")
        self.ssh(ENV_SOURCE, "until pg_isready -q; do sleep 0.2; done", timeout=60)
        sql = (f"CREATE ROLE {ENV_NAME} LOGIN PASSWORD '{password}';\n"
               f"CREATE DATABASE {ENV_NAME} OWNER {ENV_NAME};\n")
        self.ssh(ENV_SOURCE, "runuser -u postgres -- psql -q -v ON_ERROR_STOP=1", input=sql)
        services.create_mariadb_database(self.ssh, self.secrets)
        self.ssh(ENV_SOURCE, "nft -f -", input=services.redis_guard_script([]))

    def ansible_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
        env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
        venv_bin = REPO_ROOT / ".venv" / "bin"
        if venv_bin.is_dir():
            env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
        return env

    def playbook(self, name: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["ansible-playbook", "-i", str(self.inventory_dir), str(REPO_ROOT / "playbooks" / name), *extra]
        result = subprocess.run(cmd, env=self.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-6000:]}"
                               f"\n{result.stderr[-2000:]}")
        return result

    def deploy_env(self) -> None:
        names = list(inventory.all_environments(self.cfg))
        for name in names:
            _log(f"deploying {name} on {ENV_SOURCE} with playbooks/deploy.yml")
            self.playbook("deploy.yml", "-e", f"env={name}")
        self.ssh(ENV_SOURCE, KEEP_DEPLOYED.format(envs=" ".join(names)))

    # ---- reset between tests ------------------------------------------------
    def reset(self) -> None:
        """Put the world back to `shop, notes and drop run on srv1 only`, without rebooting anything."""
        definitions = inventory.all_environments(self.cfg)
        envs = " ".join(definitions)
        for server in self.cfg.servers:
            if server.name == ENV_SOURCE:
                continue
            self.ssh(server.name, CLEAN_TARGET.format(envs=envs), timeout=120)
        others = [s.address for s in self.cfg.servers if s.name != ENV_SOURCE]
        services.revoke_other_servers(self.ssh, others)
        health = "\n".join(f"{name} {d['domains'][0]} {d['health']['path']} {d['root']}" for name, d in definitions.items())
        restored = self._restore_source(health)
        if restored.returncode == 3:  # a finished move retired envs here: deploy them again
            inventory.write_environments(self.cfg)
            for name in restored.stdout.split():
                _log(f"deploying {name} on {ENV_SOURCE} again (a finished move retired it, and what "
                     "its deploy wrote was not kept)")
                self.playbook("deploy.yml", "-e", f"env={name}")
            restored = self._restore_source(health)
        if restored.returncode != 0:
            raise RuntimeError(f"on {ENV_SOURCE}: restoring the envs failed ({restored.returncode}): "
                               f"{restored.stdout}{restored.stderr}")
        source = self.cfg.server(ENV_SOURCE).address
        for definition in definitions.values():
            for domain in definition["domains"]:
                tb_dns.set_a(self.cfg, self.secrets["tsig_secret"], domain, source)
        inventory.write_environments(self.cfg)
        shutil.rmtree(self.cfg.state_dir / "moves", ignore_errors=True)

    def _restore_source(self, health: str) -> subprocess.CompletedProcess[str]:
        return self.ssh(ENV_SOURCE, RESTORE_SOURCE.format(health=health, deployed=DEPLOYED_DIR), timeout=180,
                        check=False)

    # ---- faults ------------------------------------------------------------
    def dns_stop(self) -> None:
        """Stop BIND9 by its recorded PID: the DNS server is down (its zone journal stays)."""
        proc = self.processes().get("dns")
        if proc and proc.alive():
            servers.stop_pid(proc.pid)

    def dns_start(self) -> None:
        """Start BIND9 again with the same configuration and zone; record its PID."""
        proc = self.processes().get("dns")
        if proc and proc.alive():
            return
        state = self._load()
        conf = self.cfg.state_dir / "dns" / "named.conf"
        state["processes"]["dns"] = list(vars(Process.of(tb_dns.start(self.cfg, conf))).values())
        self._save(state)
        tb_dns.wait_ready(self.cfg)

    # ---- down -------------------------------------------------------------
    def down(self) -> None:
        cfg = self.cfg
        self.close_shared_connections()
        procs = self.processes()
        for name in [s.name for s in cfg.servers] + ["dns", "git"]:
            proc = procs.get(name)
            if proc and proc.alive():
                servers.stop_pid(proc.pid)
        for server in cfg.servers:
            servers.unmount_overlay(cfg, server)
            network.delete_namespace(server.netns, server.host_veth)
        network.delete_namespace(cfg.dns_netns, f"{cfg.prefix}-dns")
        network.delete_bridge(cfg)
        shutil.rmtree(cfg.state_dir / "servers", ignore_errors=True)
        if cfg.state_file.exists():
            cfg.state_file.unlink()
        _log(f"testbed {cfg.index} is down")

    def leftovers(self) -> list[str]:
        """Anything of this testbed still on the machine (processes, mounts, namespaces, links)."""
        found = [f"process {n} pid {p.pid}" for n, p in self.processes().items() if p.alive()]
        with open("/proc/self/mounts") as mounts:
            found += [f"mount {line.split()[1]}" for line in mounts
                      if (line.split()[1] + "/").startswith(str(self.cfg.state_dir) + "/")]
        netns = run(["ip", "netns", "list"], check=False).stdout.split()
        found += [f"netns {n}" for n in netns if n.startswith(self.cfg.prefix + "-")]
        links = run(["ip", "-o", "link", "show"], check=False).stdout.splitlines()
        for line in links:
            ifname = line.split(":")[1].strip().split("@")[0]
            if ifname.startswith(self.cfg.prefix + "-") or ifname == self.cfg.bridge:
                found.append(f"link {ifname}")
        return found

    def status(self) -> dict[str, Any]:
        procs = self.processes()
        return {
            "index": self.cfg.index,
            "up": self.is_up(),
            "inventory": str(self.cfg.inventory_dir),
            "dns": {"address": self.cfg.dns_address, "running": bool(procs.get("dns") and procs["dns"].alive())},
            "servers": {s.name: {"address": s.address,
                                 "running": bool(procs.get(s.name) and procs[s.name].alive())}
                        for s in self.cfg.servers},
        }


# Undo whatever a move (finished, failed or rolled back) left on a server that is not the
# envs' home. Knows the layout in docs/architecture.md. {envs}: the env names, space-separated.
CLEAN_TARGET = r"""
set -e
for u in $(systemctl list-units --all --plain --no-legend 'strackt-*' | awk '{{print $1}}'); do
  systemctl stop "$u" || true
done
for env in {envs}; do
  units=$(cd /etc/systemd/system && ls -d strackt-env-$env.target strackt-env-$env-*.service strackt-env-$env-*.timer 2>/dev/null || true)
  if [ -n "$units" ]; then systemctl disable $units 2>/dev/null || true; systemctl unmask $units 2>/dev/null || true; fi
  (cd /etc/systemd/system && rm -rf $units strackt-env-$env.target.wants)
  rm -f /etc/strackt/envs/$env.env /etc/caddy/sites/$env.caddy /var/lib/strackt-move/closed/$env
  rm -rf /srv/$env
  id $env >/dev/null 2>&1 && userdel $env || true
  getent group $env >/dev/null && groupdel $env || true
done
systemctl daemon-reload
systemctl reset-failed 'strackt-*' 2>/dev/null || true
rm -rf /root/.strackt-move /usr/local/lib/strackt-move /var/lib/strackt-move/closed /var/lib/strackt-move/backups
if [ -f /root/.ssh/authorized_keys ]; then sed -i '/strackt-move/d' /root/.ssh/authorized_keys; fi
if systemctl is-active -q caddy; then systemctl reload caddy; fi
"""

#: on srv1: what the testbed's deploy wrote for each env and a finished move's retire removes
DEPLOYED_DIR = "/var/lib/strackt-testbed/deployed"

# Kept once the testbed's deploy is done, so a reset after a finished move puts an env back in a
# second instead of a deploy's minute (reset runs after every test that finishes a move).
KEEP_DEPLOYED = r"""
set -e
mkdir -p {deployed} && chmod 700 {deployed}
cd /
for env in {{envs}}; do
  tar -cpf {deployed}/$env.tar etc/caddy/sites/$env.caddy etc/strackt/envs/$env.env \
    $(ls -d etc/systemd/system/strackt-env-$env.* etc/systemd/system/strackt-env-$env-*)
done
""".format(deployed=DEPLOYED_DIR)

# {health}: lines "<env> <domain> <health path> <root>" of the envs that run on the source.
RESTORE_SOURCE = r"""
set -e
for u in $(systemctl list-units --all --plain --no-legend 'strackt-*' | awk '{{print $1}}'); do
  case "$u" in strackt-env-*) ;; *) systemctl stop "$u" || true ;; esac
done
systemctl reset-failed 'strackt-*' 2>/dev/null || true
if mountpoint -q /root/.strackt-move; then umount /root/.strackt-move; fi  # a fault test's small disk
rm -rf /root/.strackt-move /srv/*/.strackt-backup /var/lib/strackt-move/backups
# a finished move retired envs here (units masked, unit files, site and env file removed): put
# back what the testbed's deploy wrote (KEEP_DEPLOYED: the same files; the app and its data stay
# until a retire removes the copy); an env without that copy or without its app is printed, with
# exit 3, and the caller deploys it again. Each env is classified once: kept, restored, redeployed.
restore=
redeploy=
while read -r env domain path root; do
  if [ "$(systemctl is-enabled strackt-env-$env.target 2>&1)" = masked ] || [ ! -f /etc/caddy/sites/$env.caddy ] \
     || [ ! -f /etc/strackt/envs/$env.env ] || [ ! -f /etc/systemd/system/strackt-env-$env.target ] \
     || [ ! -d "$root/app" ]; then
    if [ -f {deployed}/$env.tar ] && [ -d "$root/app" ]; then restore="$restore $env"; else redeploy="$redeploy $env"; fi
  fi
done <<EOF_ENVS
{health}
EOF_ENVS
if [ -n "$restore$redeploy" ]; then
  for env in $restore $redeploy; do
    masks=$(cd /etc/systemd/system && find . -maxdepth 1 -lname /dev/null -name "strackt-env-$env*" -printf '%f\n')
    [ -z "$masks" ] || systemctl unmask $masks >/dev/null
  done
  for env in $restore; do tar -C / -xpf {deployed}/$env.tar; done
  rm -rf /var/lib/strackt-move/retired
  systemctl daemon-reload
  if [ -n "$redeploy" ]; then
    echo $redeploy
    exit 3
  fi
fi
if [ -f /root/.ssh/authorized_keys ]; then sed -i '/strackt-move/d' /root/.ssh/authorized_keys; fi
find /srv/*/app -path '*/migrations/0002_*' -delete 2>/dev/null || true
# the connected database: a test may have restarted it, stopped it or left a rule in pg_hba.conf
hba=/etc/postgresql/15/main/pg_hba.conf
if grep -q 'strackt-move' "$hba"; then sed -i '/strackt-move/d' "$hba"; fi
systemctl is-active -q postgresql.service || systemctl start postgresql.service
if systemctl is-active -q postgresql@15-main; then systemctl reload postgresql@15-main; else systemctl restart postgresql@15-main; fi
for i in $(seq 100); do pg_isready -q && break; sleep 0.1; done
echo "{health}" | while read -r env domain path root; do
  units=$(cd /etc/systemd/system && ls -d strackt-env-$env.target strackt-env-$env-*.service strackt-env-$env-*.timer 2>/dev/null || true)
  systemctl unmask $units >/dev/null 2>&1 || true
  rm -f /var/lib/strackt-move/closed/$env
  systemctl enable --quiet strackt-env-$env.target
  systemctl start strackt-env-$env.target
done
if systemctl is-active -q caddy; then systemctl reload caddy; fi
echo "{health}" | while read -r env domain path root; do
  ok=
  for i in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1$path" -H "Host: $domain"; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || {{ echo "$env did not come back healthy on its home server" >&2; exit 1; }}
done
"""
