"""awx/configure.yml against the awx.awx modules' own argument specs (no AWX instance here).

ansible-lint's `args` rule cannot check awx.awx modules (they build their AnsibleModule through
ControllerAPIModule), so this test does: it takes each module's argument_spec from the module's
main() (in a subprocess, with Ansible's collection loader), templates every awx.awx task of the
playbook with the play's vars (loops expanded) and validates the arguments with Ansible's
ArgumentSpecValidator. It also checks the workflow graph and the job templates' playbooks.

Needs awx.awx in .cache/collections: scripts/install-awx-collection.sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
CONFIGURE = REPO / "awx" / "configure.yml"
AWX_COLLECTIONS = REPO / ".cache" / "collections"
AWX_MODULES = AWX_COLLECTIONS / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"

SPEC_DUMPER = r"""
import json, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
import importlib
from ansible_collections.awx.awx.plugins.module_utils.controller_api import ControllerModule

class Captured(Exception):
    pass

out = {}
for name in sys.argv[2:]:
    mod = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{name}")
    seen = {}
    class Capture:
        def __init__(self, argument_spec=None, **kwargs):
            spec = dict(ControllerModule.AUTH_ARGSPEC)
            spec.update(argument_spec or {})
            # env fallbacks are functions: not JSON, and not needed to validate given arguments
            spec = {k: {o: v for o, v in opts.items() if o != "fallback"} for k, opts in spec.items()}
            seen["spec"] = spec
            seen["kwargs"] = {k: v for k, v in kwargs.items() if k in (
                "mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")}
            raise Captured()
    mod.ControllerAPIModule = Capture
    try:
        mod.main()
    except Captured:
        pass
    out[name] = seen
print(json.dumps(out, default=str))
"""


def _require_awx() -> None:
    if not AWX_MODULES.is_dir():
        pytest.fail("awx.awx is not installed in .cache/collections: run scripts/install-awx-collection.sh")


def _trusted(value: Any) -> Any:
    """The playbook is ours: let its templates render (Ansible 2.19 trusts only tagged strings)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


@pytest.fixture(scope="module")
def play() -> dict[str, Any]:
    data = _trusted(DataLoader().load_from_file(str(CONFIGURE)))
    assert isinstance(data, list) and len(data) == 1
    return data[0]


