"""The testbed client's per-app adapters and the by-hand env layout, without servers: the
transport is a fake that answers as each sample app does (the real apps: test_sample_apps.py)."""

from __future__ import annotations

import email.message
import hashlib
import http.client
import json
import urllib.parse
from email.parser import BytesParser
from email.policy import HTTP

import pytest
import yaml
from ansible_collections.strackt.move.plugins.module_utils.env_vars import process_variables
from ansible_collections.strackt.move.plugins.module_utils.environment import find_environment, parse_environment

from tests.testbed import handdeploy, inventory, services
from tests.testbed.client import Answer, Call, Client, DropApp, NotesApp, ShopApp
from tests.testbed.config import TestbedConfig


def json_answer(data: dict, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"content-type": "application/json", **(headers or {})}, json.dumps(data).encode())


def parts(call: Call) -> dict[str, bytes]:
    """A multipart body's fields, parsed by the standard library rather than by our encoder."""
    assert call.content_type is not None and call.body is not None
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {call.content_type}\r\n\r\n".encode() + call.body)
    return {p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in message.iter_parts()}


class FakeTransport:
    """Answers calls from a function and records them, in place of HTTP to a server."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.calls: list[tuple[Call, str]] = []

    def __call__(self, address: str, call: Call) -> Answer:
        self.calls.append((call, address))
        return self.respond(call)


def client_with(app, respond) -> tuple[Client, FakeTransport]:
    client = Client("10.0.0.2", "app.example.test", pinned_address="10.0.0.11", app=app)
    fake = FakeTransport(respond)
    client._send = fake  # type: ignore[method-assign]
    return client, fake


# ---- shop: the requests stay exactly what they were -------------------------------------------

def test_shop_writes_and_reads_as_before() -> None:
    made = ShopApp().write("n1")
    assert made.calls == (Call("POST", "/write", urllib.parse.urlencode({"note": "n1", "content": "content of n1"}).encode(),
                               "application/x-www-form-urlencoded"),)
    assert ShopApp().read() == Call("GET", "/orders")


def test_shop_write_records_id_and_server_and_a_non_json_read_is_a_failure() -> None:
    def respond(call: Call) -> Answer:
        if call.path == "/write":
            return json_answer({"id": 7, "file": "uploads/7.txt", "server": "srv1"})
        return Answer(200, {"content-type": "text/html"}, b"<html>not the app</html>")

    client, _ = client_with(ShopApp(), respond)
    written = client.write("n1")
    assert (written.status, written.order_id, written.server, written.expected) == (200, 7, "srv1", "content of n1")
    read = client.read()
    assert read.status == 0 and "JSONDecodeError" in read.error


def test_shop_lost_writes_names_what_reads_back_wrong() -> None:
    def respond(call: Call) -> Answer:
        if call.path == "/write":
            return json_answer({"id": 1, "server": "srv1"})
        return json_answer({"id": 1, "note": "n", "content": "something else", "server": "srv2"})

    client, _ = client_with(ShopApp(), respond)
    client.requests.append(client.write("n"))
    [lost] = client.lost_writes()
    assert lost.written_id == 1 and "something else" in lost.problem


# ---- notes -----------------------------------------------------------------------------------

def test_notes_write_is_a_form_post_and_reads_back_only_once_rendered() -> None:
    app = NotesApp()
    made = app.write("t1")
    assert made.calls[0].path == "/notes" and urllib.parse.parse_qs(made.calls[0].body.decode()) == {
        "title": ["t1"], "body": ["body of t1"]}
    row = {"id": 3, "title": "t1", "body": "body of t1", "server": "srv1"}
    assert "not rendered" in app.check(3, made.expected, json_answer(dict(row, rendered=False, file=None)))
    assert app.check(3, made.expected, json_answer(dict(row, rendered=True, file="t1\n==\n\nbody of t1\n"))) == ""
    assert "reads back" in app.check(3, made.expected, json_answer(dict(row, body="other", rendered=True, file="x")))
    assert "404" in app.check(3, made.expected, json_answer({"error": "no"}, status=404))


def test_notes_chunked_upload_sends_every_chunk_and_only_the_completing_answer_acknowledges() -> None:
    app = NotesApp(upload_every=2, upload_chunks=3, chunk_bytes=1000)
    assert app.write("a").calls[0].path == "/notes"
    upload = app.write("b")  # the second write is an upload
    assert [c.path for c in upload.calls] == ["/uploads"] * 3
    fields = [parts(c) for c in upload.calls]
    assert [f["chunk_index"] for f in fields] == [b"0", b"1", b"2"]
    assert {f["chunk_count"] for f in fields} == {b"3"} and len({f["upload_id"] for f in fields}) == 1
    data = b"".join(f["chunk"] for f in fields)
    assert len(data) == 3000 and upload.expected == "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = fields[0]["upload_id"].decode()

    assert app.written_id(json_answer({"upload_id": upload_id, "chunk_index": 2, "complete": False})) is None
    assert app.written_id(json_answer({"upload_id": upload_id, "chunk_index": 2, "complete": True})) == upload_id
    digest = upload.expected.removeprefix("sha256:")
    assert app.read_back(upload_id) == Call("GET", f"/uploads/{upload_id}")
    assert app.check(upload_id, upload.expected, json_answer({"sha256": digest, "file_sha256": digest})) == ""
    assert "upload reads back" in app.check(upload_id, upload.expected,
                                            json_answer({"sha256": digest, "file_sha256": "0" * 64}))


def test_a_multi_call_write_stops_at_its_first_failed_call_and_is_not_acknowledged() -> None:
    def respond(call: Call) -> Answer:
        index = int(parts(call)["chunk_index"])
        return json_answer({"error": "disk full"}, status=500) if index == 1 else \
            json_answer({"upload_id": "x", "complete": False, "server": "srv1"})

    client, fake = client_with(NotesApp(upload_every=1, upload_chunks=3, chunk_bytes=10), respond)
    written = client.write("u")
    assert written.status == 500 and written.order_id is None and len(fake.calls) == 2
    assert client.acknowledged_writes() == []


def test_a_write_answered_200_without_an_acknowledgement_counts_as_failed() -> None:
    client, _ = client_with(NotesApp(upload_every=1, upload_chunks=1, chunk_bytes=10),
                            lambda call: json_answer({"upload_id": "x", "complete": False, "server": "srv1"}))
    written = client.write("u")
    assert written.status == 0 and "no write acknowledged" in written.error


def test_the_client_keeps_the_cookie_the_app_sets_like_a_browser(monkeypatch) -> None:
    client = Client("10.0.0.2", "notes.example.test", pinned_address="10.0.0.11", app=NotesApp())
    sent: list[str | None] = []

    class Response:
        status = 200

        def __init__(self) -> None:
            self.headers = email.message.Message()
            self.headers["Set-Cookie"] = "notes_session=abc.def; HttpOnly; Path=/"

        def getheaders(self):
            return list(self.headers.items())

        def read(self) -> bytes:
            return json.dumps({"count": 0, "ids": [], "server": "srv1"}).encode()

    class Connection:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def request(self, method, path, body=None, headers=None) -> None:
            sent.append(headers.get("Cookie"))

        def getresponse(self):
            return Response()

        def close(self) -> None:
            pass

    monkeypatch.setattr(http.client, "HTTPConnection", Connection)
    assert client.read().status == 200
    assert client.read().status == 200
    assert sent == [None, "notes_session=abc.def"]


# ---- drop ------------------------------------------------------------------------------------

def test_drop_write_is_a_multipart_file_and_the_read_back_compares_the_bytes() -> None:
    app = DropApp(file_bytes=5000)
    made = app.write("f1")
    content = parts(made.calls[0])["file"]
    assert len(content) == 5000 and made.expected == "sha256:" + hashlib.sha256(content).hexdigest()
    good = Answer(200, {"x-served-by": "srv2", "content-type": "application/octet-stream"}, content)
    assert app.check(4, made.expected, good) == "" and app.served_by(good) == "srv2"
    assert "content differs" in app.check(4, made.expected, Answer(200, {}, content[:-1]))


def test_drop_lost_writes_reports_a_missing_file() -> None:
    def respond(call: Call) -> Answer:
        if call.method == "POST":
            return json_answer({"id": 9, "size": 10, "sha256": "x", "server": "srv1"})
        return json_answer({"error": "the content of file 9 is missing", "server": "srv2"}, status=500)

    client, fake = client_with(DropApp(file_bytes=10), respond)
    client.requests.append(client.write("f"))
    [lost] = client.lost_writes("10.0.0.12")
    assert lost.written_id == 9 and "answered 500" in lost.problem and "is missing" in lost.problem
    assert fake.calls[-1] == (Call("GET", "/files/9"), "10.0.0.12")


# ---- the env definitions and what a server gets from them ------------------------------------

def definitions() -> dict:
    return inventory.sample_app_environments(TestbedConfig(50))


def test_process_environment_uses_loopback_on_the_service_server_and_the_address_elsewhere() -> None:
    notes = definitions()["notes"]
    secrets = {"NOTES_SECRET_KEY": "k", "NOTES_DB_PASSWORD": "p@ss/word"}
    addresses = {"srv1": "10.77.50.11", "srv2": "10.77.50.12"}
    here = handdeploy.process_environment(notes, secrets, handdeploy.Placement("srv1", addresses))
    assert here == {"DATA_DIR": "/srv/notes/data", "ALLOWED_HOSTS": "notes.example.test",
                    "DATABASE_URL": "mysql://notes:p%40ss%2Fword@127.0.0.1:3306/notes",
                    "NOTES_CACHE_TTL": "20", "NOTES_SECRET_KEY": "k"}
    there = handdeploy.process_environment(notes, secrets, handdeploy.Placement("srv2", addresses))
    assert there["DATABASE_URL"] == "mysql://notes:p%40ss%2Fword@10.77.50.11:3306/notes"
    drop = handdeploy.process_environment(definitions()["drop"], {"DROP_REDIS_PASSWORD": "r"},
                                          handdeploy.Placement("srv2", addresses))
    assert drop["REDIS_URL"] == "redis://:r@10.77.50.11:6379/0" and "DATABASE_URL" not in drop


def test_unit_files_follow_the_draft_layout() -> None:
    units = handdeploy.unit_files("notes", definitions()["notes"])
    assert sorted(units) == ["strackt-env-notes-cull-cache.service", "strackt-env-notes-cull-cache.timer",
                             "strackt-env-notes-web.service", "strackt-env-notes-worker.service",
                             "strackt-env-notes.target"]
    for name, text in units.items():
        if name != "strackt-env-notes.target":
            assert "PartOf=strackt-env-notes.target" in text
    assert "Environment=PORT=8002" in units["strackt-env-notes-web.service"]
    assert "PORT" not in units["strackt-env-notes-worker.service"]
    assert "OnUnitActiveSec=30s" in units["strackt-env-notes-cull-cache.timer"]
    assert "ExecStart=/bin/sh -c 'exec python3 -m notes.worker'" in units["strackt-env-notes-worker.service"]


def test_a_schedule_interval_that_is_not_a_time_span_is_refused() -> None:
    notes = dict(definitions()["notes"], schedule={"x": {"command": "true", "every": "30 seconds; rm -rf /"}})
    with pytest.raises(ValueError, match="not a systemd time span"):
        handdeploy.unit_files("notes", notes)


def test_the_three_testbed_envs_are_in_environments_yml_and_valid_for_the_product(tmp_path, monkeypatch) -> None:
    cfg = TestbedConfig(50)
    path = tmp_path / "environments.yml"
    monkeypatch.setattr(inventory, "environments_file", lambda _cfg: path)
    inventory.write_environments(cfg)
    environments = yaml.safe_load(path.read_text())["strackt_environments"]
    assert list(environments) == ["shop", "notes", "drop"]
    secrets = inventory.sample_app_secrets({"notes_secret_key": "k", "notes_db_password": "p", "redis_password": "r"})
    secrets["shop"] = {"SHOP_SECRET_KEY": "s", "SHOP_DB_PASSWORD": "d"}
    for name in environments:
        env = find_environment(name, environments, {"srv1", "srv2", "srv3"}, list(secrets[name]))
        assert env.server == "srv1"


def test_the_product_gives_the_processes_what_the_hand_deploy_does() -> None:
    """The hand deploy (the apps' documented contract) and the product's env file agree."""
    addresses = {"srv1": "10.77.50.11", "srv2": "10.77.50.12"}
    secrets = {"NOTES_SECRET_KEY": "k", "NOTES_DB_PASSWORD": "p@ss/word", "DROP_REDIS_PASSWORD": "r"}
    for name, definition in definitions().items():
        env = parse_environment(name, definition)
        for here in ("srv1", "srv2"):
            assert process_variables(env, secrets, here, addresses) == \
                handdeploy.process_environment(definition, secrets, handdeploy.Placement(here, addresses))


def test_access_sql_and_guard_quote_what_they_are_given() -> None:
    sql = services.mariadb_account_sql("notes", "notes", "10.77.50.12", "it's")
    assert "CREATE USER IF NOT EXISTS 'notes'@'10.77.50.12' IDENTIFIED BY 'it''s';" in sql
    assert "GRANT ALL PRIVILEGES ON `notes`.* TO 'notes'@'10.77.50.12';" in sql
    script = services.redis_guard_script(["10.77.50.12", "10.77.50.13"])
    assert "tcp dport 6379 ip saddr @allowed accept" in script
    assert script.endswith("add element inet strackt_redis allowed { 10.77.50.12, 10.77.50.13 }\n")


def test_a_stale_client_keeps_the_old_address_for_its_tail_then_follows_the_dns(monkeypatch) -> None:
    """The bench's stale-cache client: pinned to the old server, then (its resolver's cache ended)
    it resolves again before every request like the DNS-following client."""
    import tests.testbed.client as client_module
    monkeypatch.setattr(client_module, "query_a", lambda server, name: (["10.0.0.12"], 5))
    now = [1000.0]
    monkeypatch.setattr(client_module.time, "monotonic", lambda: now[0])
    client = Client("10.0.0.2", "app.example.test", pinned_address="10.0.0.11")
    assert client._address() == "10.0.0.11"          # pinned for good until told otherwise
    client.re_resolve_after(30)
    now[0] += 29.9
    assert client._address() == "10.0.0.11"          # still in its stale tail
    now[0] += 0.2
    assert client._address() == "10.0.0.12"          # the tail ended: where the DNS points now
    assert Client("10.0.0.2", "app.example.test")._address() == "10.0.0.12"
