"""How one playbook runs: ansible-runner with a private data dir per run.

Every run gets ``{state_dir}/runs/{env}/{utc-stamp}-{name}/`` (0700) as its private data dir, so
artifacts (job_events, stdout, rc) stay for post-mortems. The project dir is the installed
collection's ``playbooks/``; the Ansible settings come as environment variables
(``settings.ANSIBLE_SETTINGS``), among them ``ANSIBLE_HOST_KEY_CHECKING=True``, set explicitly
because ansible-runner's own default turns the check off; the servers' keys come from the
inventory's known_hosts. ssh's master connections of a run live in a directory of that run only
(``ANSIBLE_SSH_CONTROL_PATH_DIR``), so no later run reuses one without checking the host key.
The record store setting goes to the playbook as ``STRACKT_RECORD_STORE`` without a password its
DSN may hold: ansible-runner writes a run's whole environment to ``artifacts/*/command``, so the
password is handed over in a passfile under the state directory that exists for the run's length
only (``record_store_env``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from ansible_collections.strackt.move.plugins.module_utils.fileio import atomic_write

from strackt_move.locks import alive
from strackt_move.settings import ANSIBLE_SETTINGS, Settings

EventHandler = Callable[[dict[str, Any]], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class PlayRequest:
    """One playbook run: which playbook, which extra vars."""

    env: str
    name: str  # short label for the run directory and messages, e.g. "sync"
    playbook: str  # relative to playbooks/ (a chain: its first stage's)
    extravars: dict[str, Any]
    #: several stages in one run: (stage, playbook) in order; the run imports each playbook after a
    #: marker play naming its stage (``chain_playbook``), so events tell which stage they belong to
    chain: tuple[tuple[str, str], ...] = ()


#: the name of the empty play that begins each stage of a chained run
STAGE_MARKER = "strackt-move stage: "
#: a chained run's playbook, in its private data dir
CHAIN_FILE = "chain.yml"
#: joins a chained run's first and last stage in its name: ``preflight-to-verify``
CHAIN_JOIN = "-to-"


def chain_playbook(chain: tuple[tuple[str, str], ...], playbooks_dir: Path) -> str:
    """The playbook of a chained run: per stage a marker play, then the stage's own playbook. One
    ansible-playbook for the stages ``start`` runs to the gate saves its start-up (loading
    ansible-core, the inventory, the collection) per stage; each stage's playbook still reads the
    move record first, so a stage sees what the one before it recorded."""
    lines = ["---", "# written by strackt-move: the stages of this run, in order"]
    for stage, playbook in chain:
        lines += [f"- name: {json.dumps(STAGE_MARKER + stage)}", "  hosts: localhost", "  gather_facts: false",
                  "  tasks: []", f"- name: {json.dumps(stage.capitalize())}",
                  f"  ansible.builtin.import_playbook: {json.dumps(str(playbooks_dir / playbook))}"]
    return "\n".join(lines) + "\n"


def marked_stage(event: dict[str, Any]) -> str | None:
    """The stage a chained run begins with this event (its marker play's start), else None."""
    if event.get("event") != "playbook_on_play_start":
        return None
    name = str((event.get("event_data") or {}).get("play") or "")
    return name[len(STAGE_MARKER):] if name.startswith(STAGE_MARKER) else None


@dataclass
class PlayResult:
    rc: int
    status: str  # successful | failed | canceled | timeout | error
    artifact_data: dict[str, Any] = field(default_factory=dict)  # merged set_stats
    failures: list[str] = field(default_factory=list)  # "host: task: msg"
    private_data_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"


class PlaybookRunner(Protocol):
    def __call__(self, request: PlayRequest, on_event: EventHandler, cancel: CancelCheck) -> PlayResult: ...


def describe_failure(event: dict[str, Any]) -> str | None:
    """``"host: task: message"`` for a failed/unreachable task event, None otherwise."""
    kind = event.get("event")
    if kind not in ("runner_on_failed", "runner_on_unreachable"):
        return None
    data = event.get("event_data") or {}
    if data.get("ignore_errors"):
        return None
    res = data.get("res") or {}
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or kind
    if isinstance(msg, list):
        msg = "; ".join(str(m) for m in msg)
    msg = " ".join(str(msg).split())
    if len(msg) > 400:
        msg = msg[:400] + "…"
    return f"{data.get('host', '?')}: {data.get('task', '?')}: {msg}"


class ResultCollector:
    """Wraps an event handler: keeps set_stats artifact data and failure lines."""

    def __init__(self, on_event: EventHandler) -> None:
        self._on_event = on_event
        self.artifact_data: dict[str, Any] = {}
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            data = (event.get("event_data") or {}).get("artifact_data") or {}
            self.artifact_data.update(data)
        failure = describe_failure(event)
        if failure:
            self.failures.append(failure)
        self._on_event(event)
        return True


def _stamp() -> str:
    return clock.compact_ts(clock.utcnow())


def runner_envvars(settings: Settings, control_path_dir: Path, path: str | None = None) -> dict[str, str]:
    """The environment every controller run gets: the collection, the Ansible settings, this
    run's own ssh control path directory, and a PATH with ansible-playbook on it."""
    bin_dir = str(Path(sys.executable).parent)
    current = path if path is not None else os.environ.get("PATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if bin_dir not in parts and shutil.which("ansible-playbook", path=current) is None:
        parts.insert(0, bin_dir)
    return {
        **ANSIBLE_SETTINGS,
        "ANSIBLE_COLLECTIONS_PATH": str(settings.collections_path),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir),
        "PATH": os.pathsep.join(parts),
    }


#: the runs' passfiles, under the state directory: ``{pid of the controller}-{random}``
PASSFILE_DIR = "pgpass"


def sweep_passfiles(directory: Path) -> None:
    """Remove the passfiles (and atomic_write's temp files) of controllers that are gone: one
    killed with SIGKILL never removed its own. A live controller's are kept."""
    for entry in directory.iterdir() if directory.is_dir() else ():
        pid = entry.name.lstrip(".").split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def record_store_env(setting: str, state_dir: Path) -> Iterator[dict[str, str]]:
    """The environment that gives a playbook run the controller's record store: the setting as
    it is, but a DSN's password moved to a passfile (``PGPASSFILE``, 0600 in
    ``{state_dir}/pgpass/``, 0700) that is removed when the run ends, and by the next run's sweep
    when the controller was killed first. The file store is exported as an empty value (the
    default, which also overrides a value the controller inherited): ``record_store`` is no_log
    and Ansible masks a non-empty value from the environment everywhere in a module's result,
    so a ``file`` would turn env ``profiles`` into ``pro********s``."""
    if setting == ms.FILE_STORE:
        yield {ms.RECORD_STORE_ENV: ""}
        return
    if not ms.is_postgresql(setting):
        yield {ms.RECORD_STORE_ENV: setting}  # the module refuses it, saying what it accepts
        return
    from ansible_collections.strackt.move.plugins.module_utils import move_store_pg

    dsn, password = move_store_pg.without_password(setting)
    if password is None:
        yield {ms.RECORD_STORE_ENV: dsn}
        return
    directory = Path(state_dir) / PASSFILE_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    sweep_passfiles(directory)
    passfile = directory / ("%d-%s" % (os.getpid(), secrets.token_hex(8)))
    try:
        atomic_write(str(passfile), move_store_pg.passfile_line(password))
        yield {ms.RECORD_STORE_ENV: dsn, "PGPASSFILE": str(passfile)}
    finally:
        passfile.unlink(missing_ok=True)


#: ssh binds ``<dir>/<10 hex of ansible's hash>.<16 random>`` while it sets up a master, and a
#: unix socket path holds at most 107 bytes
MAX_CONTROL_PATH_DIR = 107 - 1 - 10 - 17
CONTROL_PATH_NOTE = "ssh-control-path-dir"
#: the ssh control path directories of controller commands, in the runs dir: ``.cp-{pid}-{random}``
#: (hidden: beside the envs' run directories, and no env name starts with a dot)
CONTROL_DIR_PREFIX = ".cp-"
#: where a runs dir's path is too long for a socket: ``<temp dir>/strackt.cp-{pid}-{random}-...``
TEMP_CONTROL_DIR_PREFIX = "strackt" + CONTROL_DIR_PREFIX


def control_path_dir(parent: Path, name: str) -> tuple[Path, bool]:
    """A new ssh control path directory (0700): ``parent/name``, or, when that path is too long
    for a unix socket, a new directory under the system's temp dir named after this controller's
    pid (short: the temp dir's path leaves the rest of the socket's 107 bytes); and whether it
    is the latter."""
    inside = parent / name
    if len(str(inside)) <= MAX_CONTROL_PATH_DIR:
        inside.mkdir(mode=0o700)
        return inside, False
    return Path(tempfile.mkdtemp(prefix="%s%d-" % (TEMP_CONTROL_DIR_PREFIX, os.getpid()))), True


def close_control_paths(directory: Path) -> None:
    """End the ssh master connections in ``directory`` (they would linger for ControlPersist) and
    remove it."""
    for sock in directory.iterdir() if directory.is_dir() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "strackt-move"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10, check=False)
    shutil.rmtree(directory, ignore_errors=True)


