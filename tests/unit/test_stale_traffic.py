"""Stale traffic after a switch-over: reading Caddy's access log (module_utils/stale_traffic.py),
the forwarding rule that decides the finish (module_utils/forwarding.py), the env's `forwarding`
settings and the record's `stale` field."""

from __future__ import annotations

import datetime
import gzip
import json
import os
from pathlib import Path

import pytest
from controller_testlib import new_record, walk_to

from ansible_collections.strackt.move.plugins.module_utils import forwarding, move_status, stale_traffic
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils.environment import (EnvironmentDefinitionError,
                                                                               parse_environment)

UTC = datetime.timezone.utc
T = datetime.datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
RELEASE = T.timestamp()


def caddy_line(ts: float, remote_ip: str = "10.77.6.1", uri: str = "/write") -> str:
    """An entry as Caddy 2.6 writes it (`log { output file ...; format json }`)."""
    return json.dumps({
        "level": "info", "ts": ts, "logger": "http.log.access.log0", "msg": "handled request",
        "request": {"remote_ip": remote_ip, "remote_port": "41234", "proto": "HTTP/1.1", "method": "POST",
                    "host": "shop.example.test", "uri": uri, "headers": {"User-Agent": ["python-requests"]}},
        "user_id": "", "duration": 0.012, "size": 42, "status": 200, "resp_headers": {"Server": ["Caddy"]},
    }) + "\n"


def test_a_caddy_entry_is_a_request_anything_else_is_skipped() -> None:
    request = stale_traffic.parse_line(caddy_line(RELEASE + 1.5))
    assert request == stale_traffic.Request(at=RELEASE + 1.5, remote_ip="10.77.6.1")
    assert stale_traffic.parse_line('{"level":"info","ts":1,"logger":"tls","msg":"x"}') is None
    assert stale_traffic.parse_line('{"level":"info","ts":"soon","logger":"http.log.access"}') is None
    assert stale_traffic.parse_line(caddy_line(RELEASE)[:40]) is None  # cut by a roll
    assert stale_traffic.parse_line("not json") is None


def test_measure_counts_visitors_since_the_release_per_minute(tmp_path: Path) -> None:
    log = tmp_path / "strackt-shop.access.log"
    now = RELEASE + 600
    lines = [caddy_line(RELEASE - 5)]  # before the release: not stale
    lines += [caddy_line(RELEASE + 10 + i) for i in range(3)]  # minute 0 after the release
    lines += [caddy_line(now - 30), caddy_line(now - 20)]  # the last minute
    lines += [caddy_line(now - 10, remote_ip="127.0.0.1")]  # a check on the server itself
    lines += ["garbage\n"]
    log.write_text("".join(lines))
    os.utime(log, (now, now))
    m = stale_traffic.measure(str(log), RELEASE, now, minutes=5)
    assert (m.total, m.log_found, m.skipped_lines) == (5, True, 1)
    assert m.last_seen == "2026-11-30T10:09:40Z" and m.since == "2026-11-30T10:00:00Z"
    assert m.measured_at == "2026-11-30T10:10:00Z"
    assert m.per_minute == (0, 0, 0, 0, 2)  # the first three are older than the last 5 minutes


def test_measure_reads_rolled_files_and_skips_those_older_than_the_release(tmp_path: Path) -> None:
    log = tmp_path / "strackt-shop.access.log"
    rolled = tmp_path / "strackt-shop.access-2026-11-30T10-05-00.000.log.gz"
    old = tmp_path / "strackt-shop.access-2026-11-29T08-00-00.000.log"
    with gzip.open(rolled, "wt") as handle:
        handle.write(caddy_line(RELEASE + 60) + caddy_line(RELEASE + 61))
    os.utime(rolled, (RELEASE + 300, RELEASE + 300))
    old.write_text(caddy_line(RELEASE + 30))  # written after the release by its content, but its mtime says older
    os.utime(old, (RELEASE - 3600, RELEASE - 3600))
    log.write_text(caddy_line(RELEASE + 400))
    os.utime(log, (RELEASE + 400, RELEASE + 400))
    m = stale_traffic.measure(str(log), RELEASE, RELEASE + 420)
    assert m.total == 3 and m.last_seen == "2026-11-30T10:06:40Z"


def test_no_log_is_said_not_zero(tmp_path: Path) -> None:
    m = stale_traffic.measure(str(tmp_path / "strackt-shop.access.log"), RELEASE, RELEASE + 60)
    assert (m.total, m.log_found, m.last_seen) == (0, False, None)


# ---- the forwarding rule

SETTINGS = forwarding.Settings(min_s=3600, quiet_s=900, max_s=72 * 3600)
SWITCHED = "2026-11-30T10:00:00Z"


def stale(last_seen: str | None, total: int = 5) -> dict:
    return {"measured_at": "2026-11-30T10:00:00Z", "since": SWITCHED, "total": total, "last_seen": last_seen,
            "per_minute": [0, 1], "log_found": True}


def at(minutes: float) -> datetime.datetime:
    return T + datetime.timedelta(minutes=minutes)


