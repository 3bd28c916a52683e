"""What the fault and bad-input suites share: drive the CLI, snapshot every server, copy and
edit an inventory, check the client lost nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ansible_collections.strackt.move.plugins.module_utils.follower import UNIT_PREFIX as FOLLOW_UNIT_PREFIX
from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME, REPO_ROOT
from tests.testbed.dns import query_a

STRACKT_MOVE = str(REPO_ROOT / ".venv" / "bin" / "strackt-move")


def state_dir(bed: Testbed) -> Path:
    return bed.cfg.state_dir / "moves"  # testbed.reset() clears it


def cli_env(bed: Testbed) -> dict[str, str]:
    env = bed.ansible_env()
    env["STRACKT_STATE_DIR"] = str(state_dir(bed))
    return env


def cli(bed: Testbed, *args: str, inventory: Path | None = None, timeout: float = 900,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [STRACKT_MOVE, "-i", str(inventory or bed.inventory_dir), *args]
    result = subprocess.run(cmd, env={**cli_env(bed), **(env or {})}, cwd=REPO_ROOT, text=True, capture_output=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    print(f"$ strackt-move {' '.join(map(repr, args))}  -> {result.returncode}\n{result.stdout[-4000:]}{result.stderr[-3000:]}")
    return result


def spawn(bed: Testbed, *args: str, inventory: Path | None = None) -> subprocess.Popen[str]:
    cmd = [STRACKT_MOVE, "-i", str(inventory or bed.inventory_dir), *args]
    return subprocess.Popen(cmd, env=cli_env(bed), cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, bufsize=1)


def kill_when(proc: subprocess.Popen[str], marker: str, delay: float = 0.5) -> list[str]:
    """Read the controller's output until ``marker`` shows, then SIGKILL it."""
    seen = read_until(proc, marker)
    time.sleep(delay)  # let the task get going
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return seen


