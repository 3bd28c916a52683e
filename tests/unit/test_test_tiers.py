"""The two tiers of the suite (README: "Two tiers"): `make test` leaves out the tests marked
`extended`, and what it keeps must still prove every promise end to end. This collects the
testbed tests as `make test` selects them (nothing runs) and names, per promise, the test that
proves it, so marking the last such test `extended` fails here rather than going unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# promise -> a test `make test` must run for it
PROMISES = {
    "a move under load, the gate, the switch-over, every acknowledged write kept":
        "tests/integration/test_move_pipeline.py::test_move_then_cutover_keeps_every_write_and_switches_everything",
    "never a surprise switch-over: the gate refuses pending migrations and switches nothing":
        "tests/integration/test_move_pipeline.py::TestOneWaitingMove::test_cutover_refuses_pending_migrations_and_switches_nothing",
    "--check copies nothing":
        "tests/integration/test_move_pipeline.py::TestOneWaitingMove::test_sync_in_check_mode_copies_nothing",
    "a way back before the switch":
        "tests/integration/test_move_pipeline.py::TestOneWaitingMove::test_rollback_before_switch_leaves_the_source_as_it_was",
    "a way back after the switch that keeps the target's writes":
        "tests/integration/test_move_pipeline.py::test_rollback_after_switch_keeps_writes_made_on_the_target",
    "the controller's whole move with a client counting its writes":
        "tests/integration/test_controller.py::test_full_move_with_a_client_writing",
    "the controller resumes after a crash":
        "tests/integration/test_controller.py::test_sigkill_in_deploy_and_in_sync_then_resume",
    "a crash right after the DNS update loses nothing":
        "tests/faults/test_switch_faults.py::test_sigkill_right_after_the_dns_update_then_resume_finishes",
    "a failed switch rolls back by itself":
        "tests/faults/test_faults.py::test_dns_refusing_the_switch_rolls_back_automatically",
    "AWX: the workflow and its approval node":
        "tests/integration/test_awx_jobs.py::test_cutover_never_prompts_nor_switches_without_the_approval",
    "AWX: jobs hand the move on through artifacts":
        "tests/integration/test_awx_jobs.py::test_workflow_jobs_pass_the_move_on_through_artifacts",
    "the database carried along under load":
        "tests/integration/test_move_with_database.py::test_move_with_its_database_under_load",
    "emptying a server under load":
        "tests/integration/test_evacuate.py::test_evacuating_srv1_under_load_survives_a_sigkill_and_refuses_a_second_driver",
    "any app: other stacks move under load":
        "tests/faults/test_any_app_moves.py::test_a_sample_app_moves_under_load_with_the_other_envs_undisturbed",
    "hostile data trees arrive exactly":
        "tests/faults/test_data_fidelity.py::test_every_kind_of_entry_arrives_exactly",
    "bad input is refused and changes nothing":
        "tests/faults/test_bad_inputs.py::test_bad_input_is_refused_and_changes_nothing",
    "DNS updates are signed":
        "tests/faults/test_security.py::test_dns_updates_must_be_signed_with_the_right_key",
    "host key checking stays on":
        "tests/faults/test_security.py::test_a_changed_host_key_stops_the_move",
    "changes stream to the target while it waits":
        "tests/integration/test_follower.py::"
        "test_changes_stream_to_the_target_at_the_gate_again_after_a_freeze_gave_up_and_stop_with_the_switch",
    "the collection works installed, by name":
        "tests/integration/test_galaxy_build.py::test_a_move_runs_from_the_installed_collection_by_name",
    "the quick bench: no failed request, no lost write (issue 17)":
        "tests/integration/test_bench_smoke.py::test_quick_bench_writes_every_key",
}


def _collected(marks: str) -> set[str]:
    """Node ids pytest selects under `-m marks`, as `make test` collects."""
    result = subprocess.run([sys.executable, "-m", "pytest", "tests", "--ignore=tests/unit", "-m", marks,
                             "--collect-only", "-q", "-p", "no:cacheprovider"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return {line for line in result.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def make_test_selects() -> set[str]:
    return _collected("not extended")


@pytest.mark.parametrize("promise", sorted(PROMISES))
def test_make_test_runs_a_test_for_every_promise(make_test_selects: set[str], promise: str) -> None:
    tests = {re.sub(r"\[.*\]$", "", nodeid) for nodeid in make_test_selects}  # any of its cases
    assert PROMISES[promise] in tests, (
        f"`make test` runs no test for {promise!r}: {PROMISES[promise]} is missing or marked extended")


def test_the_extended_tier_is_not_empty_and_not_everything(make_test_selects: set[str]) -> None:
    extended = _collected("extended")
    assert extended and make_test_selects and not extended & make_test_selects
