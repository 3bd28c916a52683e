"""The benchmark's sequence for one env (--env): testbed up, reference data, bare rsync, the
moves under load, the naive baseline, the final-sync scaling series; then the table and the JSON."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

from tests.testbed import Testbed
from tests.testbed.config import ENV_SOURCE

from . import baselines, dataset, envs, levers, moves, options, report
from .database import BenchDatabase, lag_before_freeze
from .envs import BenchEnv
from .load import Load, settled_lost_writes

TARGET = "srv2"
SETTLE_AFTER_SWITCH_S = 3.0   # the clients keep going this long after the move finished
#: how long the stale-cache client's resolver keeps the old address after the switch before it asks
#: again (a stretched TTL): the old server forwards it meanwhile, and the finish waits for the quiet
#: window after its last request. Short, as the testbed's forwarding settings are.
STALE_TAIL_S = 20.0


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


@contextlib.contextmanager
def client_load(testbed: Testbed, opts: options.Options, env: BenchEnv) -> Iterator[tuple[Load, Load]]:
    """The DNS-following client and the stale-cache client (pinned to the source until its tail
    ends: `Load.re_resolve_after`), running."""
    live = Load(testbed.dns_server, env.domain, opts.writes_per_s, opts.reads_per_s, new_app=env.new_app).start()
    stale = Load(testbed.dns_server, env.domain, max(1.0, opts.writes_per_s / 10),
                 max(1.0, opts.reads_per_s / 10), pinned_address=testbed.addresses[ENV_SOURCE],
                 new_app=env.new_app).start()
    try:
        yield live, stale
    finally:
        live.stop()
        stale.stop()


def move_under_load(testbed: Testbed, opts: options.Options, env: BenchEnv, log,
                    database: BenchDatabase | None = None, lag_without_follower: bool = False) -> dict[str, Any]:
    """One move srv1 -> srv2, switch to finish, while a DNS-following client and a stale-cache client
    run: the stale one keeps srv1's address STALE_TAIL_S past the switch (srv1 forwards it), then
    follows the DNS; `finish --wait` ends the forwarding by itself after the quiet window.
    ``database``: the env's database moves too; then the finish (which ends the way back) comes once
    the writes stopped and both databases were compared. ``lag_without_follower``: after the sync
    lag probe, a second one with the move's follower stopped (the follower lever's "before")."""
    testbed.reset()
    moves.wait_healthy(testbed, ENV_SOURCE, env)
    lag: list[float | None] = []
    barrier: dict[str, Any] = {}

    def at_the_gate() -> None:
        lag.append(moves.sync_lag(testbed, env, ENV_SOURCE, TARGET, opts.lag_window_s))
        if lag_without_follower:
            lag.append(moves.sync_lag_passes_only(testbed, env, ENV_SOURCE, TARGET, opts.lag_window_s))
            # the barrier's lever needs the move's key and the target's guard: timed here, once
            move_id = moves.figures(testbed, env).move_id
            barrier.update(levers.barrier_with_final_pass(testbed, env, ENV_SOURCE, TARGET, move_id,
                                                          repeats=3 if opts.quick else 5))
            say(f"  lever: the barrier as a pass of its own {barrier['own_s']} s, carried by the final "
                f"pass {barrier['carried_s']} s (one file copied each time)")

    with client_load(testbed, opts, env) as (live, stale):
        figures = moves.move(testbed, log, env, TARGET, with_database=database is not None,
                             before_confirm=at_the_gate)
        if database is None:
            stale.re_resolve_after(STALE_TAIL_S)
            finished = moves.finish(testbed, log, env, figures.move_id)
        time.sleep(SETTLE_AFTER_SWITCH_S)
    # the writes stopped: both databases must hold the same rows (the old one follows the new
    # until the finish ends the way back)
    tables = database.tables_at_switch(testbed) if database is not None else None
    if database is not None:
        finished = moves.finish(testbed, log, env, figures.move_id)
    diag = testbed.ssh(ENV_SOURCE, "cat /root/.strackt-move/*/journal/state.json; echo; "
                                   "tr '\\0' '\\n' < /root/.strackt-move/*/journal/events | grep -vc barrier",
                       check=False)
    log.write(f"journal on {ENV_SOURCE}: {diag.stdout} {diag.stderr}\n")
    acknowledged = live.acknowledged_writes() + stale.acknowledged_writes()
    missing = settled_lost_writes([live, stale], testbed.addresses[TARGET])
    for lost in missing[:20]:
        log.write(f"lost write: {lost}\n")
    for req in (live.failed() + stale.failed())[:20]:
        log.write(f"failed request: {req}\n")
    requests = live.requests + stale.requests
    extra: dict[str, Any] = {}
    if database is not None and tables is not None:
        # the app's read-back: 404 "order N not found" is a lost row, "file ... is missing" a lost file
        extra["database"] = {
            "freeze_database_s": figures.freeze_parts.get("database_s"),
            "switch": figures.freeze_parts.get("database"),
            "lag_before_freeze": lag_before_freeze(figures.passes),
            "lost_rows": sum(1 for w in missing if "not found" in w.problem),
            "lost_files": sum(1 for w in missing if "is missing" in w.problem),
            # neither: the read-back itself failed (e.g. 500), counted in lost_writes too
            "unread": sum(1 for w in missing if "not found" not in w.problem and "is missing" not in w.problem),
            "tables_equal": tables["equal"], "tables": tables["tables"],
            "tables_differing": tables["tables_differing"],
            "checksums": tables[database.new_server],
        }
        if not tables["equal"]:
            log.write(f"tables differ: {tables}\n")
        # after the read-back through the new server (it puts srv2's PostgreSQL back as a new
        # server has it, for the next run); the finish removed the move's replication already
        database.clean(testbed)
    # the stale client's requests the old server took after the switch: forwarded, answered by the target
    forwarded = [r for r in stale.requests if r.address == testbed.addresses[ENV_SOURCE] and r.server == TARGET]
    # the pause the DNS-following client felt: its slowest request beyond its usual latency
    latencies = [r.latency_s for r in live.requests]
    usual = statistics.median(latencies) if latencies else 0.0
    # where the client's pause came from: its slowest requests, started relative to the freeze's hold
    held_ns = figures.freeze_parts.get("held_at_ns")
    released_ns = figures.freeze_parts.get("released_at_ns")
    # the requests the freeze held or slowed: running at some instant between the hold and the release
    over_freeze = ([r.latency_s for r in live.requests if r.at <= released_ns / 1e9 and r.at + r.latency_s >= held_ns / 1e9]
                   if held_ns and released_ns else [])
    slowest = [{"kind": r.kind, "latency_s": round(r.latency_s, 3), "status": r.status, "server": r.server,
                "started_vs_hold_s": round(r.at - held_ns / 1e9, 3) if held_ns else None}
               for r in sorted(live.requests, key=lambda r: r.latency_s, reverse=True)[:3]]
    return {**extra,
        "move_id": figures.move_id,
        "freeze_s": figures.freeze_s,
        "final_sync_s": figures.final_sync_s,
        "initial_copy_s": figures.initial_copy_s,
        "passes": figures.passes,
        "freeze_parts": figures.freeze_parts,
        "requests": len(live.requests),
        "stale_requests": len(stale.requests),
        "failed_requests": len(live.failed()),
        "stale_client_failed_requests": len(stale.failed()),
        "stale_requests_forwarded": len(forwarded),
        "stale_tail_s": STALE_TAIL_S,
        "stale_measured": finished.stale,
        "finish_after_switch_s": finished.finish_s,
        "writes_acknowledged": len(acknowledged),
        "lost_writes": len(missing),
        "max_request_latency_s": round(max((r.latency_s for r in requests), default=0.0), 3),
        "median_request_latency_s": round(usual, 3),
        "client_pause_s": round(max(latencies, default=0.0) - usual, 3),
        "slowest_requests": slowest,
        "freeze_client_pause_s": round(max(over_freeze) - usual, 3) if over_freeze else None,
        "requests_over_freeze": len(over_freeze),
        "sync_lag_waiting_s": lag[0] if lag else None,
        **({"sync_lag_passes_only_s": lag[1]} if len(lag) > 1 else {}),
        **({"barrier_lever": barrier} if barrier else {}),
        "start_s": figures.start_s,
        "copy_before_gate_s": figures.copy_before_gate_s,
        "start_to_gate_s": (round(figures.start_s - figures.copy_before_gate_s, 1)
                            if figures.start_s is not None and figures.copy_before_gate_s is not None else None),
        "servers": sorted({r.server for r in requests if r.server}),
    }


def scaling_point(testbed: Testbed, opts: options.Options, env: BenchEnv, files: int, log) -> dict[str, Any]:
    """final_sync_s of a move of a tree of `files` files with `scaling_changed` changed before
    the switch (no client load: this is about the copy)."""
    say(f"scaling: a tree of {files} files on {ENV_SOURCE}")
    testbed.reset()
    dataset.generate(testbed, ENV_SOURCE, env, files, files * 2048)
    moves.wait_healthy(testbed, ENV_SOURCE, env)
    changed: list[int] = []
    # no catch-up pass before the freeze here: it would copy the changed files itself and leave
    # the final pass nothing to do; this measures the final pass with them
    no_catchup = testbed.inventory_dir / "group_vars" / "all" / "bench.yml"
    no_catchup.write_text("---\ncutover_catchup_pass: false\n")
    try:
        figures = moves.move(testbed, log, env, TARGET,
                             before_confirm=lambda: changed.append(dataset.change(testbed, ENV_SOURCE, env,
                                                                                  opts.scaling_changed)))
    finally:
        no_catchup.unlink()
    final = [p for p in figures.passes if p.get("kind") == "final"]
    return {"files": files, "changed": changed[0] if changed else 0, "final_sync_s": figures.final_sync_s,
            "freeze_s": figures.freeze_s,
            "final_pass_files_changed": final[-1].get("files_changed") if final else None,
            "initial_copy_s": figures.initial_copy_s}


def main(argv: list[str] | None = None) -> int:
    opts = options.parse(argv)
    testbed = Testbed()
    env = envs.load(opts.env, testbed.cfg)
    started = time.monotonic()
    booted_here = not testbed.is_up()
    log_path = testbed.cfg.state_dir / "bench.log"
    say(f"env {env.name} ({env.domain}, data {', '.join(env.data_paths)}, health {env.health_path})")
    say(f"testbed {testbed.cfg.index}: bringing it up" + ("" if booted_here else " (already up)"))
    testbed.up()
    results: dict[str, Any] = {}
    database = envs.database(opts.env, ENV_SOURCE, TARGET, testbed.cfg) if opts.with_database else None
    if database is not None:
        say(f"database {database.name} moves too ({database.server} -> {database.new_server}; "
            f"{database.server} at wal_level=logical for the bench, put back after)")
    try:
        with open(log_path, "w") as log, (database.ready(testbed) if database else contextlib.nullcontext()):
            say(f"log of the controller and playbooks: {log_path}")
            testbed.reset()
            total = int(opts.megabytes * 1024 * 1024)
            say(f"reference data: {opts.files} files / {opts.megabytes:g} MB in {env.tree} on {ENV_SOURCE}")
            dataset.generate(testbed, ENV_SOURCE, env, opts.files, total)

            say("lever: verify's manifest comparison, the manifest as a variable and as a file (no load)")
            lever_manifest = levers.manifest_compare(testbed, env, ENV_SOURCE, repeats=1 if opts.quick else 3)
            say(f"  as a variable {lever_manifest['as_argument_s']} s, as a file {lever_manifest['as_file_s']} s")

            say("lever: provision's directories, one file module run per directory and one env_directories run")
            lever_dirs = levers.provision_directories(testbed, env, ENV_SOURCE, repeats=1 if opts.quick else 3)
            say(f"  file loops {lever_dirs['file_loops_s']} s, one call {lever_dirs['one_call_s']} s")

            say("lever: provision's Caddy files, a module run per file and one server_files run")
            lever_proxy = levers.proxy_files(testbed, env, ENV_SOURCE, repeats=1 if opts.quick else 3)
            say(f"  per file {lever_proxy['per_file_s']} s, one call {lever_proxy['one_call_s']} s")

            say("lever: start's five stages, one ansible-playbook each and one chained run")
            lever_runs = levers.stage_runs(testbed, TARGET, repeats=1 if opts.quick else 3)
            say(f"  one run per stage {lever_runs['per_stage_s']} s, chained {lever_runs['chained_s']} s")

            say(f"lever: the env's stop inside the freeze, graceful and kill, under the client load")
            moves.wait_healthy(testbed, ENV_SOURCE, env)
            with client_load(testbed, opts, env):
                lever_stop = levers.app_stop(testbed, env, ENV_SOURCE, repeats=1 if opts.quick else 3)
            say(f"  graceful {lever_stop['graceful_s']} s, kill {lever_stop['kill_s']} s (its cgroups read "
                f"inside the freeze: {lever_stop['kill_lookup_inside_s']} s)")

            with baselines.bench_key(testbed, ENV_SOURCE, TARGET) as ssh:
                # under the same client load as the moves' initial copy: same conditions
                say("bare rsync -a of the same data srv1 -> srv2, under the same client load")
                moves.wait_healthy(testbed, ENV_SOURCE, env)
                bare, bare_haxs = [], []
                for _ in range(opts.runs):
                    with client_load(testbed, opts, env):
                        bare.append(baselines.bare_rsync(testbed, ssh, env, ENV_SOURCE, TARGET))
                    say(f"bare rsync {baselines.RSYNC_LIKE_A_PASS} of the same data (what a pass keeps), same load")
                    with client_load(testbed, opts, env):
                        bare_haxs.append(baselines.bare_rsync(testbed, ssh, env, ENV_SOURCE, TARGET,
                                                              flags=baselines.RSYNC_LIKE_A_PASS))
                runs = []
                for i in range(opts.runs):
                    say(f"move {i + 1}/{opts.runs} under load ({opts.writes_per_s:g} writes/s, "
                        f"{opts.reads_per_s:g} reads/s)")
                    # the first move also measures the lag without its follower (the lever's before)
                    run = move_under_load(testbed, opts, env, log, database, lag_without_follower=i == 0)
                    say(f"  freeze {run['freeze_s']} s {run['freeze_parts']}")
                    if database is not None:
                        db = run["database"]
                        say(f"  database: freeze part {db['freeze_database_s']} s, lag before the freeze "
                            f"{db['lag_before_freeze']['bytes']} bytes / {db['lag_before_freeze']['seconds']} s, "
                            f"lost rows {db['lost_rows']}, lost files {db['lost_files']}, "
                            f"{db['tables']} tables {'equal' if db['tables_equal'] else 'DIFFERING'} on both sides")
                    say(f"  start -> gate {run['start_s']} s, of it copying {run['copy_before_gate_s']} s; sync lag "
                        f"while waiting {run['sync_lag_waiting_s'] if run['sync_lag_waiting_s'] is not None else '> %g' % opts.lag_window_s} s; "
                        f"client pause {run['client_pause_s']} s over its median {run['median_request_latency_s']} s "
                        f"({run['freeze_client_pause_s']} s over the freeze, {run['requests_over_freeze']} requests); "
                        f"slowest requests (started vs the hold): "
                        + ", ".join(f"{r['kind']} {r['latency_s']} s at {r['started_vs_hold_s']:+.2f} s"
                                    if r["started_vs_hold_s"] is not None else f"{r['kind']} {r['latency_s']} s"
                                    for r in run["slowest_requests"]))
                    say(f"  final sync {run['final_sync_s']} s, "
                        f"{run['failed_requests']}+{run['stale_client_failed_requests']} failed of "
                        f"{run['requests']}+{run['stale_requests']}, {run['lost_writes']} lost, "
                        f"slowest request {run['max_request_latency_s']} s")
                    measured = run["stale_measured"]
                    say(f"  finished {run['finish_after_switch_s']} s after the switch: {ENV_SOURCE} forwarded "
                        f"{run['stale_requests_forwarded']} of the stale client's requests (from the release to "
                        f"the end of its {STALE_TAIL_S:g} s tail); measured there, every client's since the "
                        f"release: {measured.get('total')}, last seen {measured.get('last_seen')}, per minute "
                        f"{measured.get('per_minute')}")
                    runs.append(run)
                say(f"naive baseline: stop {env.target_unit}, one full rsync, start on the target, update DNS")
                testbed.reset()
                naive = baselines.naive_move(testbed, ssh, env, ENV_SOURCE, TARGET, log)
                say(f"  naive freeze {naive} s")
            scaling = []
            for n in opts.scaling:
                try:
                    scaling.append(scaling_point(testbed, opts, env, n, log))
                except Exception as exc:  # one size failing must not cost the others or the JSON
                    say(f"scaling: {n} files FAILED: {exc}")
                    scaling.append({"files": n, "changed": 0, "final_sync_s": None, "error": str(exc)[:500]})
                    testbed.reset()
            testbed.reset()
            if scaling:  # leave the reference tree as the next run expects it
                dataset.generate(testbed, ENV_SOURCE, env, opts.files, total)
    except Exception:
        say(f"FAILED; see {log_path}")
        raise
    freeze = _median([r["freeze_s"] for r in runs])
    results = {
        "env": env.name,
        "freeze_s": freeze,
        "naive_freeze_s": naive,
        "freeze_ratio": round(freeze / naive, 4) if freeze is not None and naive else None,
        "failed_requests": sum(r["failed_requests"] for r in runs),
        "stale_client_failed_requests": sum(r["stale_client_failed_requests"] for r in runs),
        "stale_requests_forwarded": sum(r["stale_requests_forwarded"] for r in runs),
        "finish_after_switch_s": _median([r["finish_after_switch_s"] for r in runs]),
        "max_request_latency_s": max(r["max_request_latency_s"] for r in runs),
        "lost_writes": sum(r["lost_writes"] for r in runs),
        "initial_copy_s": _median([r["initial_copy_s"] for r in runs]),
        "bare_rsync_s": _median(bare),
        "final_sync_s": _median([r["final_sync_s"] for r in runs]),
        "scaling": scaling,
        # issue 17 (report.ISSUE17_TARGETS)
        "freeze_p95_s": report.p95([r["freeze_s"] for r in runs]),
        "client_pause_s": max(r["client_pause_s"] for r in runs),
        "freeze_client_pause_s": max((r["freeze_client_pause_s"] for r in runs
                                      if r.get("freeze_client_pause_s") is not None), default=None),
        # the worst run; None (longer than the window) when any run did not see its probe arrive
        "sync_lag_waiting_s": (None if any(r["sync_lag_waiting_s"] is None for r in runs)
                               else max(r["sync_lag_waiting_s"] for r in runs)),
        "sync_lag_window_s": opts.lag_window_s,
        "bare_rsync_haxs_s": _median(bare_haxs),
        "initial_copy_vs_haxs": None,
        "start_to_gate_s": _median([r["start_to_gate_s"] for r in runs]),
        "levers": {"manifest_compare": lever_manifest, "app_stop": lever_stop, "provision_directories": lever_dirs,
                   "stage_runs": lever_runs, "proxy_files": lever_proxy,
                   "barrier": runs[0].get("barrier_lever"),
                   "follower": {"with_s": runs[0]["sync_lag_waiting_s"],
                                "without_s": runs[0].get("sync_lag_passes_only_s"),
                                "window_s": opts.lag_window_s}},
        "runs": runs,
        "bare_rsync_runs_s": bare,
        "bare_rsync_haxs_runs_s": bare_haxs,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "testbed_index": testbed.cfg.index,
        "duration_s": round(time.monotonic() - started, 1),
    }
    if results["initial_copy_s"] and results["bare_rsync_haxs_s"]:
        results["initial_copy_vs_haxs"] = round(results["initial_copy_s"] / results["bare_rsync_haxs_s"], 3)
    if database is not None:
        results["database"] = report.database_summary(runs)
    results["targets_met"] = report.met(results)
    report.write(opts.output, results)
    print()
    print(report.table(results))
    print(f"\nresults: {opts.output} (the bench took {results['duration_s']:g} s)")
    if booted_here and not opts.keep_testbed and not os.environ.get("STRACKT_KEEP_TESTBED"):
        testbed.down()
    # speed is printed and compared, never a failure; a request failed or a write lost is one
    wrong = report.correctness_failures(results)
    if wrong:
        print("\nFAILED on correctness: " + "; ".join(wrong))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
