"""The benchmark's --env: option parsing, the env's values from its testbed definition, and the
commands the bench runs for it (without servers: a fake testbed records the commands)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from ansible_collections.strackt.move.plugins.module_utils.environment import CLOSED_DIR, parse_environment

from tests.bench import baselines, dataset, envs, moves, options, report
from tests.bench.load import settled_lost_writes
from tests.testbed import inventory
from tests.testbed.client import DropApp, LostWrite, NotesApp, ShopApp
from tests.testbed.config import REPO_ROOT, TestbedConfig

CFG = TestbedConfig(4)
KNOWN = ("shop", "notes", "drop")


def test_env_defaults_to_shop() -> None:
    assert options.parse([], known_envs=KNOWN).env == "shop"


def test_env_is_taken_with_the_other_options() -> None:
    opts = options.parse(["--env", "notes", "--quick"], known_envs=KNOWN)
    assert (opts.env, opts.quick, opts.files, opts.runs) == ("notes", True, options.QUICK["files"], 1)


def test_an_unknown_env_is_an_error_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        options.parse(["--env", "shopp", "--quick"], known_envs=KNOWN)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--env" in err and "'shopp'" in err and "shop, notes, drop" in err


def test_the_known_envs_are_the_testbed_inventorys() -> None:
    assert list(envs.known_definitions(CFG)) == list(inventory.all_environments(CFG))
    for name in inventory.all_environments(CFG):  # the default list: what the inventory has
        assert options.parse(["--env", name]).env == name


@pytest.mark.parametrize("name, data_dir, uid, domain, health, app", [
    ("shop", "/srv/shop/data", 1100, "shop.example.test", "/health", ShopApp),
    ("notes", "/srv/notes/data", 1101, "notes.example.test", "/up", NotesApp),
    ("drop", "/srv/drop/data", 1102, "drop.example.test", "/healthz", DropApp),
])
def test_each_envs_values_come_from_its_definition(name, data_dir, uid, domain, health, app) -> None:
    env = envs.load(name, CFG)
    assert (env.data_dir, env.uid, env.gid, env.domain, env.health_path, env.health_status) == \
        (data_dir, uid, uid, domain, health, 200)
    assert env.tree == f"{data_dir}/bench"
    assert env.record_file == f"{name}.json"
    first, second = env.new_app(), env.new_app()
    assert type(first) is app and first is not second  # one adapter per client: NotesApp counts writes


@pytest.mark.parametrize("name", KNOWN)
def test_the_names_the_bench_derives_are_the_products(name: str) -> None:
    """The bench names the env's units and files itself; they must be what the product uses."""
    definition = inventory.all_environments(CFG)[name]
    product = parse_environment(name, definition)
    env = envs.BenchEnv.from_definition(name, definition)
    assert env.target_unit == product.target_unit
    assert env.closed_file == product.closed_file and envs.CLOSED_DIR == CLOSED_DIR
    assert env.data_paths == product.data_paths and env.data_dir == product.data_dir
    assert (env.health_path, env.health_status, env.health_timeout_s) == \
        (product.health.path, product.health.status, product.health.timeout)


def test_a_definition_without_what_the_bench_needs_is_refused() -> None:
    definition = dict(inventory.all_environments(CFG)["notes"])
    del definition["uid"]
    with pytest.raises(ValueError, match="no uid"):
        envs.BenchEnv.from_definition("notes", definition)
    with pytest.raises(ValueError, match="no app adapter for env 'blog'.*shop, notes, drop"):
        envs.BenchEnv.from_definition("blog", inventory.all_environments(CFG)["notes"])
    with pytest.raises(ValueError, match="no env 'blog' in the testbed inventory"):
        envs.load("blog", CFG)