def test_not_before_the_minimum_even_when_quiet() -> None:
    d = forwarding.decide(at(30), SWITCHED, SETTINGS, stale(None, total=0))
    assert not d.finish and d.not_before == at(60)
    assert "forwarding.min" in d.why and "until 2026-11-30T11:00:00Z" in d.why


def test_after_the_minimum_it_waits_for_a_quiet_window() -> None:
    d = forwarding.decide(at(70), SWITCHED, SETTINGS, stale("2026-11-30T11:05:00Z"))
    assert not d.finish and d.not_before == at(65 + 15)
    assert "15m00s without a stale request" in d.why and "last seen 2026-11-30T11:05:00Z" in d.why
    d = forwarding.decide(at(80), SWITCHED, SETTINGS, stale("2026-11-30T11:05:00Z"))
    assert d.finish and "no stale request for 15m00s" in d.why


def test_the_maximum_ends_it_whatever_still_arrives() -> None:
    d = forwarding.decide(at(72 * 60), SWITCHED, SETTINGS, stale("2026-11-30T09:59:00Z".replace("11-30", "12-03")))
    assert d.finish and "the maximum" in d.why
    busy = forwarding.decide(at(72 * 60 - 1), SWITCHED, SETTINGS, stale("2026-12-03T09:58:00Z"))
    assert not busy.finish and busy.not_before == at(72 * 60)  # bounded by the maximum


def test_the_operators_now_says_what_still_arrives() -> None:
    d = forwarding.decide(at(1), SWITCHED, SETTINGS, stale("2026-11-30T10:00:50Z", total=7), operator_now=True)
    assert d.finish and "--now" in d.why and "7 stale request(s)" in d.why


def test_no_access_log_waits_for_the_maximum_and_says_why() -> None:
    d = forwarding.decide(at(120), SWITCHED, SETTINGS, dict(stale(None), log_found=False))
    assert not d.finish and d.not_before == at(72 * 60) and "cannot be measured" in d.why


def test_never_before_resolvers_caches_expired() -> None:
    d = forwarding.decide(at(0.5), SWITCHED, forwarding.Settings(0, 0, 60), stale(None), dns_until=at(1))
    assert not d.finish and d.not_before == at(1) and "caches" in d.why


# ---- the env's settings

ENTRY = {"server": "srv1", "repo": "git://10.77.0.1/shop.git", "branch": "main", "root": "/srv/shop",
         "data_paths": ["/srv/shop/data"], "domains": ["shop.example.test"], "user": "shop", "uid": 1100,
         "memory_mb": 256, "disk_headroom_mb": 64, "port": 8001, "processes": {"web": "gunicorn app"}}


def test_forwarding_defaults_and_durations() -> None:
    assert parse_environment("shop", ENTRY).forwarding == forwarding.Settings(3600, 900, 259200)
    env = parse_environment("shop", dict(ENTRY, forwarding={"min": "10s", "quiet": 5, "max": "2h"}))
    assert env.forwarding == forwarding.Settings(10, 5, 7200)
    assert env.to_dict()["forwarding"] == {"min_s": 10, "quiet_s": 5, "max_s": 7200}
    assert env.to_dict()["access_log"] == "/var/log/caddy/strackt-shop.access.log"


@pytest.mark.parametrize("value, problem", [
    ({"quiet": "soon"}, "strackt_environments.shop.forwarding.quiet: 'soon' is not a duration"),
    ({"min": "4d"}, "strackt_environments.shop.forwarding.min: 345600s is more than max (259200s)"),
    ({"max": 0}, "strackt_environments.shop.forwarding.max: must be more than 0"),
    ({"quite": "5m"}, "strackt_environments.shop.forwarding.quite: unknown key"),
    ("15m", "strackt_environments.shop.forwarding: must be a mapping"),
])
def test_bad_forwarding_settings_are_refused_naming_the_field(value: object, problem: str) -> None:
    with pytest.raises(EnvironmentDefinitionError) as err:
        parse_environment("shop", dict(ENTRY, forwarding=value))
    assert problem in str(err.value)


# ---- the record keeps the latest measurement


def switched_record() -> mr.MoveRecord:
    rec = walk_to(new_record(), "awaiting_confirmation")
    rec.transition("cutover")
    rec.complete("cutover")
    rec.transition("switched")
    rec.complete("switched", now=datetime.datetime(2026, 11, 25, 12, 1, tzinfo=UTC))
    return rec


def test_the_record_keeps_the_measurement_and_the_summary_shows_it() -> None:
    rec = switched_record()
    measured = mr.StaleTraffic.from_dict(dict(stale("2026-11-25T12:20:00Z"), since="2026-11-25T12:01:00Z",
                                              forwarding=SETTINGS.to_dict()))
    assert rec.set_stale(measured) and not rec.set_stale(measured)
    again = mr.MoveRecord.from_json(rec.to_json())
    assert again.stale == measured
    summary = move_status.summary(again, datetime.datetime(2026, 11, 25, 12, 30, tzinfo=UTC))
    assert summary["stale_traffic"]["last_seen"] == "2026-11-25T12:20:00Z"
    assert summary["finish"]["due"] is False and summary["finish"]["not_before"] == "2026-11-25T13:01:00Z"


