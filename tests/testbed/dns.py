"""The authoritative DNS server: BIND9 in its own namespace, taking TSIG-signed RFC 2136 updates."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from .config import APP_DOMAINS, DNS_ZONE, ENV_DOMAIN, ENV_TTL, TSIG_KEY_NAME, TestbedConfig


def new_tsig_secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def write_config(cfg: TestbedConfig, secret: str, env_address: str) -> Path:
    workdir = cfg.state_dir / "dns"
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    zone_file = workdir / f"{DNS_ZONE}.zone"
    records = "\n".join(f"{s.name} 300 IN A {s.address}" for s in cfg.servers)
    # Every sample app's domain starts on the env's source server (shop's is ENV_DOMAIN).
    app_records = "\n".join(f"{domain}. {ENV_TTL} IN A {env_address}" for domain in APP_DOMAINS.values())
    zone_file.write_text(f"""\
$ORIGIN {DNS_ZONE}.
$TTL 300
@ IN SOA ns1.{DNS_ZONE}. hostmaster.{DNS_ZONE}. ( 1 60 60 3600 5 )
@ IN NS ns1.{DNS_ZONE}.
ns1 IN A {cfg.dns_address}
{records}
{app_records}
""")
    for stale in workdir.glob(f"{DNS_ZONE}.zone.jnl"):
        stale.unlink()
    conf = workdir / "named.conf"
    conf.write_text(f"""\
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port 53 {{ {cfg.dns_address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
key "{TSIG_KEY_NAME}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
zone "{DNS_ZONE}" {{
    type primary;
    file "{zone_file}";
    allow-update {{ key "{TSIG_KEY_NAME}"; }};
}};
""")
    conf.chmod(0o600)
    return conf


def start(cfg: TestbedConfig, conf: Path) -> int:
    log = cfg.state_dir / "dns" / "named.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", cfg.dns_netns, "/usr/sbin/named", "-g", "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return proc.pid


def query_a(server: str, name: str, timeout: float = 2.0) -> tuple[list[str], int]:
    """Ask the authoritative server directly; return (addresses, ttl)."""
    response = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=timeout)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return [], 0
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"{server} answered {dns.rcode.to_text(response.rcode())} for {name}")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return sorted(r.address for r in rrset), rrset.ttl
    return [], 0


def wait_ready(cfg: TestbedConfig, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            query_a(cfg.dns_address, ENV_DOMAIN, timeout=0.5)
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"BIND9 did not answer on {cfg.dns_address} within {timeout}s: {last}; "
                       f"see {cfg.state_dir / 'dns' / 'named.log'}")


def set_a(cfg: TestbedConfig, secret: str, name: str, address: str, ttl: int = ENV_TTL) -> None:
    """Signed update, used by the testbed's reset (the product has its own module)."""
    keyring = dns.tsigkeyring.from_text({TSIG_KEY_NAME: secret})
    update = dns.update.UpdateMessage(DNS_ZONE, keyring=keyring, keyname=TSIG_KEY_NAME,
                                      keyalgorithm="hmac-sha256")
    update.replace(name + ".", ttl, "A", address)
    response = dns.query.tcp(update, cfg.dns_address, timeout=5)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"DNS update of {name} refused: {dns.rcode.to_text(response.rcode())}")