def playbook(bed: Testbed, name: str, *extra: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory or bed.inventory_dir),
           str(REPO_ROOT / "playbooks" / name), "-e", f"strackt_state_dir={state_dir(bed)}", *extra]
    result = subprocess.run(cmd, env=bed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
    print(f"$ ansible-playbook {name} {' '.join(extra)} -> {result.returncode}\n{result.stdout[-3000:]}")
    return result


# ---- the world, before and after -------------------------------------------------------------

SERVER_SNAPSHOT = r"""
echo "unit: $(systemctl is-active strackt-env-{env}.target 2>&1) $(systemctl is-enabled strackt-env-{env}.target 2>&1)"
# the other envs on the server (their workers and timers come and go): which units they have, not their states
echo "units:"; systemctl list-units --all --plain --no-legend 'strackt-*' \
  | awk '$1 ~ /^strackt-env-/ && $1 !~ /^strackt-env-{env}(\.target|-)/ {{print $1; next}} {{print $1, $3, $4}}' | sort
echo "srv:"; ls -la --time-style=+%s /srv
echo "srv tree: $(find /srv/{env} -xdev -printf '%p %m %U %G %s %T@ %l\n' 2>/dev/null | sort | sha256sum)"
echo "authorized_keys: $(cat /root/.ssh/authorized_keys 2>/dev/null | sha256sum)"
echo "key dirs:"; ls -la --time-style=+%s /root/.strackt-move 2>&1 | grep -v '^total'
echo "caddy:"; for f in /etc/caddy/Caddyfile /etc/caddy/sites/*; do echo "$f $(sha256sum < $f 2>&1)"; done
echo "env files:"; ls -la --time-style=+%s /etc/strackt/envs 2>&1
echo "pg_hba:"; grep strackt /etc/postgresql/15/main/pg_hba.conf 2>/dev/null || true
echo "user: $(id {env} 2>&1)"
"""


def _tree(root: Path, skip: tuple[str, ...] = ("runs", "locks")) -> dict[str, str]:
    """Every file under ``root`` (but ``skip``: per-run logs and lock files) with its content hash."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in skip:
            continue
        if path.is_file():  # directories are scaffolding the CLI may create (0700, empty)
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def snapshot(bed: Testbed, extra_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """What a refused command must leave exactly as it was: each server's env unit, /srv,
    authorized_keys, key dirs, caddy sites, env files, pg_hba strackt lines, the env user; the
    DNS answer and TTL; the attachment registry; the move records (state dir without run logs)."""
    snap: dict[str, Any] = {}
    for server in bed.addresses:
        snap[server] = bed.ssh(server, SERVER_SNAPSHOT.format(env=ENV_NAME), check=False).stdout
    snap["dns"] = query_a(bed.dns_server, ENV_DOMAIN)
    snap["environments.yml"] = (bed.inventory_dir / "group_vars" / "all" / "environments.yml").read_text()
    for path in extra_files:
        snap[str(path)] = path.read_text() if path.exists() else None
    snap["state_dir"] = _tree(state_dir(bed))
    return snap


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert not changed, "changed by a refused command:\n" + json.dumps(changed, indent=1, default=str)[:6000]


# ---- inventories -------------------------------------------------------------------------------

def copy_inventory(bed: Testbed, dest: Path) -> Path:
    """A private copy of the testbed's inventory whose attachment registry is its own."""
    shutil.copytree(bed.inventory_dir, dest)
    main = dest / "group_vars" / "all" / "main.yml"
    data = yaml.safe_load(main.read_text())
    data["strackt_environments_file"] = str(dest / "group_vars" / "all" / "environments.yml")
    main.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def edit_vars(inventory: Path, name: str, change: Callable[[dict[str, Any]], Any]) -> None:
    path = inventory / "group_vars" / "all" / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_env(inventory: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    edit_vars(inventory, "environments.yml", lambda d: change(d["strackt_environments"][ENV_NAME]))


# ---- the client ------------------------------------------------------------------------------------

def fetch_json(address: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": ENV_DOMAIN})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def http_status(address: str, domain: str, path: str, timeout: float = 15) -> int:
    """The status a server's front proxy answers for the domain's path, asked at that address."""
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": domain})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def serving(bed: Testbed) -> str:
    """The server the domain points at, as that server says."""
    address = query_a(bed.dns_server, ENV_DOMAIN)[0][0]
    return str(fetch_json(address, "/health")["server"])


def lost_writes(bed: Testbed, client: Client) -> list[int]:
    """Acknowledged writes the server the domain points at now cannot read back."""
    address = query_a(bed.dns_server, ENV_DOMAIN)[0][0]
    acknowledged = client.acknowledged_writes()
    assert acknowledged, f"the client never got a write through: {client.summary()}"
    lost = []
    for i in acknowledged:
        try:
            if fetch_json(address, f"/read/{i}").get("id") != i:
                lost.append(i)
        except Exception:
            lost.append(i)
    return lost


def writer(bed: Testbed) -> Client:
    return Client(bed.dns_server, ENV_DOMAIN, writes_per_s=3, reads_per_s=2).start()


def status(bed: Testbed) -> dict[str, Any]:
    return json.loads(cli(bed, "status", ENV_NAME, "--json").stdout)


def os_environ_index() -> str:
    return os.environ.get("STRACKT_TESTBED_INDEX", "0")


def stop_follower(bed: Testbed, source: str = "srv1") -> None:
    """Stop the follower of the move waiting at the gate (it streams the source's changes while
    the move waits), for a test whose recorded `sync` pass must be the one that meets its fault."""
    bed.ssh(source, f"systemctl stop '{FOLLOW_UNIT_PREFIX}*.service'")


def on(bed: Testbed, server: str, unit: str, script: str) -> None:
    """Run ``script`` on ``server`` as a transient unit (the testbed's reset stops strackt-* units)."""
    bed.ssh(server, f"systemctl stop {unit} 2>/dev/null; systemd-run --quiet --collect --unit={unit} "
                    f"/bin/sh -c {shlex.quote(script)}")


def active(bed: Testbed) -> list[dict[str, Any]]:
    """The moves in progress (`status ENV` also shows archived ones)."""
    return json.loads(cli(bed, "list", "--json").stdout)["moves"]


# ---- following a running command and the servers ------------------------------------------------

def read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    """Read the controller's output until ``marker`` shows (it goes on running)."""
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.rstrip())
        if marker in line:
            return seen
    proc.wait(timeout=30)
    raise AssertionError(f"{marker!r} never showed (exit {proc.returncode}); output:\n" + "\n".join(seen[-60:]))


def finish(proc: subprocess.Popen[str], timeout: float = 900) -> tuple[int, str]:
    """The rest of a spawned command's output and its exit code."""
    out, _ = proc.communicate(timeout=timeout)
    print(out[-6000:])
    return proc.returncode, out


@dataclass
class Answer:
    asked_at: float        # wall clock when the request was sent (comparable with the servers' clocks: one kernel)
    at: float              # monotonic, when the answer (or the failure) came
    server: str | None     # which server answered, None: no healthy answer


class WhoAnswers:
    """Asks one server's front proxy for the env's health every 0.2 s (a visitor with that
    server's address cached) and records every answer."""

    def __init__(self, address: str) -> None:
        import threading
        self.address = address
        self.seen: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.time()
            try:
                server: str | None = str(fetch_json(self.address, "/health")["server"])
            except Exception:
                server = None
            self.seen.append(Answer(asked, time.monotonic(), server))
            self._stop.wait(0.2)

    def __enter__(self) -> "WhoAnswers":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def served_after(self, server: str, since: float) -> float | None:
        """When `server` first answered a request sent after `since` (wall clock), None: never."""
        return next((a.at for a in self.seen if a.asked_at > since and a.server == server), None)


class DnsWatch:
    """Asks the DNS server for the env's domain every 0.2 s and records (addresses, TTL) of each
    answer: what a resolver would have cached, and for how long."""

    def __init__(self, bed: Testbed, domain: str = ENV_DOMAIN) -> None:
        import threading
        self.bed, self.domain = bed, domain
        self.seen: list[tuple[list[str], int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.append(query_a(self.bed.dns_server, self.domain))
            except Exception:
                pass
            self._stop.wait(0.2)

    def __enter__(self) -> "DnsWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def ttls_pointing_at(self, address: str) -> set[int]:
        return {ttl for addresses, ttl in self.seen if address in addresses}


class ForwardingWatch:
    """Marks the moment the target first answered through the source's front proxy (the
    source's forwarder), then runs a fault (a shell command) if given.

    It runs on the source itself (a transient unit, which the testbed's reset stops), asking the
    proxy for the env's health every 0.1 s and writing the wall clock of the first answer that
    came from the target. A request made while the freeze holds is answered as soon as the
    hold is released, so the mark is the release, give or take a request. The fault waits for
    the mark: a check from outside could miss a forwarding window the fault cuts short."""

    UNIT = "strackt-fault-forwarding"
    MARK = "/run/strackt-fault-forwarded"

    def __init__(self, bed: Testbed, source: str, target: str, fault: str = "", timeout_s: int = 600) -> None:
        self.bed, self.source = bed, source
        self.script = (
            f"rm -f {self.MARK}; end=$(( $(date +%s) + {timeout_s} )); "
            f"while [ $(date +%s) -lt $end ]; do "
            f"  case \"$(curl -sS -m 15 -H 'Host: {ENV_DOMAIN}' http://127.0.0.1/health 2>&1)\" in "
            f"    *'\"server\": \"{target}\"'*) date +%s.%N > {self.MARK}; break ;; "
            f"  esac; sleep 0.1; "
            f"done; {fault or 'true'}")

    def __enter__(self) -> "ForwardingWatch":
        self.bed.ssh(self.source, f"systemctl stop {self.UNIT} 2>/dev/null; rm -f {self.MARK}; "
                                  f"systemd-run --quiet --collect --unit={self.UNIT} /bin/sh -c {shlex.quote(self.script)}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bed.ssh(self.source, f"systemctl stop {self.UNIT} 2>/dev/null; true", check=False)

    def forwarded_at(self) -> float | None:
        """Wall clock of the target's first answer through the source (None: it never answered)."""
        out = self.bed.ssh(self.source, f"cat {self.MARK} 2>/dev/null; true", check=False).stdout.strip()
        return float(out) if out else None


def passes(bed: Testbed) -> list[dict[str, Any]]:
    """The sync passes of the move in progress, from its record."""
    record = json.loads((state_dir(bed) / "moves" / f"{ENV_NAME}.json").read_text())
    return list(record.get("sync_passes") or [])
