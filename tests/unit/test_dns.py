"""DNS query/update against a real BIND9 named on 127.0.0.1 (high port, TSIG key, temp dir)."""

import base64
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from ansible_collections.strackt.move.plugins.module_utils import dns_records as d

NAMED = "/usr/sbin/named"
ZONE = "example.test"
KEY = "strackt-move"
SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
NAME = "shop.example.test."

pytestmark = pytest.mark.skipif(not os.path.exists(NAMED) or os.geteuid() != 0,
                                reason="needs BIND9 named and root")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def named(tmp_path):
    port = free_port()
    (tmp_path / "db.example.test").write_text(
        "$TTL 300\n"
        "@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n"
        "@ IN NS ns.example.test.\n"
        "ns IN A 127.0.0.1\n"
        "shop IN A 10.77.0.11\n")
    (tmp_path / "named.conf").write_text("""
options {
  directory "%(dir)s";
  pid-file "%(dir)s/named.pid";
  listen-on port %(port)d { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { any; };
  dnssec-validation no;
};
key "%(key)s" { algorithm hmac-sha256; secret "%(secret)s"; };
key "intruder" { algorithm hmac-sha256; secret "%(other)s"; };
zone "%(zone)s" { type primary; file "db.example.test"; allow-update { key "%(key)s"; }; };
""" % {"dir": tmp_path, "port": port, "key": KEY, "secret": SECRET, "zone": ZONE, "other": OTHER_SECRET})
    os.chmod(tmp_path, 0o755)
    log = open(tmp_path / "named.log", "w")
    proc = subprocess.Popen([NAMED, "-g", "-4", "-c", str(tmp_path / "named.conf")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if d.query("127.0.0.1", port, NAME, timeout=0.5)[0]:
                    break
            except d.DnsError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("named did not start: " + (tmp_path / "named.log").read_text()[-3000:])
            time.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def kr(secret=SECRET, name=KEY):
    return d.keyring(name, secret)


def test_query_is_authoritative(named):
    assert d.query("127.0.0.1", named, NAME) == (["10.77.0.11"], 300)
    assert d.query("127.0.0.1", named, "nothing.example.test.") == ([], None)
    with pytest.raises(d.DnsError, match="not authoritative"):
        d.query("127.0.0.1", named, "www.elsewhere.test.")


def test_signed_update_with_compare_and_swap(named):
    d.update("127.0.0.1", named, ZONE, kr(), KEY, "hmac-sha256", NAME, ["10.77.0.11"], 5,
             expect_addresses=["10.77.0.11"])
    assert d.wait_for("127.0.0.1", named, NAME, ["10.77.0.11"], 5) == (["10.77.0.11"], 5)
    d.update("127.0.0.1", named, ZONE, kr(), KEY, "hmac-sha256", NAME, ["10.77.0.12"], 5,
             expect_addresses=["10.77.0.11"])
    assert d.query("127.0.0.1", named, NAME, tcp=True) == (["10.77.0.12"], 5)
    # a second switch that still expects the old address loses the compare-and-swap
    with pytest.raises(d.DnsError, match="prerequisite failed"):
        d.update("127.0.0.1", named, ZONE, kr(), KEY, "hmac-sha256", NAME, ["10.77.0.13"], 5,
                 expect_addresses=["10.77.0.11"])
    assert d.query("127.0.0.1", named, NAME, tcp=True) == (["10.77.0.12"], 5)


def test_wrong_secret_is_reported_as_bad_signature(named):
    with pytest.raises(d.DnsError, match="TSIG|NOTAUTH"):
        d.update("127.0.0.1", named, ZONE, kr(OTHER_SECRET), KEY, "hmac-sha256", NAME, ["10.77.0.13"], 5)
    assert d.query("127.0.0.1", named, NAME)[0] == ["10.77.0.11"]


def test_key_without_permission_is_refused(named):
    with pytest.raises(d.DnsError, match="REFUSED"):
        d.update("127.0.0.1", named, ZONE, kr(OTHER_SECRET, "intruder"), "intruder", "hmac-sha256",
                 NAME, ["10.77.0.13"], 5)
    assert d.query("127.0.0.1", named, NAME)[0] == ["10.77.0.11"]


def test_unsigned_update_is_never_sent_and_would_be_refused(named):
    with pytest.raises(d.DnsError, match="never sends an unsigned"):
        d.keyring(KEY, "")
    with pytest.raises(d.DnsError, match="unsigned"):
        d.update("127.0.0.1", named, ZONE, None, KEY, "hmac-sha256", NAME, ["10.77.0.13"], 5)
    # and the server itself refuses one (what the signature protects)
    import dns.query
    import dns.rcode
    import dns.update
    upd = dns.update.UpdateMessage(ZONE)
    upd.replace(NAME, 5, "A", "10.77.0.13")
    assert dns.query.tcp(upd, "127.0.0.1", port=named, timeout=5).rcode() == dns.rcode.REFUSED


def test_unreachable_server(tmp_path):
    with pytest.raises(d.DnsError, match="no answer|cannot reach"):
        d.query("127.0.0.1", free_port(), NAME, timeout=0.5, tcp=True)


def test_names():
    assert d.absolute("shop.example.test") == "shop.example.test."
    assert d.absolute("shop", ZONE) == "shop.example.test."
    assert d.absolute("SHOP.example.test.") == "shop.example.test."
