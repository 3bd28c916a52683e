"""The control-node modules (move_record, env_info) run by their action plugins in a real
ansible-playbook: in Ansible's worker, no module payload sent, the same results as the module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Describe the env
      strackt.move.env_info:
        env: shop
        environments: {environments}
      register: described
    - name: Start a record
      strackt.move.move_record: &create
        state_dir: {state}
        env: shop
        action: create
        source: srv1
        target: srv2
        source_address: 10.77.0.11
        target_address: 10.77.0.12
        commit: "{commit}"
      register: created
    - name: Start it again (refused)
      strackt.move.move_record: *create
      register: refused
      ignore_errors: true
    - name: A check-mode stage event changes nothing
      strackt.move.move_record:
        state_dir: {state}
        env: shop
        action: stage
        stage: preflight
        event: completed
      check_mode: true
      register: checked
    - name: Show what came back
      ansible.builtin.debug:
        msg: "RESULTS {{{{ [described, created, refused, checked] | to_json }}}}"
"""


def test_the_action_plugins_run_in_the_worker_with_the_modules_results(tmp_path: Path) -> None:
    from tests.unit.test_env_info import shop  # one sample definition for the unit tests

    state = tmp_path / "state"
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(environments=json.dumps({"shop": shop()}), state=state, commit="a" * 40))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    ran = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-vvv", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                          str(play)], env=env, text=True, capture_output=True, timeout=120, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    # a module would be sent as a payload (AnsiballZ_<name>.py); the action plugins send nothing
    assert "AnsiballZ_move_record" not in ran.stdout and "AnsiballZ_env_info" not in ran.stdout
    line = next(l for l in ran.stdout.splitlines() if "RESULTS " in l)
    described, created, refused, checked = json.loads(line.split("RESULTS ", 1)[1].rstrip('"').replace('\\"', '"'))
    assert described["environment"]["target_unit"] == "strackt-env-shop.target"
    assert created["changed"] and created["record"]["stage"] == "preflight"
    assert refused["failed"] and "already in progress" in refused["msg"]
    assert checked["changed"] and json.loads((state / "moves" / "shop.json").read_text())["stage"] == "preflight"
    history = json.loads((state / "moves" / "shop.json").read_text())["history"]
    assert [e["event"] for e in history] == ["started"], "check mode wrote the record"
    assert (state / "moves" / "shop.json").stat().st_mode & 0o777 == 0o600
