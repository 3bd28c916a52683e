"""Manifests kept in files on the control node (issue 17): the manifest and data_check action
plugins in a real ansible-playbook - the walk on the host, the file 0600 in Ansible's local
temporary directory (gone when the run ends), the comparison and the repair plan on the control
node, with the module's words for what differs and for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    here: {{root: "{a}", paths: ["{a}/data"]}}
    there: {{root: "{b}", paths: ["{b}/data"]}}
  tasks:
    - name: The source's manifest, kept in a file
      strackt.move.manifest: {{root: "{{{{ here.root }}}}", paths: "{{{{ here.paths }}}}", save: true, return_entries: false}}
      register: saved
    - name: The file is there while the run goes on
      ansible.builtin.stat: {{path: "{{{{ saved.manifest_file }}}}"}}
      register: saved_file
    - name: A copy that matches
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/data"], expected_file: "{{{{ saved.manifest_file }}}}",
                               return_entries: false}}
      register: same
    - name: A copy that differs
      strackt.move.manifest: {{root: "{b}", paths: ["{b}/data"], expected_file: "{{{{ saved.manifest_file }}}}"}}
      register: differs
      ignore_errors: true
    - name: The other side, kept too
      strackt.move.manifest: {{root: "{b}", paths: ["{b}/data"], save: true, return_entries: false}}
      register: other
    - name: What to repair, from the two files
      strackt.move.data_check:
        env_root: "{a}"
        data_paths: ["{a}/data"]
        source_manifest_file: "{{{{ saved.manifest_file }}}}"
        target_manifest_file: "{{{{ other.manifest_file }}}}"
      register: plan
    - name: Not a manifest file
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/data"], expected_file: "{a}/data/f1"}}
      register: bogus
      ignore_errors: true
    - name: Both ways at once
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/data"], expected: [], expected_file: "{{{{ saved.manifest_file }}}}"}}
      register: both
      ignore_errors: true
    - name: data_check without the target
      strackt.move.data_check: {{env_root: "{a}", data_paths: ["{a}/data"], source_manifest_file: "{{{{ saved.manifest_file }}}}"}}
      register: half
      ignore_errors: true
    - name: Settling (changed since the instant given) passes, unless strict
      strackt.move.manifest: {{root: "{b}", paths: ["{b}/data"], expected_file: "{{{{ saved.manifest_file }}}}",
                               changed_since_ns: 0, strict: true, return_entries: false}}
      register: strict
      ignore_errors: true
    - name: A walk that fails on the host, with save
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/nowhere"], save: true}}
      register: walk_failed
      ignore_errors: true
    - name: In check mode too
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/data"], expected_file: "{{{{ saved.manifest_file }}}}",
                               return_entries: false}}
      check_mode: true
      register: checked
    - name: An option it does not have
      strackt.move.manifest: {{root: "{a}", paths: ["{a}/data"], save: true, bogus: 1}}
      register: unknown
      ignore_errors: true
    - name: Show what came back
      ansible.builtin.debug:
        msg: "RESULTS {{{{ [saved, saved_file.stat, same, differs, other, plan, bogus, both, half, strict, walk_failed,
                         checked, unknown] | to_json }}}}"
"""


def test_manifests_kept_in_files_are_compared_on_the_control_node(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "data" / "d").mkdir(parents=True)
    for i in range(50):
        (a / "data" / "d" / f"f{i}").write_text(f"content {i}\n")
    (a / "data" / "f1").write_text("one\n")
    # hostile names: bytes that are not UTF-8, a newline. As a module's output such a name made
    # ansible-core refuse the whole result; as a file it is compared like any other
    os.mkdir(os.fsencode(a / "data") + b"/dir\xe9")
    Path(os.fsdecode(os.fsencode(a / "data") + b"/dir\xe9/\xff\xfe.bin")).write_text("odd\n")
    (a / "data" / "new\nline").write_text("nl\n")
    shutil.copytree(a, b, symlinks=True)
    (b / "data" / "d" / "f7").write_text("changed on b\n")
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(a=a, b=b))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local-tmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote-tmp"))
    ran = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-vvv", "-i", "localhost,",
                          "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
                         env=env, text=True, capture_output=True, timeout=180, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    line = next(l for l in ran.stdout.splitlines() if "RESULTS " in l)
    saved, saved_stat, same, differs, other, plan, bogus, both, half, strict, walk_failed, checked, unknown = json.loads(
        line.split("RESULTS ", 1)[1].rstrip('"').replace('\\"', '"'))

    # the entries stayed out of the result, in a 0600 file of the run's local temporary directory
    assert "entries" not in saved and saved["summary"]["files"] == 53
    assert saved["manifest_file"].startswith(str(tmp_path / "local-tmp") + "/")
    assert saved_stat["exists"] and saved_stat["mode"] == "0600"
    assert not Path(saved["manifest_file"]).exists(), "the manifest outlived the playbook run"
    # the module walked on the host, the comparison ran here and says what the module says
    assert "AnsiballZ_manifest" in ran.stdout and "AnsiballZ_data_check" not in ran.stdout
    assert not same.get("failed") and same["comparison"]["equal"] and "entries" not in same
    assert differs["failed"] and differs["comparison"]["difference_count"] == 1
    assert "data/d/f7: differs in" in differs["msg"] and "Run another sync pass" in differs["msg"]
    assert len(differs["entries"]) == 56  # return_entries (the default without save) still returns them
    assert plan["needs_repair"] and plan["changes"] == {str(a / "data"): {"copy": ["d/f7"], "delete": []}}
    assert bogus["failed"] and "is not a manifest file" in bogus["msg"] and str(a / "data" / "f1") in bogus["msg"]
    assert both["failed"] and "mutually exclusive" in both["msg"]
    assert half["failed"] and half["msg"] == "give exactly one of target_entries and target_manifest_file"
    # the module's rules and words hold through the files: strict refuses what is still settling
    assert strict["failed"] and strict["comparison"]["consistent"] and strict["comparison"]["settling"] == 1
    assert "1 entries still settling (changed on the source after the last pass)" in strict["msg"]
    assert walk_failed["failed"] and walk_failed["msg"].startswith("cannot make the manifest")
    assert not checked.get("failed") and checked["comparison"]["equal"]
    assert same["summary"]["entries"] == 56  # the hostile names too
    assert unknown["failed"] and unknown["msg"].startswith("Unsupported parameters for (manifest) module: bogus")
    # the file the module wrote on the host went with Ansible's remote temporary directory
    assert not list((tmp_path / "remote-tmp").rglob("manifest.json"))
