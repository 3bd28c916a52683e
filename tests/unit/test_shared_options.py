"""Options several modules share are defined once: a doc fragment and a spec function that
agree, the modules built from them, and the DNS connection set once per play (module_defaults
of the action group) instead of on each task."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.strackt.move.plugins.doc_fragments import dns as dns_fragment
from ansible_collections.strackt.move.plugins.doc_fragments import environment as env_fragment
from ansible_collections.strackt.move.plugins.doc_fragments import transfer as transfer_fragment
from ansible_collections.strackt.move.plugins.module_utils import dns_records as d
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.environment import environment_argument_spec

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "strackt" / "move"
MODULES = COLLECTION / "plugins" / "modules"
ACTIONS = COLLECTION / "plugins" / "action"
DNS_OPTIONS = ("server", "port", "zone", "tsig_key_name", "tsig_secret", "tsig_algorithm")


def documented(fragment: str) -> dict[str, Any]:
    return yaml.safe_load(fragment)["options"]


@pytest.mark.parametrize("fragment, spec", [
    (dns_fragment.ModuleDocFragment.DOCUMENTATION, d.dns_argument_spec()),
    (transfer_fragment.ModuleDocFragment.DOCUMENTATION, rs.transfer_argument_spec()),
    (env_fragment.ModuleDocFragment.DOCUMENTATION, environment_argument_spec()),
], ids=["dns", "transfer", "environment"])
def test_fragment_and_spec_agree(fragment: str, spec: dict[str, Any]) -> None:
    docs = documented(fragment)
    assert set(docs) == set(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc["type"] == option["type"], name
        assert bool(doc.get("required")) == bool(option.get("required")), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name


def _fragments_of(module: Path) -> list[str]:
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            return yaml.safe_load(node.value.value).get("extends_documentation_fragment", [])
    raise AssertionError(f"{module.name} has no DOCUMENTATION")


def _calls(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    return {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree) if isinstance(node, ast.Call)}


def test_every_module_with_a_shared_option_takes_it_from_the_one_spec() -> None:
    for module in sorted(MODULES.glob("*.py")):
        text, fragments, calls = module.read_text(), _fragments_of(module), _calls(module)
        spelled = set(re.findall(r"^\s+(\w+)=dict\(", text, re.M))
        if "strackt.move.dns" in fragments:
            assert "dns_argument_spec" in calls, module.name
            assert not spelled & set(DNS_OPTIONS), module.name
        if "strackt.move.transfer" in fragments:
            assert "transfer_argument_spec" in calls, module.name
            assert not spelled & set(rs.TRANSFER_OPTIONS), module.name
        # the DNS connection (and its secret) is defined nowhere else
        assert "tsig_secret" not in spelled, module.name
        if "strackt.move.environment" in fragments:
            if (ACTIONS / module.name).exists():
                # run by its action plugin too: the env name rule is checked in the shared work
                assert calls & {"validate_env_name", "find_environment"}, module.name
            else:
                # the env name rule is checked when the module is built
                assert calls & ENV_MODULE_BUILDERS, module.name


#: what builds an env-taking module: env_module, or pg_module (the pg_move_* modules) or definition_module
#: (modules that take the whole strackt_environments), which are built on it
ENV_MODULE_BUILDERS = {"env_module", "pg_module", "definition_module"}


def test_pg_module_is_built_on_env_module() -> None:
    assert "env_module" in _calls(MODULES.parent / "module_utils" / "pg_module.py")


def test_the_dns_action_group_holds_every_dns_module() -> None:
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    with_fragment = sorted(m.stem for m in MODULES.glob("*.py") if "strackt.move.dns" in _fragments_of(m))
    assert with_fragment == ["dns_records"]
    assert sorted(runtime["action_groups"]["dns"]) == with_fragment


def _tasks(node: Any) -> list[dict[str, Any]]:
    """Every task dict in a play/task-list structure, blocks included."""
    found = []
    if isinstance(node, list):
        for item in node:
            found += _tasks(item)
    elif isinstance(node, dict):
        if any(k.startswith("strackt.move.") or k.startswith("ansible.builtin.") for k in node):
            found.append(node)
        for key in ("tasks", "block", "rescue", "always", "pre_tasks", "post_tasks", "handlers"):
            if key in node:
                found += _tasks(node[key])
    return found


def test_no_task_spells_out_the_dns_connection() -> None:
    yml = list(COLLECTION.rglob("*.yml")) + list((REPO / "playbooks").rglob("*.yml"))
    dns_tasks = 0
    for path in yml:
        data = yaml.safe_load(path.read_text())
        for task in _tasks(data):
            args = task.get("strackt.move.dns_records")
            if args is None:
                continue
            dns_tasks += 1
            assert not set(args) & set(DNS_OPTIONS), f"{path}: {task.get('name')} repeats {set(args) & set(DNS_OPTIONS)}"
    assert dns_tasks >= 5  # preflight, cutover, rollback use it


def test_every_play_that_reaches_dns_sets_the_connection_once() -> None:
    playbooks = COLLECTION / "playbooks"
    setting = []
    for path in sorted(playbooks.rglob("*.yml")):
        for play in yaml.safe_load(path.read_text()) or []:
            defaults = (play.get("module_defaults") or {}).get("group/strackt.move.dns")
            if defaults is not None:
                setting.append(path.stem)
                assert set(defaults) == set(DNS_OPTIONS), path
                assert defaults["tsig_secret"] == "{{ strackt_dns_tsig_secret }}"
    assert {"preflight", "cutover", "rollback"} <= set(setting)


def test_mismatches_name_each_wrong_answer() -> None:
    found = {"shop.example.test.": {"addresses": ["10.0.0.3"], "ttl": 5},
             "www.example.test.": {"addresses": [], "ttl": None}}
    assert d.mismatches(found, expect_addresses=["10.0.0.3"]) == ["www.example.test. answers nothing, not 10.0.0.3"]
    assert d.mismatches(found, expect_records={"shop.example.test": ["10.0.0.1"], "www.example.test.": []},
                        zone="example.test.") == ["shop.example.test. answers 10.0.0.3, not 10.0.0.1"]
    assert d.mismatches(found, allow_addresses=["10.0.0.1", "10.0.0.2"]) == \
        ["shop.example.test. answers 10.0.0.3, not only 10.0.0.1, 10.0.0.2"]
    assert d.mismatches(found, allow_addresses=["10.0.0.3"]) == []
    assert d.mismatches(found) == []
    # the order of addresses is not a difference
    two = {"a.example.test.": {"addresses": ["10.0.0.2", "10.0.0.1"]}}
    assert d.mismatches(two, expect_records={"a.example.test.": ["10.0.0.1", "10.0.0.2"]}) == []
