"""Servers: Debian containers booted with systemd-nspawn on copy-on-write overlays."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from .config import Server, TestbedConfig
from .shell import run

SSHD_CONFIG = """\
# written by the strackt.move testbed
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 50:30:200
# the testbed's own calls share one connection per server (Testbed.ssh), some of them at once
MaxSessions 64
"""


def server_dir(cfg: TestbedConfig, server: Server) -> Path:
    return cfg.state_dir / "servers" / server.name


def root_dir(cfg: TestbedConfig, server: Server) -> Path:
    return server_dir(cfg, server) / "root"


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def mount_overlay(cfg: TestbedConfig, server: Server, rootfs: Path) -> Path:
    base = server_dir(cfg, server)
    upper, work, root = base / "upper", base / "work", base / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    if not is_mounted(root):
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(root)])
    return root


def unmount_overlay(cfg: TestbedConfig, server: Server) -> None:
    root = root_dir(cfg, server)
    if is_mounted(root):
        run(["umount", str(root)], check=False)
        if is_mounted(root):
            run(["umount", "-l", str(root)], check=False)


def personalise(cfg: TestbedConfig, server: Server, root: Path, controller_pubkey: str,
                mask: tuple[str, ...]) -> str:
    """Write the server's identity into its overlay before boot; return its host public key."""
    etc = root / "etc"
    (etc / "hostname").write_text(server.name + "\n")
    hosts = ["127.0.0.1 localhost", f"127.0.1.1 {server.name}"]
    hosts += [f"{s.address} {s.name}" for s in cfg.servers if s.name != server.name]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    resolv = etc / "resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(f"nameserver {cfg.dns_address}\n")

    ssh = etc / "ssh"
    hostkey = ssh / "ssh_host_ed25519_key"
    if not hostkey.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{server.name}", "-f", str(hostkey)])
    (ssh / "sshd_config.d").mkdir(exist_ok=True)
    (ssh / "sshd_config.d" / "strackt-testbed.conf").write_text(SSHD_CONFIG)

    dot_ssh = root / "root" / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    auth = dot_ssh / "authorized_keys"
    auth.write_text(controller_pubkey.strip() + "\n")
    auth.chmod(0o600)

    units = etc / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in mask:
        link = units / unit
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    return (ssh / "ssh_host_ed25519_key.pub").read_text().split()[:2]


#: inotify instances per user the host needs: every booted systemd (and its journald, udev, logind)
#: holds several, and all containers run as the host's root; the kernel's default (128) runs out
#: at about two testbeds, and a container whose systemd cannot get one fails to boot.
INOTIFY_INSTANCES = 1024
_INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_host_limits() -> None:
    """Raise fs.inotify.max_user_instances to INOTIFY_INSTANCES if it is lower (never lowers it)."""
    try:
        current = int(_INOTIFY_SYSCTL.read_text())
        if current < INOTIFY_INSTANCES:
            _INOTIFY_SYSCTL.write_text(f"{INOTIFY_INSTANCES}\n")
    except OSError as exc:  # a read-only /proc/sys: booting may still work with fewer testbeds
        print(f"testbed: could not raise {_INOTIFY_SYSCTL} to {INOTIFY_INSTANCES}: {exc}")


def boot(cfg: TestbedConfig, server: Server, root: Path) -> int:
    """Start the container; return the nspawn PID (its process-group leader)."""
    log = server_dir(cfg, server) / "console.log"
    cmd = [
        "systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit",
        f"--network-namespace-path=/run/netns/{server.netns}", "-M", server.machine,
        "--console=passive",
        # nspawn drops CAP_NET_ADMIN when given a network namespace path; a server administers
        # its own network namespace (nftables rules, e.g. per-address access to Redis), as a
        # real server does. The namespace is the server's own, so the host's is out of reach.
        "--capability=CAP_NET_ADMIN",
    ]
    if server.small_disk:
        cmd.append(f"--tmpfs={server.small_disk}")
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM (nspawn then powers the container off cleanly), SIGKILL only after `timeout`."""
    if not pid_alive(pid):
        reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(50):
        reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
