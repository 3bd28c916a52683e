"""The AWX workflow at the level of ansible-runner, on the testbed (issue 6).

No AWX instance runs here. What AWX does for each job of the workflow in awx/configure.yml is
done by hand, the way AWX does it: a FRESH private data directory per job (AWX's execution
environments are ephemeral), laid out as AWX lays it out:

    project/        the project checkout (ansible.cfg, playbooks/, collections/)
    inventory/hosts an executable inventory script answering --list with the inventory AWX
                    imported (`ansible-inventory --list --export` of the inventory source)
    env/extravars   the job template's extra_vars < the ancestors' set_stats artifacts
                    < the workflow node's extra_data < the workflow's survey answers
    env/envvars     ANSIBLE_HOST_KEY_CHECKING=True (runner would export False)
    artifacts/      written by runner

and the job template's playbook, extra vars and the workflow graph are read from
awx/configure.yml itself. Jobs run in sequence: prepare -> (approval: the gap between jobs; a
scheduled sync pass and a status job run in it) -> cutover -> (approval) -> finish. Each
job's set_stats artifacts (from the playbook_on_stats event's event_data.artifact_data) must
carry move_id, env, target and commit into the next job's extra vars, and each job must find
the move record, which lives on "persistent storage" outside every private data directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from tests.testbed import Testbed
from tests.testbed import gitrepo
from tests.testbed.config import ENV_DOMAIN, ENV_NAME, ENV_SOURCE
from tests.testbed.dns import query_a

pytestmark = pytest.mark.testbed

REPO = Path(__file__).resolve().parents[2]
TARGET = "srv2"
CONFIGURE = REPO / "awx" / "configure.yml"
JOB_TIMEOUT = 900  # a job that waits at a prompt fails instead of hanging
# the finish schedule, shortened: the testbed's window (forwarding quiet 10 s) ends within these
FINISH_LOOKS, FINISH_EVERY_S = 24, 5


def _configure() -> dict[str, Any]:
    return yaml.safe_load(CONFIGURE.read_text())[0]["vars"]


@dataclass
class Job:
    name: str
    status: str
    rc: int
    artifacts: dict[str, Any]
    stdout: str


@dataclass
class Awx:
    """Just enough of AWX to run a workflow's jobs through ansible-runner."""

    bed: Testbed
    root: Path
    state_dir: Path
    config: dict[str, Any] = field(default_factory=_configure)
    job_count: int = 0

    def template(self, name: str) -> dict[str, Any]:
        for template in self.config["strackt_awx_job_templates"]:
            if template["name"] == name:
                return template
        raise KeyError(name)

    def node(self, identifier: str) -> dict[str, Any]:
        for node in self.config["strackt_awx_workflow_nodes"]:
            if node["identifier"] == identifier:
                return node
        raise KeyError(identifier)

    def _project(self, dest: Path) -> None:
        """What AWX's project update checks out (the repository's files a job uses)."""
        dest.mkdir()
        shutil.copy2(REPO / "ansible.cfg", dest / "ansible.cfg")
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "output", "*.tar.gz")
        shutil.copytree(REPO / "playbooks", dest / "playbooks", ignore=ignore)
        shutil.copytree(REPO / "collections", dest / "collections", ignore=ignore)

    def _inventory(self, dest: Path) -> None:
        """AWX imports the inventory source into its database and hands each job a script."""
        exported = subprocess.run(
            ["ansible-inventory", "-i", str(self.bed.inventory_dir), "--list", "--export"],
            env=self.bed.ansible_env(), capture_output=True, text=True, check=True).stdout
        dest.mkdir()
        script = dest / "hosts"
        script.write_text(
            f"#!{sys.executable}\nimport json, sys\nINVENTORY = {json.loads(exported)!r}\n"
            "print(json.dumps(INVENTORY if '--list' in sys.argv else {}))\n")
        script.chmod(0o700)

    def run(self, template_name: str, *, node: str | None = None, survey: dict[str, Any] | None = None,
            artifacts: dict[str, Any] | None = None, extra_data: dict[str, Any] | None = None,
            drop: tuple[str, ...] = ()) -> Job:
        self.job_count += 1
        template = self.template(template_name)
        pdd = self.root / f"job-{self.job_count}"
        assert not pdd.exists()
        pdd.mkdir(mode=0o700)
        self._project(pdd / "project")
        self._inventory(pdd / "inventory")
        extravars: dict[str, Any] = {}
        extravars.update(self.config["strackt_awx_common_extra_vars"])
        extravars.update(template["extra_vars"])
        # on "persistent storage": the same path for every job, outside every private data dir
        extravars["strackt_state_dir"] = str(self.state_dir)
        extravars.update(artifacts or {})
        if node is not None:
            extravars.update(self.node(node).get("extra_data", {}))
        extravars.update(extra_data or {})
        extravars.update(survey or {})
        extravars.update({  # what AWX adds to every job
            "awx_job_id": self.job_count, "tower_job_id": self.job_count,
            "awx_job_template_name": template_name, "awx_workflow_job_name": self.config["strackt_awx_workflow"],
        })
        for name in drop:  # e.g. a template someone configured by hand, without no_prompt
            extravars.pop(name, None)
        (pdd / "env").mkdir()
        (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        envvars = {
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_CONFIG": str(pdd / "project" / "ansible.cfg"),
            "PATH": self.bed.ansible_env()["PATH"],
        }
        (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
        runner = ansible_runner.run(private_data_dir=str(pdd), playbook=template["playbook"],
                                    ident=str(self.job_count), quiet=True, timeout=JOB_TIMEOUT)
        stats = [e for e in runner.events if e.get("event") == "playbook_on_stats"]
        stdout = runner.stdout.read()
        job = Job(template_name, runner.status, runner.rc,
                  stats[-1]["event_data"].get("artifact_data", {}) if stats else {}, stdout)
        # runner kept host key checking on (it exports False unless told)
        assert runner.config.env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
        assert not (self.state_dir.is_relative_to(pdd))
        shutil.rmtree(pdd)  # ephemeral: nothing of this job is left for the next one
        return job


def _ok(job: Job) -> Job:
    assert job.status == "successful" and job.rc == 0, f"{job.name}: {job.status} rc={job.rc}\n{job.stdout[-6000:]}"
    return job


def _record(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "moves" / f"{ENV_NAME}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _health(bed: Testbed, server: str) -> dict[str, Any]:
    req = urllib.request.Request(f"http://{bed.addresses[server]}/health", headers={"Host": ENV_DOMAIN})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def awx(fresh_testbed: Testbed, tmp_path: Path) -> Awx:
    state_dir = tmp_path / "persistent" / "strackt-move"
    state_dir.mkdir(parents=True, mode=0o700)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    return Awx(fresh_testbed, jobs, state_dir)


def test_workflow_jobs_pass_the_move_on_through_artifacts(awx: Awx) -> None:
    bed = awx.bed
    survey = {"env": ENV_NAME, "target": TARGET}
    head = gitrepo.head(bed.cfg)

    # ---- prepare (move.yml): no prompt, ends waiting for the approval ----------------------------
    prepare = _ok(awx.run("strackt.move prepare", node="prepare", survey=survey))
    art = prepare.artifacts
    assert art["env"] == ENV_NAME and art["target"] == TARGET and art["commit"] == head
    assert art["move_id"].startswith(f"{ENV_NAME}-")
    assert art["stage"] == "awaiting_confirmation"
    record = _record(awx.state_dir)
    assert record and record["move_id"] == art["move_id"]
    assert (record["stage"], record["state"]) == ("awaiting_confirmation", "waiting")
    artifacts = dict(art)

    # ---- the approval gap: the scheduled sync and a status job run meanwhile --------------------
    sync = _ok(awx.run("strackt.move sync", extra_data={"env": ENV_NAME}))  # the schedule's extra_data
    assert sync.artifacts["move_id"] == art["move_id"]
    assert sync.artifacts["stage"] == "awaiting_confirmation"
    status = _ok(awx.run("strackt.move status", extra_data={"env": ENV_NAME}))
    assert status.artifacts["moves"][ENV_NAME]["move_id"] == art["move_id"]
    assert (_record(awx.state_dir) or {}).get("state") == "waiting"
    # nothing switched while waiting
    assert query_a(bed.dns_server, ENV_DOMAIN)[0] == [bed.addresses[ENV_SOURCE]]

    # ---- approved: cutover (confirm=true from the node's extra_data) ----------------------------
    assert awx.node("cutover")["extra_data"] == {"confirm": True}
    cutover = _ok(awx.run("strackt.move cutover", node="cutover", survey=survey, artifacts=artifacts))
    for key in ("move_id", "env", "target", "commit"):
        assert cutover.artifacts[key] == art[key], key
    assert cutover.artifacts["stage"] == "switched"
    artifacts.update(cutover.artifacts)
    assert query_a(bed.dns_server, ENV_DOMAIN)[0] == [bed.addresses[TARGET]]
    health = _health(bed, TARGET)
    assert health["commit"] == head and health["server"] == TARGET

    # ---- approved: finish -----------------------------------------------------------------------
    # A finish before it is due (resolvers' caches of the old address, the env's quiet window)
    # measures the stale traffic, records it and changes nothing else; the finish template's AWX
    # schedule runs it again until the move ends.
    for _look in range(FINISH_LOOKS):
        finish = _ok(awx.run("strackt.move finish", node="finish", survey=survey, artifacts=artifacts))
        assert finish.artifacts["env"] == ENV_NAME
        still = _record(awx.state_dir)
        if still is None:
            break
        assert still["stage"] == "switched" and still.get("stale") is not None, still
        time.sleep(FINISH_EVERY_S)
    assert _record(awx.state_dir) is None, "the finish never ended the move"
    archived = json.loads((awx.state_dir / "moves" / "history" / f"{art['move_id']}.json").read_text())
    assert archived["stage"] == "done" and archived["commit"] == head
    keys = bed.ssh(TARGET, "cat /root/.ssh/authorized_keys").stdout
    assert f"strackt-move:{art['move_id']}" not in keys


def test_failure_path_rolls_back_only_the_workflows_own_move(awx: Awx) -> None:
    bed = awx.bed
    # A move started elsewhere (e.g. a workflow launched earlier) is waiting for its approval.
    # Its template lacks no_prompt: under AWX (awx_job_id set) move.yml must not prompt anyway,
    # although runner gives it a pty (a prompt would block until the job timeout).
    first = _ok(awx.run("strackt.move prepare", node="prepare", survey={"env": ENV_NAME, "target": TARGET},
                        drop=("no_prompt",)))
    assert first.artifacts["stage"] == "awaiting_confirmation"
    move_id = first.artifacts["move_id"]

    # A second workflow's prepare is refused (a move is in progress): it publishes no move_id,
    # and its failure path's rollback must leave the first move alone.
    second = awx.run("strackt.move prepare", node="prepare", survey={"env": ENV_NAME, "target": "srv3"})
    assert second.status == "failed"
    assert "move_id" not in second.artifacts
    rollback = _ok(awx.run("strackt.move rollback", node="rollback", survey={"env": ENV_NAME, "target": "srv3"},
                           artifacts=second.artifacts))
    assert "nothing to roll back" in rollback.stdout
    record = _record(awx.state_dir)
    assert record and record["move_id"] == move_id and record["state"] == "waiting"

    # The first workflow's approval is denied (or times out): its failure path rolls back its move.
    rollback = _ok(awx.run("strackt.move rollback", node="rollback", survey={"env": ENV_NAME, "target": TARGET},
                           artifacts=first.artifacts))
    assert _record(awx.state_dir) is None
    archived = json.loads((awx.state_dir / "moves" / "history" / f"{move_id}.json").read_text())
    assert archived["stage"] == "rolled_back"
    assert query_a(bed.dns_server, ENV_DOMAIN)[0] == [bed.addresses[ENV_SOURCE]]
    assert _health(bed, ENV_SOURCE)["server"] == ENV_SOURCE


def test_cutover_never_prompts_nor_switches_without_the_approval(awx: Awx) -> None:
    """The cutover template launched alone, without confirm (and without no_prompt): no prompt
    under AWX, a clear refusal instead."""
    job = awx.run("strackt.move cutover", extra_data={"env": ENV_NAME}, drop=("no_prompt",))
    assert job.status == "failed"
    assert "never automatic" in job.stdout