@pytest.mark.parametrize("answered, healthy", [("200", True), ("503", False), ("000", False)])
def test_the_health_check_runs_as_shell(tmp_path: Path, answered: str, healthy: bool) -> None:
    """Run the check with a curl that records its arguments and answers `answered`."""
    curl = tmp_path / "curl"
    curl.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\nprintf {answered}\n')
    curl.chmod(curl.stat().st_mode | stat.S_IXUSR)
    env = envs.load("notes", CFG)
    result = subprocess.run(["sh", "-c", env.health_check_sh()], env={**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert (result.returncode == 0) is healthy
    args = (tmp_path / "args").read_text().splitlines()
    assert "Host: notes.example.test" in args and "http://127.0.0.1/up" in args


class FakeTestbed:
    """Records the commands the bench runs on servers; answers with `stdout`."""

    addresses = {"srv1": "10.77.4.11", "srv2": "10.77.4.12"}

    def __init__(self, stdout: str = "") -> None:
        self.commands: list[tuple[str, str]] = []
        self.stdout = stdout

    def ssh(self, server: str, command: str, **_kwargs) -> subprocess.CompletedProcess[str]:
        self.commands.append((server, command))
        return subprocess.CompletedProcess([], 0, self.stdout, "")


def test_the_reference_tree_goes_into_the_envs_data_dir_owned_by_its_user() -> None:
    bed = FakeTestbed("generated")
    dataset.generate(bed, "srv1", envs.load("drop", CFG), 10, 2048)  # type: ignore[arg-type]
    assert bed.commands == [("srv1", "python3 - /srv/drop/data/bench 10 2048 1102 1102")]
    dataset.change(FakeTestbed("5"), "srv1", envs.load("drop", CFG), 5)  # type: ignore[arg-type]


def test_bare_rsync_copies_the_envs_data_paths() -> None:
    bed = FakeTestbed("1.5")
    seconds = baselines.bare_rsync(bed, "ssh -i k", envs.load("notes", CFG), "srv1", "srv2")  # type: ignore[arg-type]
    assert seconds == 1.5
    copy = [c for s, c in bed.commands if s == "srv1"][0]
    assert "rsync -a -R -e 'ssh -i k' /srv/notes/data root@10.77.4.12:" in copy
    # the like-for-like baseline keeps what a move's pass keeps
    bed = FakeTestbed("2.5")
    assert baselines.bare_rsync(bed, "ssh -i k", envs.load("notes", CFG), "srv1", "srv2",  # type: ignore[arg-type]
                                flags=baselines.RSYNC_LIKE_A_PASS) == 2.5
    copy = [c for s, c in bed.commands if s == "srv1"][0]
    assert "rsync -aHAXS --numeric-ids -R -e 'ssh -i k' /srv/notes/data root@10.77.4.12:" in copy


class ProbeTestbed(FakeTestbed):
    """The sync-lag probe's servers: the target sees the probe file or not."""

    def __init__(self, arrives: bool) -> None:
        super().__init__()
        self.arrives = arrives

    def ssh(self, server: str, command: str, **kwargs) -> subprocess.CompletedProcess[str]:
        super().ssh(server, command, **kwargs)
        rc = 0 if server == "srv1" or self.arrives else 1
        return subprocess.CompletedProcess([], rc, "", "")


def test_the_sync_lag_probe_writes_on_the_source_waits_on_the_target_and_cleans_up() -> None:
    bed = ProbeTestbed(arrives=True)
    lag = moves.sync_lag(bed, envs.load("notes", CFG), "srv1", "srv2", 2.0)  # type: ignore[arg-type]
    assert lag is not None and 0 <= lag < 2.0
    (write, wait, remove) = bed.commands
    probe = write[1].split("> ")[1]
    assert write[0] == "srv1" and probe.startswith("/srv/notes/data/.strackt-bench-lag-")
    assert wait[0] == "srv2" and f"test -e {probe}" in wait[1] and "seq 40" in wait[1]
    assert remove == ("srv1", f"rm -f {probe}")
    # not there within the window: no figure (the table shows "> window"), and still cleaned up
    bed = ProbeTestbed(arrives=False)
    assert moves.sync_lag(bed, envs.load("notes", CFG), "srv1", "srv2", 2.0) is None  # type: ignore[arg-type]
    assert bed.commands[-1][1].startswith("rm -f ")


def test_issue_17_targets_are_printed_with_their_value_and_met_or_the_gap() -> None:
    results = {"freeze_s": 0.5, "freeze_p95_s": report.p95([0.25, 0.9, 0.3]), "client_pause_s": 0.4,
               "freeze_client_pause_s": 0.6,
               "sync_lag_waiting_s": None, "sync_lag_window_s": 10.0, "initial_copy_s": 22.0,
               "bare_rsync_s": 20.0, "bare_rsync_haxs_s": 21.0, "initial_copy_vs_haxs": 1.048,
               "start_to_gate_s": 41.5,
               "scaling": [{"files": 20_000, "changed": 100, "final_sync_s": 0.12},
                           {"files": 200_000, "changed": 100, "final_sync_s": 0.16}]}
    assert results["freeze_p95_s"] == 0.9  # of 3 runs: the slowest
    checks = report.met(results)
    assert {k: v for k, v in checks.items() if k.startswith("issue17.")} == {
        "issue17.freeze_p95_s": False, "issue17.client_pause_s": True, "issue17.freeze_client_pause_s": False,
        "issue17.sync_lag_waiting_s": False,
        "issue17.initial_copy_vs_haxs": True, "issue17.start_to_gate_s": False, "issue17.scaling_1m": False}
    rows = {line.split(":")[0]: [c.strip() for c in line.split("|")] for line in report.table(results).splitlines()
            if "|" in line}
    assert rows["freeze_p95_s"][1:] == ["0.900 s", "<= 0.3 s", "NO"]
    assert rows["freeze_client_pause_s"][1:] == ["0.600 s", "<= 0.5 s", "NO"]
    assert rows["sync_lag_waiting_s"][1:] == ["> 10 s (not seen)", "<= 1.0 s", "NO"]
    assert rows["initial_copy_vs_haxs"][1:] == ["1.05", "<= 1.1", "yes"]
    assert rows["scaling_1m"][1:] == ["not measured (largest: 200000 files)", "<= 0.5 s", "NO"]
    assert rows["start_to_gate_s"][1:] == ["41.500 s", "<= 30 s", "NO"]
    # a run at 1M files that meets it; a lag seen in time
    met = report.met({**results, "sync_lag_waiting_s": 0.6,
                      "scaling": [{"files": 1_000_000, "changed": 100, "final_sync_s": 0.3}]})
    assert met["issue17.sync_lag_waiting_s"] and met["issue17.scaling_1m"]
    # a results file without the issue 17 figures prints none of them
    assert "issue 17" not in report.table({"freeze_s": 0.5})


def test_the_table_says_which_env_was_benched() -> None:
    lines = report.table({"env": "notes", "freeze_s": 0.5}).splitlines()
    assert lines[0] == "env: notes"
    assert lines[1].startswith("metric ") and lines[3].startswith("freeze_s: freeze (median of runs) ")
    assert report.table({"freeze_s": 0.5}).splitlines() == lines[1:]  # the table itself as before


class FakeLoad:
    def __init__(self, answers: list[list[LostWrite]]) -> None:
        self.answers = answers

    def lost_writes(self, address: str) -> list[LostWrite]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_lost_writes_are_asked_again_until_settled() -> None:
    rendering = LostWrite(7, "not rendered: the worker has not written its file (yet)")
    load = FakeLoad([[rendering], [rendering], []])
    assert settled_lost_writes([load], "10.77.4.12", within_s=10) == []  # type: ignore[list-item]
    assert load.answers == [[]]
    still = FakeLoad([[rendering]])
    assert settled_lost_writes([still], "10.77.4.12", within_s=0) == [rendering]  # type: ignore[list-item]


def test_the_naive_ways_stage_playbooks_are_the_collections() -> None:
    """The naive way provisions and deploys the target with the collection's stage playbooks
    (they left playbooks/stages/ for the collection once; the bench must name them as they are)."""
    stages = REPO_ROOT / "collections" / "ansible_collections" / "strackt" / "move" / "playbooks" / "stages"
    for stage in baselines.NAIVE_STAGES:
        namespace, collection, *rest = baselines.stage_playbook(stage).split(".")
        assert (namespace, collection) == ("strackt", "move")
        assert (stages.parent / "/".join(rest)).with_suffix(".yml") == stages / f"{stage}.yml"
        assert (stages / f"{stage}.yml").is_file()


def test_levers_are_printed_both_ways_with_their_ratio() -> None:
    from tests.bench import levers

    results = {"freeze_s": 0.5, "levers": {"manifest_compare": {"as_argument_s": 12.0, "as_file_s": 3.0,
                                                                "ratio": 0.25}}}
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in report.table(results).splitlines()
            if "|" in line}
    assert rows["verify's manifest comparison, manifest as a variable (before)"][1] == "12.000 s"
    assert rows["verify's manifest comparison, manifest as a file (now)"][1:3] == ["3.000 s", "ratio 0.25"]
    assert "levers" not in report.table({"freeze_s": 0.5})
    results["levers"].update(app_stop={"graceful_s": 0.4, "kill_s": 0.05, "ratio": 0.125, "kill_lookup_inside_s": 0.2,
                                       "lookup_ratio": 0.25},
                             follower={"with_s": 0.3, "without_s": None, "window_s": 3.0})
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in report.table(results).splitlines()
            if "|" in line}
    assert rows["the env's stop in the freeze, graceful (before; the default)"][1] == "0.400 s"
    assert rows["the env's stop in the freeze, freeze_stop: kill (now, this env)"][1:3] == ["0.050 s",
                                                                                          "ratio 0.12, 0.25 of the before"]
    assert rows["the env's stop in the freeze, kill, its cgroups read inside the freeze (before)"][1] == "0.200 s"
    assert rows["sync lag while waiting, passes only (before)"][1] == "> 3 s (not seen)"
    assert rows["sync lag while waiting, the follower streaming (now)"][1] == "0.300 s"
    results["levers"].update(barrier={"own_s": 0.2, "carried_s": 0.1, "ratio": 0.5},
                             provision_directories={"file_loops_s": 4.0, "one_call_s": 2.0, "ratio": 0.5})
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in report.table(results).splitlines()
            if "|" in line}
    assert rows["the freeze's barrier, a pass of its own after the final pass (before)"][1] == "0.200 s"
    assert rows["the freeze's barrier, carried by the final pass's last run (now)"][1:3] == ["0.100 s", "ratio 0.50"]
    assert rows["provision's directories, a file module run each (before)"][1] == "4.000 s"
    assert rows["provision's directories, one env_directories run (now)"][1:3] == ["2.000 s", "ratio 0.50"]
    # the manifests' root is the directory above the data paths (entries are named relative to it)
    assert levers._root(envs.load("notes", CFG)) == "/srv/notes"


