"""The house rules of issue 11 that a test can hold: stage events have one writer (the roles),
`move.yml` is built from the stage playbooks, and task files read as lists of steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "strackt" / "move"
PLAYBOOKS = COLLECTION / "playbooks"
ROLES = COLLECTION / "roles"
#: "no role task file over ~100 lines": the limit with the slack the "~" allows
MAX_TASK_FILE_LINES = 110


def _tasks(node: Any) -> Iterator[dict[str, Any]]:
    """Every task of a play list or task list, those inside blocks/rescue/always included."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if any(k in node for k in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")):
            for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
                yield from _tasks(node.get(key, []))
        if "hosts" not in node and "import_playbook" not in " ".join(node):
            yield node


def _writes_a_stage_event(task: dict[str, Any]) -> bool:
    args = task.get("strackt.move.move_record")
    return isinstance(args, dict) and args.get("action") == "stage"


def test_no_playbook_writes_a_stage_event() -> None:
    writers = [f"{path.relative_to(COLLECTION)}: {task.get('name')}"
               for path in sorted(PLAYBOOKS.rglob("*.yml"))
               for task in _tasks(yaml.safe_load(path.read_text()))
               if _writes_a_stage_event(task)]
    assert writers == [], "stage events are the roles' to write (docs/architecture.md)"


def test_every_stage_role_writes_its_own_events() -> None:
    for stage in ("preflight", "provision", "deploy", "sync", "verify", "cutover", "rollback"):
        events = [task for path in sorted((ROLES / stage / "tasks").glob("*.yml"))
                  for task in _tasks(yaml.safe_load(path.read_text()) or [])
                  if _writes_a_stage_event(task)]
        assert events, f"role {stage} records no stage event"


def test_move_is_the_stage_playbooks_imported_in_order() -> None:
    plays = yaml.safe_load((PLAYBOOKS / "move.yml").read_text())
    imported = [p["ansible.builtin.import_playbook"] for p in plays if "ansible.builtin.import_playbook" in p]
    assert imported[:5] == [f"strackt.move.stages.{s}" for s in ("preflight", "provision", "deploy", "sync", "verify")]
    assert imported[5:] == ["strackt.move.cutover"]
    # and nothing else of a stage is repeated there: one play of its own (the confirmation)
    assert len(plays) == len(imported) + 1


def test_task_files_are_lists_of_steps() -> None:
    long_files = {str(p.relative_to(COLLECTION)): n for p in sorted(ROLES.glob("*/tasks/*.yml"))
                  if (n := len(p.read_text().splitlines())) > MAX_TASK_FILE_LINES}
    assert long_files == {}