def _awx_tasks(play: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for task in play["tasks"]:
        for key, value in task.items():
            if key.startswith("awx.awx."):
                found.append((task["name"], key.rsplit(".", 1)[1], task))
    return found


@pytest.fixture(scope="module")
def specs(play: dict[str, Any]) -> dict[str, Any]:
    _require_awx()
    names = sorted({module for _, module, _ in _awx_tasks(play)})
    result = subprocess.run([sys.executable, "-c", SPEC_DUMPER, str(AWX_COLLECTIONS), *names],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _rendered_args(play: dict[str, Any], task: dict[str, Any], module: str) -> list[dict[str, Any]]:
    variables = dict(play["vars"])
    variables["strackt_awx_scm_url"] = "https://git.example.invalid/strackt-move.git"
    templar = Templar(loader=DataLoader(), variables=variables)
    items = [None]
    if "loop" in task:
        items = templar.template(task["loop"])
    defaults = play.get("module_defaults", {}).get("group/awx.awx.controller", {})
    rendered = []
    for item in items:
        templar = Templar(loader=DataLoader(), variables={**variables, "item": item})
        args = {**defaults, **task[f"awx.awx.{module}"]}
        rendered.append(templar.template(args))
    return rendered


def test_every_awx_task_matches_the_module_argument_spec(play, specs):
    checked = 0
    for name, module, task in _awx_tasks(play):
        spec = specs[module]
        validator = ArgumentSpecValidator(spec["spec"], **spec["kwargs"])
        for args in _rendered_args(play, task, module):
            result = validator.validate(args)
            assert not result.error_messages, f"{name} ({module}): {result.error_messages}"
            checked += 1
    assert checked >= 10 + 10  # the single tasks + each job template


def test_job_templates_name_existing_playbooks_and_never_prompt(play):
    templates = play["vars"]["strackt_awx_job_templates"]
    assert {t["playbook"] for t in templates} == {
        "playbooks/move.yml", "playbooks/sync.yml", "playbooks/cutover.yml",
        "playbooks/rollback.yml", "playbooks/status.yml", "playbooks/finish.yml", "playbooks/retire.yml",
        "playbooks/evacuation_plan.yml", "playbooks/evacuate.yml", "playbooks/evacuation_report.yml"}
    for template in templates:
        assert (REPO / template["playbook"]).is_file(), template
    common = play["vars"]["strackt_awx_common_extra_vars"]
    assert common["no_prompt"] is True
    assert "strackt_state_dir" in common


def _schedules(play) -> dict[str, dict[str, Any]]:
    """Each awx.awx.schedule task's arguments, templated with the play's vars, by job template."""
    out = {}
    for _name, module, task in _awx_tasks(play):
        if module == "schedule":
            (args,) = _rendered_args(play, task, module)
            out[args["unified_job_template"]] = args
    return out


def test_the_finish_and_the_due_retires_run_unattended_on_schedules(play):
    """The finish looks every few minutes while a move is switched; the due retires run on their own
    (retire.yml -e due=true: only copies whose retention ended, no confirmation needed, and never a
    prompt under AWX) often enough that a copy outlives its retention by an hour at most."""
    templates = {t["name"]: t for t in play["vars"]["strackt_awx_job_templates"]}
    schedules = _schedules(play)
    finish = schedules["strackt.move finish"]
    assert templates["strackt.move finish"]["playbook"] == "playbooks/finish.yml"
    assert finish["extra_data"] == {"env": play["vars"]["strackt_awx_finish_env"]}
    retire = schedules["strackt.move retire"]
    assert templates["strackt.move retire"]["playbook"] == "playbooks/retire.yml"
    assert retire["extra_data"] == {"env": play["vars"]["strackt_awx_retire_env"], "due": True}
    assert retire["enabled"] is True
    assert "FREQ=HOURLY;INTERVAL=1" in retire["rrule"] or "FREQ=MINUTELY" in retire["rrule"], retire["rrule"]
    # the playbook's own guards: a due run needs no confirm=true, and AWX jobs never prompt
    retire_play = (REPO / "collections/ansible_collections/strackt/move/playbooks/retire.yml").read_text()
    assert "not (confirm | default(false) | bool) and not (due | default(false) | bool)" in retire_play
    assert "awx_job_id is defined" in retire_play


def test_workflow_graph(play):
    nodes = {n["identifier"]: n for n in play["vars"]["strackt_awx_workflow_nodes"]}
    templates = {t["name"] for t in play["vars"]["strackt_awx_job_templates"]}
    for node in nodes.values():
        ujt = node["unified_job_template"]
        if ujt["type"] == "job_template":
            assert ujt["name"] in templates
        for links in node.get("related", {}).values():
            for link in links:
                assert link["identifier"] in nodes, link
    prepare, approve = nodes["prepare"], nodes["approve-cutover"]
    assert prepare["related"]["success_nodes"] == [{"identifier": "approve-cutover"}]
    assert approve["unified_job_template"]["type"] == "workflow_approval"
    assert int(Templar(loader=DataLoader(), variables=play["vars"]).template(
        approve["unified_job_template"]["timeout"])) > 0
    assert approve["related"]["success_nodes"] == [{"identifier": "cutover"}]
    assert nodes["cutover"]["extra_data"] == {"confirm": True}
    # every job and every approval has a failure path to the rollback (finish and rollback: end)
    for ident in ("prepare", "approve-cutover", "cutover", "approve-finish"):
        assert nodes[ident]["related"]["failure_nodes"] == [{"identifier": "rollback"}], ident
    assert nodes["rollback"]["extra_data"] == {"require_move_id": True}


def test_evacuation_workflow_graph(play):
    """plan -> approval (with a timeout) -> evacuate -> report (always); a refused plan or a denied
    approval ends the workflow having changed nothing: no failure path leads to a job."""
    nodes = {n["identifier"]: n for n in play["vars"]["strackt_awx_evacuation_nodes"]}
    templates = {t["name"]: t for t in play["vars"]["strackt_awx_job_templates"]}
    for node in nodes.values():
        ujt = node["unified_job_template"]
        if ujt["type"] == "job_template":
            assert ujt["name"] in templates
        for links in node.get("related", {}).values():
            assert all(link["identifier"] in nodes for link in links), links
    assert nodes["plan"]["related"] == {"success_nodes": [{"identifier": "approve-plan"}]}
    approve = nodes["approve-plan"]
    assert approve["unified_job_template"]["type"] == "workflow_approval"
    assert int(Templar(loader=DataLoader(), variables=play["vars"]).template(
        approve["unified_job_template"]["timeout"])) > 0
    assert approve["related"] == {"success_nodes": [{"identifier": "evacuate"}]}
    assert nodes["evacuate"]["related"] == {"always_nodes": [{"identifier": "report"}]}
    assert templates[nodes["plan"]["unified_job_template"]["name"]]["playbook"] == "playbooks/evacuation_plan.yml"
    assert templates[nodes["evacuate"]["unified_job_template"]["name"]]["playbook"] == "playbooks/evacuate.yml"
    survey = {q["variable"] for q in play["vars"]["strackt_awx_evacuation_survey"]["spec"]}
    assert survey == {"server", "targets", "parallel", "with_database"}
    question = next(q for q in play["vars"]["strackt_awx_evacuation_survey"]["spec"] if q["variable"] == "with_database")
    assert question["default"] == "false" and question["default"] in question["choices"]


def _evacuate_argv(extra: dict[str, Any]) -> list[str]:
    """The controller command playbooks/evacuate.yml runs, templated with its vars and ``extra``."""
    import yaml

    play = yaml.safe_load((REPO / "playbooks" / "evacuate.yml").read_text())[0]
    task = next(t for t in play["tasks"] if t["name"].startswith("Move every env"))
    trusted = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in play["vars"].items()}
    variables = {**trusted, "ansible_inventory_sources": ["/runner/inventory/hosts"],
                 "strackt_state_dir": "/var/lib/strackt-move", **extra}
    templar = Templar(loader=DataLoader(), variables=variables)
    return list(templar.template(trust_as_template(task["ansible.builtin.command"]["argv"])))


def test_the_evacuate_job_runs_the_controller_with_the_approved_plan():
    plan = {"server": "srv1", "complete": True, "targets": ["srv2", "srv3"],
            "placed": [{"env": "shop", "target": "srv2"}, {"env": "drop", "target": "srv3"}], "unplaced": []}
    argv = _evacuate_argv({"server": "srv1", "parallel": 2, "evacuation_plan": plan})
    assert argv == ["strackt-move", "-i", "/runner/inventory/hosts", "--state-dir", "/var/lib/strackt-move",
                    "evacuate", "srv1", "--parallel", "2", "--yes", "--approved-plan", "shop=srv2,drop=srv3"]
    argv = _evacuate_argv({"server": "srv1", "targets": "srv3", "evacuation_plan": plan})
    assert argv[-2:] == ["--to", "srv3"] and argv[argv.index("--parallel") + 1] == "1"
    # a plan made with the databases is carried out with them; the survey's answer is a string
    assert "--with-database" not in _evacuate_argv({"server": "srv1", "evacuation_plan": plan, "with_database": "false"})
    argv = _evacuate_argv({"server": "srv1", "evacuation_plan": {**plan, "with_database": True}})
    assert argv[-1] == "--with-database"
    argv = _evacuate_argv({"server": "srv1", "evacuation_plan": plan, "with_database": "true"})
    assert argv[-1] == "--with-database"
    # the plan job publishes what the evacuate job reads
    plan_play = (REPO / "collections/ansible_collections/strackt/move/playbooks/evacuation_plan.yml").read_text()
    assert "evacuation_plan: \"{{ evacuation.plan }}\"" in plan_play


def test_syntax_check() -> None:
    _require_awx()
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{AWX_COLLECTIONS}:{REPO / 'collections'}"
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    result = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", str(CONFIGURE)],
                            env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schedules_name_no_env_by_default(play):
    """No product default knows an env (the testbed's sample app included): each per-env schedule is
    created only once the operator names its env."""
    text = CONFIGURE.read_text()
    assert "shop" not in text
    for kind in ("sync", "finish", "retire"):
        assert play["vars"][f"strackt_awx_{kind}_env"] == "", kind
    schedules = [task for _name, module, task in _awx_tasks(play) if module == "schedule"]
    assert len(schedules) == 3
    for task in schedules:
        (env_var,) = {k for k in ("sync", "finish", "retire") if f"strackt_awx_{k}_env" in str(task["awx.awx.schedule"])}
        assert task.get("when") == f"strackt_awx_{env_var}_env | length > 0", task


def _task_args(play: dict[str, Any], module: str, name_starts: str, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task of ``module`` whose name starts so, and its (first item's) arguments templated with
    the play's vars and ``overrides``."""
    task = next(t for n, m, t in _awx_tasks(play) if m == module and n.startswith(name_starts))
    return task, _rendered_args({**play, "vars": {**play["vars"], **overrides}}, task, module)[0]


def test_the_record_store_credential_type_is_the_documented_one_and_keeps_the_password_in_a_file(play):
    """awx/configure.yml creates the credential type docs/record-store.md describes; AWX renders its
    injectors per job: the DSN in the environment, the password only in a libpq passfile."""
    import jinja2
    import yaml

    _task, args = _task_args(play, "credential_type", "Credential type of the PostgreSQL record store")
    doc = (REPO / "docs" / "record-store.md").read_text()
    block = doc[doc.index("# Administration → Credential Types → Add"):]
    documented = yaml.safe_load(block[:block.index("```")])
    assert args["name"] == documented["name"] and args["kind"] == "cloud"
    assert args["inputs"] == documented["inputs"]
    assert args["injectors"] == documented["injectors"]
    assert "password" not in json.dumps(args["injectors"]["env"])
    # as AWX renders them (Jinja2, the credential's inputs and tower.filename)
    inputs = {"dsn": "postgresql://strackt@db/strackt", "password": r"p:w\d", "tower": {"filename": "/tmp/pgpass"}}
    line = jinja2.Template(args["injectors"]["file"]["template"]).render(**inputs)
    assert line == r"*:*:*:*:p\:w\\d"
    env = {k: jinja2.Template(v).render(**inputs) for k, v in args["injectors"]["env"].items()}
    assert env == {"STRACKT_RECORD_STORE": "postgresql://strackt@db/strackt", "PGPASSFILE": "/tmp/pgpass"}


def test_the_job_templates_carry_the_record_store_credential_only_when_a_store_is_given(play):
    task, _args = _task_args(play, "credential", "Record store credential")
    assert task["when"] == "strackt_awx_record_store_dsn | length > 0" and task["no_log"] is True
    names = (play["vars"]["strackt_awx_machine_credential"], play["vars"]["strackt_awx_vault_credential"])
    _task, args = _task_args(play, "job_template", "Job templates")
    assert args["credentials"] == list(names)
    dsn = "postgresql://strackt@db.example.net/strackt?sslmode=verify-full"
    _task, args = _task_args(play, "job_template", "Job templates", strackt_awx_record_store_dsn=dsn)
    assert args["credentials"] == [*names, play["vars"]["strackt_awx_record_store_credential"]]
    _task, args = _task_args(play, "credential", "Record store credential", strackt_awx_record_store_dsn=dsn,
                             strackt_awx_record_store_password="s3cret")
    assert args["inputs"] == {"dsn": dsn, "password": "s3cret"} and args["update_secrets"] is True
    assert args["credential_type"] == play["vars"]["strackt_awx_record_store_credential_type"]
