"""The systemd units of an env (module_utils/units.py), the health module and the service access
module's SQL (run against fakes here; on the testbed in tests/integration)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.strackt.move.plugins.module_utils.environment import parse_environment
from ansible_collections.strackt.move.plugins.module_utils.units import (
    belongs_to,
    exec_start,
    shell_line,
    unit_files,
)
from ansible_collections.strackt.move.plugins.modules import env_units, health, service_access


def notes(**changes) -> dict:
    entry = {
        "server": "srv1", "repo": "git://h/notes.git", "branch": "main", "root": "/srv/notes",
        "data_paths": ["/srv/notes/data"], "domains": ["notes.example.test"], "user": "notes", "uid": 1101,
        "memory_mb": 1, "disk_headroom_mb": 0, "port": 8002,
        "processes": {"web": "gunicorn --bind 127.0.0.1:$PORT notes.app:app", "worker": "python3 -m notes.worker"},
        "schedule": {"cull-cache": {"command": "python3 -m notes.cull", "every": "30s"}},
    }
    entry.update(changes)
    return entry


def test_units_of_notes():
    env = parse_environment("notes", notes())
    files = unit_files(env)
    assert list(files) == list(env.unit_files)
    target = files["/etc/systemd/system/strackt-env-notes.target"]
    parts = "strackt-env-notes-web.service strackt-env-notes-worker.service strackt-env-notes-cull-cache.timer"
    assert f"Wants={parts}\n" in target
    # stopping the target waits for its parts: it is ordered before them (not after, the default)
    assert "DefaultDependencies=no" in target and f"Before=shutdown.target {parts}\n" in target
    assert "WantedBy=multi-user.target" in target
    web = files["/etc/systemd/system/strackt-env-notes-web.service"]
    worker = files["/etc/systemd/system/strackt-env-notes-worker.service"]
    for unit in (web, worker):
        assert "PartOf=strackt-env-notes.target\n" in unit and "WantedBy=strackt-env-notes.target" in unit
        assert "User=notes\nGroup=notes\nWorkingDirectory=/srv/notes/app\nEnvironmentFile=/etc/strackt/envs/notes.env" in unit
    assert "Environment=PORT=8002" in web and "PORT" not in worker
    assert 'ExecStart=/bin/sh -c "exec gunicorn --bind 127.0.0.1:$$PORT notes.app:app"' in web
    timer = files["/etc/systemd/system/strackt-env-notes-cull-cache.timer"]
    assert "OnUnitActiveSec=30s" in timer and "PartOf=strackt-env-notes.target" in timer
    job = files["/etc/systemd/system/strackt-env-notes-cull-cache.service"]
    assert "Type=oneshot" in job and 'ExecStart=/bin/sh -c "exec python3 -m notes.cull"' in job
    assert "[Install]" not in job  # the timer starts it


@pytest.mark.parametrize("command, line", [
    ("node server.js", "exec node server.js"),
    ("a && b", "a && b"),
    ("a; b", "a; b"),
    ("a | b", "a | b"),
    ("echo $(date)", "echo $(date)"),
])
def test_simple_commands_are_execed_lists_are_not(command, line):
    assert shell_line(command) == line


def test_systemd_expands_nothing_of_a_command():
    # systemd unquotes C-style escapes and expands $VAR and %specifiers: all escaped
    assert exec_start('echo "100%" \\ $HOME') == '/bin/sh -c "exec echo \\"100%%\\" \\\\ $$HOME"'


def test_unit_files_belong_to_their_env_only():
    env = parse_environment("shop", notes(root="/srv/shop", data_paths=["/srv/shop/data"], user="shop"))
    for path, text in unit_files(env).items():
        name = path.rsplit("/", 1)[1]
        assert belongs_to("shop", name, text)
        assert not belongs_to("shop-eu", name, text)
    other = parse_environment("shop-eu", notes(root="/srv/shop-eu", data_paths=["/srv/shop-eu/data"], user="eu"))
    for path, text in unit_files(other).items():
        assert not belongs_to("shop", path.rsplit("/", 1)[1], text)  # shop's prefix, not shop's units
    assert not belongs_to("shop", "strackt-env-shop.target", "[Unit]\n")  # not ours


def test_existing_units_finds_only_the_envs_files(tmp_path):
    env = parse_environment("notes", notes())
    for path, text in unit_files(env).items():
        (tmp_path / path.rsplit("/", 1)[1]).write_text(text)
    (tmp_path / "strackt-env-notes-old.service").write_text("[Unit]\nPartOf=strackt-env-notes.target\n")
    (tmp_path / "strackt-env-notes-x.service").write_text("[Unit]\nDescription=someone else's\n")
    found = env_units.existing_units("notes", str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in found) == sorted(
        [p.rsplit("/", 1)[1] for p in env.unit_files] + ["strackt-env-notes-old.service"])


# ---- health -----------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    answers: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        status = self.answers.get(self.headers["Host"], 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def run_health(capsys, **args):
    with patch_module_args(dict(env="notes", **args)):
        with pytest.raises(SystemExit):
            health.main()
    return json.loads(capsys.readouterr().out)


def test_health_asks_each_domain_through_the_proxy(capsys, proxy, tmp_path):
    _Handler.answers = {"a.example.test": 200, "b.example.test": 503}
    revision = tmp_path / "REVISION"
    revision.write_text("c0ffee\n")
    ok = run_health(capsys, domains=["a.example.test"], path="/up", proxy=proxy, revision_file=str(revision), commit="c0ffee")
    assert ok["healthy"] and ok["answers"][0]["status"] == 200 and ok["revision"] == "c0ffee"
    bad = run_health(capsys, domains=["a.example.test", "b.example.test"], path="/up", proxy=proxy)
    assert bad["failed"] and "b.example.test: HTTP 503 (expected 200)" in bad["msg"] and "a.example.test:" not in bad["msg"]
    wrong = run_health(capsys, domains=["a.example.test"], proxy=proxy, revision_file=str(revision), commit="beef")
    assert wrong["failed"] and "holds c0ffee, not the commit beef" in wrong["msg"]
    quiet = run_health(capsys, domains=["b.example.test"], proxy=proxy, fail=False, status=503)
    assert quiet["healthy"] and not quiet.get("failed")


def test_health_no_answer_is_named(capsys):
    result = run_health(capsys, domains=["a.example.test"], proxy="127.0.0.1:1", timeout=1)
    assert result["failed"] and "a.example.test: no answer (ConnectionRefusedError" in result["msg"]


def test_health_bad_path(capsys):
    result = run_health(capsys, domains=["a.example.test"], path="up")
    assert result["failed"] and "path 'up' is not a URL path" in result["msg"]


# ---- service access ---------------------------------------------------------------------------

def test_mariadb_sql_quotes_what_it_is_given():
    sql = service_access.mariadb_present_sql("notes", "notes", "10.0.0.2", "it's\\")
    assert "CREATE USER IF NOT EXISTS 'notes'@'10.0.0.2' IDENTIFIED BY 'it''s\\\\';" in sql
    assert "GRANT ALL PRIVILEGES ON `notes`.* TO 'notes'@'10.0.0.2';" in sql
    state = service_access.mariadb_state_sql("notes", "notes", "10.0.0.2", None)
    assert state.startswith("SELECT (SELECT COUNT(*) FROM mysql.user WHERE User='notes' AND Host='10.0.0.2'), 1,")


def test_service_access_refuses_bad_input(capsys):
    for args, fragment in ((dict(service="redis", address="10.0.0.300", nft_set="inet t s"), "not an IPv4 address"),
                           (dict(service="redis", address="10.0.0.2", nft_set="t s"), "is not '<family> <table> <set>'"),
                           (dict(service="mariadb", address="10.0.0.2", database="x;drop", user="u"), "not a database name")):
        with patch_module_args(dict(env="notes", **args)):
            with pytest.raises(SystemExit):
                service_access.main()
        result = json.loads(capsys.readouterr().out)
        assert result["failed"] and fragment in result["msg"], result


def test_site_is_closed_by_its_file_to_all_but_loopback_and_the_servers():
    import os

    import jinja2

    templates = os.path.join(os.path.dirname(__file__), "..", "..", "collections", "ansible_collections", "strackt",
                             "move", "roles", "provision", "templates")
    env = parse_environment("notes", notes(domains=["notes.example.test", "www.notes.example.test"]))
    # Ansible renders templates with trim_blocks
    jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), trim_blocks=True, keep_trailing_newline=True)
    site = jinja.get_template("site.caddy.j2").render(ansible_managed="m", provision_def=env.to_dict(),
                                                      provision_allowed_addresses=["10.0.0.1", "10.0.0.2"])
    assert "http://notes.example.test, http://www.notes.example.test {" in site
    assert ("\t@closed {\n\t\tfile {\n\t\t\troot /var/lib/strackt-move/closed\n\t\t\ttry_files /notes\n\t\t}\n"
            "\t\tnot remote_ip 127.0.0.1/8 10.0.0.1/32 10.0.0.2/32\n\t}\n") in site
    assert '\trespond @closed "notes is not served by this server" 503 {\n\t\tclose\n\t}\n' in site
    assert site.index("respond @closed") < site.index("reverse_proxy 127.0.0.1:8002 {")
