"""One status: playbooks/status.yml (through move_record action=get) and `strackt-move status
--json` show the same summary of the same record -- the real playbook, run by ansible-runner on
localhost, against a state dir holding fixture records."""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import ansible_runner
from controller_testlib import REPO, a_pass, new_record, walk_to

from ansible_collections.strackt.move.plugins.module_utils import clock
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_store as ms
from strackt_move import cli
from strackt_move.exit_codes import ExitCode

LONG_AGO = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def _records(state: str) -> None:
    # alpha: verified long ago and still waiting (stale), two passes, a warning
    alpha = walk_to(new_record("alpha", now=LONG_AGO), "verify", now=LONG_AGO)
    alpha.add_pass(a_pass(kind="full", duration=12.5, started_at="2026-01-02T03:04:05Z"))
    alpha.add_pass(mr.SyncPass.from_dict(dict(a_pass(duration=0.75, started_at="2026-01-02T03:05:00Z"),
                                              started_at_ns=int(LONG_AGO.timestamp() + 55) * 10**9 + 5)))
    alpha.wait(now=LONG_AGO + datetime.timedelta(minutes=2))
    alpha.warn("the source runs another commit")
    ms.create(state, alpha)
    # beta: switched, its freeze recorded
    beta = walk_to(new_record("beta", now=LONG_AGO), "awaiting_confirmation", now=LONG_AGO)
    beta.set_dns({"beta.example.test.": ["10.77.0.11"]}, 300, 5)
    beta.transition("cutover", "confirmed by the operator", now=LONG_AGO + datetime.timedelta(hours=1))
    beta.add_pass(a_pass(kind="final", duration=0.3, started_at="2026-01-02T04:04:05Z"))
    beta.set_freeze(mr.Freeze(released_at_ns=int(LONG_AGO.timestamp() + 3601) * 10**9, freeze_s=0.8))
    beta.complete("cutover", now=LONG_AGO + datetime.timedelta(hours=1, seconds=20))
    beta.transition("switched", now=LONG_AGO + datetime.timedelta(hours=1, seconds=20))
    beta.complete("switched", now=LONG_AGO + datetime.timedelta(hours=1, seconds=20))
    ms.create(state, beta)


def _playbook_summaries(tmp_path, state: str) -> dict:
    inventory = tmp_path / "inventory"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    stats: dict = {}
    (tmp_path / "runner").mkdir()

    def on_event(event: dict) -> bool:
        if event.get("event") == "playbook_on_stats":
            stats.update((event.get("event_data") or {}).get("artifact_data") or {})
        return True

    run = ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), project_dir=str(REPO / "playbooks"), playbook="status.yml",
        inventory=str(inventory), quiet=True, event_handler=on_event,
        extravars={"strackt_state_dir": state, "strackt_environments": {"alpha": {}, "beta": {}, "gamma": {}}},
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                 "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
                 "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))},
    )
    assert run.rc == 0, run.stdout.read()
    return stats


def test_the_status_playbook_and_the_cli_give_the_same_summary(tmp_path, capsys):
    state = str(tmp_path / "state")
    _records(state)
    stats = _playbook_summaries(tmp_path, state)
    assert stats["overdue"] == ["alpha"]
    assert stats["moves"]["gamma"] == {}  # no move in progress
    for env in ("alpha", "beta"):
        from_playbook = stats["moves"][env]
        at = clock.parse_ts(from_playbook["as_of"])
        assert cli.run(["--state-dir", state, "status", env, "--json"], now=lambda: at) == ExitCode.OK
        (from_cli,) = json.loads(capsys.readouterr().out)["moves"]
        # the CLI adds who drives the move and what to do next; everything else is the summary
        assert set(from_cli) - set(from_playbook) == {"active", "driver", "next"}
        assert {k: from_cli[k] for k in from_playbook} == from_playbook
    # and the summaries say something: the test compares real figures, not empty shells
    alpha, beta = stats["moves"]["alpha"], stats["moves"]["beta"]
    assert alpha["stale"] and alpha["waiting_s"] > 300 * 24 * 3600 and "has waited" in alpha["stale_message"]
    assert alpha["predicted_freeze_s"] == 0.75 + 1.0 and alpha["sync"]["passes"] == 2
    assert alpha["last_pass_started_ns"] == int(LONG_AGO.timestamp() + 55) * 10**9 + 5
    assert [t["stage"] for t in alpha["stage_timings"]][-1] == "awaiting_confirmation"
    assert (beta["stage"], beta["switched_at"], beta["freeze"]["freeze_s"]) == ("switched", "2026-01-02T04:04:25Z", 0.8)
    assert beta["target_writes_since_ns"] == int(LONG_AGO.timestamp() + 3601) * 10**9
