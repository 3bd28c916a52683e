"""The cached Debian root filesystem every server boots from (read-only lower layer)."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from .config import CACHE_DIR, ROOTFS_PACKAGES, ROOTFS_SUITE

# Bump when the way the cache is built changes (not only its package list).
BUILD_RECIPE_VERSION = "2"


def cache_key() -> str:
    text = "\n".join((BUILD_RECIPE_VERSION, ROOTFS_SUITE, *sorted(ROOTFS_PACKAGES)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rootfs_path() -> Path:
    return CACHE_DIR / f"rootfs-{cache_key()}"


def ensure_rootfs(log=print) -> Path:
    """Return the cached root filesystem, building it with debootstrap if its package list changed."""
    target = rootfs_path()
    if (target / ".complete").exists():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".build.lock", "w") as lock:
        # Two testbeds booting at once must not both build it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        building = CACHE_DIR / f".building-{cache_key()}"
        if building.exists():
            shutil.rmtree(building)
        log(f"building the servers' root filesystem in {target} (debootstrap, about a minute)")
        cmd = [
            "debootstrap", "--variant=minbase",
            "--include=" + ",".join(ROOTFS_PACKAGES),
            ROOTFS_SUITE, str(building),
        ]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-4000:])
            raise RuntimeError(f"debootstrap failed with exit {result.returncode}; see the output above")
        _trim(building)
        _shrink_mariadb_log(building)
        (building / ".complete").write_text(cache_key() + "\n")
        building.rename(target)
        for stale in CACHE_DIR.glob("rootfs-*"):
            if stale != target and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return target


# MariaDB's installed redo log is 96 MiB: the first write on a server copies all of it into
# the server's overlay (about a second at boot, per `up`). The testbed's servers need little.
MARIADB_SMALL_LOG = """\
# written by the strackt.move testbed's rootfs build: a small redo log for small servers
[mysqld]
innodb_log_file_size = 8M
"""


def _shrink_mariadb_log(root: Path) -> None:
    """Resize the redo log once, in the cached root filesystem (mariadbd resizes it at start)."""
    if not (root / "usr" / "sbin" / "mariadbd").exists():
        return
    (root / "etc" / "mysql" / "mariadb.conf.d" / "60-strackt-testbed-log.cnf").write_text(MARIADB_SMALL_LOG)
    (root / "run" / "mysqld").mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        result = subprocess.run(
            ["chroot", str(root), "/bin/sh", "-c",
             "chown mysql:mysql /run/mysqld && /usr/sbin/mariadbd --bootstrap --user=mysql"],
            input="SELECT 1;\n", text=True, capture_output=True, timeout=300)
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)
    log = root / "var" / "lib" / "mysql" / "ib_logfile0"
    if result.returncode != 0 or log.stat().st_size > 8 * 1024 * 1024:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-4000:])
        raise RuntimeError(f"resizing MariaDB's redo log failed (exit {result.returncode}); see the output above")


def _trim(root: Path) -> None:
    """Drop what must differ per server, so no two servers share an identity."""
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "machine-id").write_text("")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