def test_a_measurement_before_the_switch_or_a_bad_one_is_refused() -> None:
    rec = walk_to(new_record(), "awaiting_confirmation")
    good = dict(stale(None), forwarding=SETTINGS.to_dict())
    with pytest.raises(mr.TransitionError):
        rec.set_stale(mr.StaleTraffic.from_dict(good))
    with pytest.raises(mr.RecordError, match="per_minute"):
        mr.StaleTraffic.from_dict(dict(good, per_minute=[1, -1]))
    with pytest.raises(mr.RecordError, match="forwarding.max_s"):
        mr.StaleTraffic.from_dict(dict(good, forwarding={"min_s": 1, "quiet_s": 1}))


# ---- the old server's clock is not the control node's


def test_a_server_clock_behind_does_not_make_live_traffic_look_quiet() -> None:
    """The log's times are the old server's; the decision's ``now`` is the control node's. A
    measurement is put on the control node's clock when it is recorded: a request of this very
    second on a server 16 minutes behind is still a request of this second."""
    behind = datetime.timedelta(minutes=16)
    server_now = at(80) - behind
    measured = {"measured_at": stale_traffic.clock.format_ts(server_now), "since": "2026-11-30T09:44:00Z",
                "total": 300, "last_seen": stale_traffic.clock.format_ts(server_now), "per_minute": [30],
                "log_found": True}
    # read on the server's own clock the request looks 16 minutes old: the bug this guards against
    assert forwarding.decide(at(80), SWITCHED, SETTINGS, measured).finish
    on_ours = stale_traffic.on_clock(measured, at(80))
    assert on_ours["measured_at"] == on_ours["last_seen"] == "2026-11-30T11:20:00Z"
    assert on_ours["since"] == SWITCHED and on_ours["total"] == 300 and on_ours["per_minute"] == [30]
    d = forwarding.decide(at(80), SWITCHED, SETTINGS, on_ours)
    assert not d.finish and "quiet for 0s so far" in d.why and d.not_before == at(95)


def test_a_rolled_file_being_compressed_or_gone_is_skipped_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "strackt-shop.access.log"
    log.write_text(caddy_line(RELEASE + 5))
    # Caddy is still writing the compressed copy of a rolled file: a truncated gzip stream
    (tmp_path / "strackt-shop.access-2026-11-30T10-00-01.000.log.gz").write_bytes(
        gzip.compress(caddy_line(RELEASE + 1).encode())[:20])
    m = stale_traffic.measure(str(log), RELEASE, RELEASE + 60)
    assert m.total == 1 and m.skipped_lines >= 1


def test_the_operators_now_still_waits_for_resolvers_caches_of_the_old_address() -> None:
    """`--now` ends the stale tail early, not the TTL every resolver honours: stopping the
    forwarding then would fail the requests of clients that did nothing wrong."""
    d = forwarding.decide(at(0.5), SWITCHED, SETTINGS, stale(None), dns_until=at(1), operator_now=True)
    assert not d.finish and d.not_before == at(1) and "caches" in d.why
    assert forwarding.decide(at(1), SWITCHED, SETTINGS, stale(None), dns_until=at(1), operator_now=True).finish


def test_a_site_that_logs_but_took_no_request_is_measured_quiet_not_unmeasurable(tmp_path: Path) -> None:
    """Caddy 2.6 creates a rolled access log at the first request it logs (seen with 2.6.2): an
    old site that took none since has no file. Judged "no access log", its move would forward for
    forwarding.max (72 h) instead of finishing once quiet."""
    log = tmp_path / "strackt-shop.access.log"
    site = tmp_path / "shop.caddy"
    site.write_text("http://shop.example.test {\n\tlog {\n\t\toutput file %s {\n\t\t\troll_size 10MiB\n" % log)
    configured = stale_traffic.site_logs_to(str(site), str(log))
    assert configured and not stale_traffic.site_logs_to(str(site), str(tmp_path / "other.log"))
    assert not stale_traffic.site_logs_to(str(tmp_path / "gone.caddy"), str(log))
    quiet = stale_traffic.measure(str(log), RELEASE, RELEASE + 60, configured=configured)
    assert quiet.log_found and quiet.total == 0 and quiet.last_seen is None
    assert not stale_traffic.measure(str(log), RELEASE, RELEASE + 60).log_found  # a site that logs nothing


def test_the_site_template_logs_what_the_count_needs_and_no_uri_or_header() -> None:
    template = (Path(__file__).parents[2] / "collections/ansible_collections/strackt/move/roles/provision/templates"
                / "site.caddy.j2").read_text()
    assert "output file {{ provision_def.access_log }}" in template
    for field in ("request>uri delete", "request>headers delete", "resp_headers delete"):
        assert field in template
    # what the count reads is still there in such an entry
    entry = json.dumps({"level": "info", "ts": RELEASE + 2, "logger": "http.log.access.log0",
                        "msg": "handled request", "request": {"remote_ip": "10.77.6.1", "method": "GET"}})
    assert stale_traffic.parse_line(entry) == stale_traffic.Request(at=RELEASE + 2, remote_ip="10.77.6.1")