def test_the_barrier_lever_times_the_freezes_own_rsync_runs_both_ways_over_one_master() -> None:
    """What the source runs: the final pass's flags through the move's key and master connection;
    the old way adds a barrier run of its own, the new way asks the guard for it."""
    from tests.bench import levers

    script = levers._barrier_script(envs.load("shop", CFG), "10.0.0.2", "shop-1", repeats=2)
    own, carried = script.split("echo own")[0].split("a=$(date +%s.%N);")[-1], script.split("echo own")[1]
    assert own.count("rsync -lptgoHAXSI") == 2 and "--rsync-path" not in own
    assert carried.count("rsync -lptgoHAXSI") == 1 and "'--rsync-path=strackt-barrier rsync'" in carried
    assert script.count("ControlPath=/run/strackt-bench-barrier/master") == 5  # master, 3 runs, exit
    assert "root@10.0.0.2:data/" in carried and "/root/.strackt-move/shop-1/known_hosts" in script
    # host keys checked on every connection it opens (the master and the three rsync runs' ssh)
    assert re.findall(r"StrictHostKeyChecking=(\w+)", script) == ["yes"] * 4


def test_only_correctness_figures_fail_a_bench_run() -> None:
    slow_but_right = {"freeze_s": 9.0, "freeze_p95_s": 9.5, "start_to_gate_s": 300.0, "failed_requests": 0,
                      "stale_client_failed_requests": 0, "lost_writes": 0}
    assert report.correctness_failures(slow_but_right) == []
    assert report.correctness_failures({**slow_but_right, "failed_requests": 2, "lost_writes": 1}) == [
        "2 failed requests (DNS-following client)", "1 acknowledged writes lost"]
    assert report.correctness_failures({**slow_but_right, "database": {"lost_rows": 0, "lost_files": 3,
                                                                       "tables_equal": False}}) == [
        "3 acknowledged files lost", "the tables differ between the two databases"]