def sweep_control_dirs(runs_dir: Path) -> None:
    """End and remove the control path directories of controllers that are gone (a SIGKILLed one
    never closed its own), in the runs dir and in the temp dir; a live controller's are kept, and
    so are other users'."""
    places = ((runs_dir, CONTROL_DIR_PREFIX), (Path(tempfile.gettempdir()), TEMP_CONTROL_DIR_PREFIX))
    for where, prefix in places:
        for entry in where.glob(prefix + "*") if where.is_dir() else ():
            pid = entry.name[len(prefix):].split("-", 1)[0]
            try:
                mine = entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
            except OSError:
                continue
            if mine and pid.isdigit() and not alive(int(pid)):
                close_control_paths(entry)


class AnsibleRunnerBackend:
    """The real ``PlaybookRunner``: ``ansible_runner.run``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._control: tuple[Path, bool] | None = None

    def control_dir(self) -> tuple[Path, bool]:
        """The ssh control path directory of every run of this controller command (and whether it
        is a temporary one): each stage reuses the master connections the stage before opened, a
        handshake per server and stage saved; ``close`` ends them."""
        if self._control is None:
            runs = self.settings.runs_dir
            runs.mkdir(parents=True, exist_ok=True, mode=0o700)
            sweep_control_dirs(runs)
            self._control = control_path_dir(runs, "%s%d-%s" % (CONTROL_DIR_PREFIX, os.getpid(), secrets.token_hex(4)))
        return self._control

    def close(self) -> None:
        """End the command's ssh master connections (at the end of a controller command)."""
        if self._control is not None:
            directory, _temporary = self._control
            self._control = None
            close_control_paths(directory)

    def private_data_dir(self, request: PlayRequest) -> Path:
        base = self.settings.runs_dir / request.env
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.settings.runs_dir, 0o700)
        path = base / f"{_stamp()}-{request.name}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = base / f"{_stamp()}-{request.name}-{suffix}"
        path.mkdir(mode=0o700)
        return path

    def __call__(self, request: PlayRequest, on_event: EventHandler, cancel: CancelCheck) -> PlayResult:
        import ansible_runner  # type: ignore[import-untyped]  # imported here: unit tests of everything else do not need it

        for _stage, name in request.chain or (("", request.playbook),):
            playbook = self.settings.playbooks_dir / name
            if not playbook.is_file():
                return PlayResult(rc=127, status="error", failures=[f"playbook {playbook} does not exist"])
        pdd = self.private_data_dir(request)
        run_playbook = request.playbook
        if request.chain:
            run_playbook = str(pdd / CHAIN_FILE)
            atomic_write(run_playbook, chain_playbook(request.chain, self.settings.playbooks_dir), 0o600)
        control_dir, temporary = self.control_dir()
        if temporary:
            (pdd / CONTROL_PATH_NOTE).write_text(f"{control_dir}\n")
        collector = ResultCollector(on_event)
        kwargs: dict[str, Any] = dict(
            private_data_dir=str(pdd),
            project_dir=str(self.settings.playbooks_dir),
            playbook=run_playbook,
            inventory=str(self.settings.require_inventory()),
            extravars=request.extravars,
            envvars=runner_envvars(self.settings, control_dir),
            event_handler=collector,
            cancel_callback=cancel,
            quiet=True,
            ident=request.name,
            suppress_env_files=True,
        )
        with record_store_env(self.settings.record_store, self.settings.state_dir) as store_env:
            kwargs["envvars"] = {**kwargs["envvars"], **store_env}
            runner = ansible_runner.run(**kwargs)
        rc = runner.rc if isinstance(runner.rc, int) else 1
        result = PlayResult(
            rc=rc,
            status=str(runner.status),
            artifact_data=collector.artifact_data,
            failures=collector.failures,
            private_data_dir=pdd,
        )
        save_result(result)
        return result


