"""What the move is compared with: a plain `rsync -a` of the same data, and the naive move
(stop the env, one full rsync of its data paths, start it on the target, update DNS), both on
the same servers.

Both copy with a bench-only ssh key that `bench_key()` installs on the source (the target's
host key pinned, host key checking on) and authorizes on the target, and removes afterwards.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from collections.abc import Iterator

from tests.testbed import Testbed
from tests.testbed import dns as tb_dns
from tests.testbed.config import REPO_ROOT

from .envs import BenchEnv

KEY_DIR = "/root/.strackt-bench"
KEY_COMMENT = "strackt-bench"
SCRATCH = "/srv/strackt-bench-scratch"
# The stages the naive way runs before its timed part: the target provisioned and deployed.
NAIVE_STAGES = ("preflight", "provision", "deploy")


def stage_playbook(stage: str) -> str:
    """The collection's playbook of one stage of a move, as ansible-playbook takes it."""
    return f"strackt.move.stages.{stage}"


@contextlib.contextmanager
def bench_key(testbed: Testbed, source: str, target: str) -> Iterator[str]:
    """A key on `source` that may log in as root on `target`; yields the rsync -e command."""
    src_addr = testbed.addresses[source]
    pub = testbed.ssh(source, f"rm -rf {KEY_DIR} && mkdir -m 700 {KEY_DIR} && ssh-keygen -q -t ed25519 "
                              f"-N '' -C {KEY_COMMENT} -f {KEY_DIR}/id_ed25519 && cat {KEY_DIR}/id_ed25519.pub"
                      ).stdout.strip()
    target_addr = testbed.addresses[target]
    pinned = [line for line in testbed.cfg.known_hosts.read_text().splitlines()
              if target_addr in line.split(" ", 1)[0].split(",")]
    if not pinned:
        raise RuntimeError(f"no host key of {target} ({target_addr}) in {testbed.cfg.known_hosts}")
    testbed.ssh(source, f"umask 077 && cat > {KEY_DIR}/known_hosts", input="\n".join(pinned) + "\n")
    line = f'from="{src_addr}" {pub}'
    testbed.ssh(target, "umask 077 && mkdir -p /root/.ssh && cat >> /root/.ssh/authorized_keys",
                input=line + "\n")
    ssh = (f"ssh -i {KEY_DIR}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={KEY_DIR}/known_hosts "
           f"-o GlobalKnownHostsFile=/dev/null")
    try:
        yield ssh
    finally:
        testbed.ssh(target, f"sed -i '/ {KEY_COMMENT}$/d' /root/.ssh/authorized_keys", check=False)
        testbed.ssh(source, f"rm -rf {KEY_DIR}", check=False)


def _timed(testbed: Testbed, server: str, command: str, timeout: float = 3600, ok: tuple[int, ...] = (0,)) -> float:
    """Run `command` on `server`, timed there (ssh set-up not counted); exit codes `ok` succeed."""
    accept = " || ".join(f"[ $rc -eq {c} ]" for c in ok)
    script = (f"s=$(date +%s.%N); {command} >&2; rc=$?; e=$(date +%s.%N); "
              f"{{ {accept}; }} || exit $rc; python3 -c \"print($e - $s)\"")
    return float(testbed.ssh(server, script, timeout=timeout).stdout.strip().splitlines()[-1])


def _paths(env: BenchEnv) -> str:
    return " ".join(shlex.quote(p) for p in env.data_paths)


#: what a move's pass keeps (hard links, ACLs, xattrs, sparse files, numeric ids): the like-for-like baseline
RSYNC_LIKE_A_PASS = "-aHAXS --numeric-ids"


def bare_rsync(testbed: Testbed, ssh: str, env: BenchEnv, source: str, target: str, flags: str = "-a") -> float:
    """Seconds of a plain `rsync <flags>` of the env's data paths into an empty scratch dir on the
    target (-R: each under its full path there, as several paths need)."""
    testbed.ssh(target, f"rm -rf {SCRATCH} && mkdir -p {SCRATCH}")
    try:
        addr = testbed.addresses[target]
        # 24: a file vanished while it ran (the app under load renames its temporary files)
        return _timed(testbed, source, f"rsync {flags} -R -e {shlex.quote(ssh)} {_paths(env)} root@{addr}:{SCRATCH}/",
                      ok=(0, 24))
    finally:
        testbed.ssh(target, f"rm -rf {SCRATCH}", check=False)


def naive_move(testbed: Testbed, ssh: str, env: BenchEnv, source: str, target: str, log) -> float:
    """The operator's way, timed from stopping the env on the source to the target serving
    through the domain: provision + deploy the target without data (not timed), then stop the
    env (its target unit: every process and timer), one full rsync of its data paths, open its
    site and start it on the target, until it answers its health status, update DNS."""
    state_dir = testbed.cfg.state_dir / "moves"
    extra = ["-e", f"env={env.name}", "-e", f"target={target}", "-e", f"strackt_state_dir={state_dir}",
             "-e", "no_prompt=true"]
    for stage in NAIVE_STAGES:
        cmd = ["ansible-playbook", "-i", str(testbed.inventory_dir), stage_playbook(stage), *extra]
        result = subprocess.run(cmd, env=testbed.ansible_env(), text=True, capture_output=True, cwd=REPO_ROOT)
        log.write(f"\n$ {' '.join(cmd)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"naive baseline: {stage_playbook(stage)} failed; see the bench log")
    unit = env.target_unit
    testbed.ssh(target, f"systemctl stop {unit}")
    addr = testbed.addresses[target]
    started = time.monotonic()
    # -R with the destination /: each data path lands at the same full path on the target
    testbed.ssh(source, f"systemctl stop {unit} && rsync -aR --delete -e {shlex.quote(ssh)} "
                        f"{_paths(env)} root@{addr}:/", timeout=3600)
    # the site answers others than the servers only once deploy's "closed" marker is gone
    testbed.ssh(target, f"rm -f {env.closed_file} && systemctl start {unit} && for i in $(seq 300); do "
                        f"{env.health_check_sh()} && exit 0; sleep 0.05; done; "
                        f"echo '{env.name} did not answer {env.health_status} on {env.health_path}' >&2; exit 1")
    for domain in env.domains:
        tb_dns.set_a(testbed.cfg, testbed.secrets["tsig_secret"], domain, addr)
    return round(time.monotonic() - started, 3)

