"""A throwaway PostgreSQL cluster for the record store's tests: initdb in a temp dir, listening on
a Unix socket in that dir only (no TCP port, so testbeds and other runs never clash), password
authentication on (the DSN carries a password, as a real one may), stopped and removed at the end.

The server binaries come from Debian's postgresql package (the Makefile's apt list installs it):
the newest ``/usr/lib/postgresql/*/bin``, else the PATH. initdb refuses to run as root, so as root
the cluster runs as the ``postgres`` user that package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: what a missing server or driver is called on CI (where the tests must run, not be skipped)
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USER = "strackt"
#: a password with the characters a DSN and a passfile must escape
PASSWORD = "pw:with spaces\\and'quote"


def bindir() -> Path | None:
    """The PostgreSQL server's bin directory (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def quote(value: str) -> str:
    """A libpq key=value value, quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Cluster:
    base: Path
    bin: Path
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.base / "data"

    def dsn(self, password: str | None = PASSWORD, dbname: str = "postgres") -> str:
        text = f"host={self.base} port=5432 dbname={dbname} user={USER}"
        return text + (f" password={quote(password)}" if password is not None else "")

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else list(argv)

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self._own(pwfile)
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                                 "--auth-local=scram-sha-256", "--auth-host=reject", "-E", "UTF8", "--no-sync"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        pwfile.unlink()
        opts = f"-c listen_addresses='' -k {self.base} -c fsync=off -c full_page_writes=off -c max_connections=50"
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
                                 "-o", opts, "-w", "-t", "60", "start"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90)

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def _own(self, path: Path) -> None:
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(path, user.pw_uid, user.pw_gid)


def start_cluster() -> Cluster | str:
    """A running cluster, or why there cannot be one (the caller skips, or fails on CI)."""
    found = bindir()
    if found is None:
        return "no PostgreSQL server binaries (initdb): install Debian's postgresql package (make apt does)"
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as (Debian's postgresql package makes it)"
        run_as = "postgres"
    # short: the socket path <base>/.s.PGSQL.5432 must fit in 107 bytes
    base = Path(tempfile.mkdtemp(prefix="strackt-pg-"))
    cluster = Cluster(base, found, run_as)
    cluster._own(base)
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        cluster.stop()
        return f"the throwaway PostgreSQL cluster did not start: {exc.stderr.decode(errors='replace')} {log}"
    return cluster