RESULT_FILE = "strackt-result.json"


def save_result(result: PlayResult) -> None:
    """Keep what the controller learnt from a run next to runner's artifacts (no secrets:
    set_stats data and failure lines only)."""
    if result.private_data_dir is None:
        return
    path = result.private_data_dir / RESULT_FILE
    payload = {"rc": result.rc, "status": result.status, "artifact_data": result.artifact_data,
               "failures": result.failures}
    atomic_write(str(path), json.dumps(payload, indent=2, sort_keys=True, default=str), 0o600)


def _run_ends_with(run_name: str, name: str) -> bool:
    """Whether the run directory ``<stamp>-<run>`` ran ``name`` last: a run called ``name`` (or
    ``name-2``, a second one in the same second) or a chain ending with it (``preflight-to-name``)."""
    rest = run_name.split("-", 1)[-1]
    head, _, suffix = rest.rpartition("-")
    if head and suffix.isdigit():
        rest = head
    return rest == name or rest.endswith(CHAIN_JOIN + name)


def latest_result(runs_dir: Path, env: str, name: str) -> dict[str, Any] | None:
    """The saved result of the newest successful run of ``env`` that ran ``name`` last."""
    base = runs_dir / env
    if not base.is_dir():
        return None
    for run_dir in sorted(base.iterdir(), reverse=True):
        if not _run_ends_with(run_dir.name, name):
            continue
        try:
            data: dict[str, Any] = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("rc") == 0:
            return data
    return None
