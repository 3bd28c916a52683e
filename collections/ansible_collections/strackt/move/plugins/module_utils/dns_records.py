# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The env's DNS A records at its authoritative server: query, and TSIG-signed RFC 2136 replace.

Queries go straight to the authoritative server and require AA + NOERROR (or an authoritative
NXDOMAIN/NODATA, reported as no addresses). Updates are always TSIG signed, replace the whole A
rrset and its TTL, and may carry the expected current addresses as a prerequisite, so a switch is
a compare-and-swap. After an update the server is asked again until it answers the new rrset.
Needs dnspython (control node only).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.tsig
    import dns.tsigkeyring
    import dns.update
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = exc

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224")


def dns_argument_spec():
    """The DNS server connection every module of the action group dns takes (doc fragment
    strackt.move.dns); a play sets it once with module_defaults."""
    return dict(
        server=dict(type="str", required=True),
        port=dict(type="int", default=53),
        zone=dict(type="str", required=True),
        tsig_key_name=dict(type="str", default="strackt-move"),
        tsig_secret=dict(type="str", no_log=True),
        tsig_algorithm=dict(type="str", default="hmac-sha256", choices=sorted(ALGORITHMS)),
    )


class DnsError(Exception):
    pass


def absolute(name, zone=None):
    """'www.example.test' -> 'www.example.test.'; a relative name is taken inside ``zone``."""
    name = name.strip()
    if name.endswith("."):
        return name.lower()
    if zone and not (name == zone.rstrip(".") or name.endswith("." + zone.rstrip("."))):
        name = name + "." + zone.rstrip(".")
    return name.lower() + "."


def _shown(addresses):
    return ", ".join(addresses) if addresses else "nothing"


def mismatches(found, expect_records=None, expect_addresses=None, allow_addresses=None, zone=None):
    """What the answers ``found`` ({absolute name: {"addresses": [...], ...}}) get wrong, one
    message a name: not exactly ``expect_records[name]`` (names as the move record wrote them),
    not exactly ``expect_addresses`` (every name), or an address outside ``allow_addresses``."""
    problems = []
    expected = {absolute(n, zone): sorted(set(a)) for n, a in (expect_records or {}).items()}
    for name in sorted(set(found) | set(expected)):
        got = sorted(set((found.get(name) or {}).get("addresses") or []))
        want = expected.get(name)
        if want is None and expect_addresses is not None:
            want = sorted(set(expect_addresses))
        if want is not None and got != want:
            problems.append("%s answers %s, not %s" % (name, _shown(got), _shown(want)))
        elif allow_addresses is not None and not set(got) <= set(allow_addresses):
            problems.append("%s answers %s, not only %s" % (name, _shown(got), _shown(sorted(set(allow_addresses)))))
    return problems


def keyring(key_name, secret, algorithm="hmac-sha256"):
    if not secret:
        raise DnsError("no TSIG secret: strackt.move never sends an unsigned DNS update "
                       "(set strackt_dns_tsig_secret)")
    if algorithm not in ALGORITHMS:
        raise DnsError("TSIG algorithm %s is not accepted (use one of %s)" % (algorithm, ", ".join(ALGORITHMS)))
    try:
        return dns.tsigkeyring.from_text({key_name: (algorithm, secret)})
    except Exception as exc:
        raise DnsError("the TSIG secret for key %s is not valid base64: %s" % (key_name, exc))


def query(server, port, name, timeout=3.0, tcp=False):
    """(sorted addresses, ttl) of the A rrset of ``name``, asked of the authoritative server.

    An authoritative 'no such name / no A record' gives ([], None). Anything not authoritative
    or another rcode raises DnsError.
    """
    qname = dns.name.from_text(name)
    msg = dns.message.make_query(qname, dns.rdatatype.A)
    msg.flags &= ~dns.flags.RD
    try:
        send = dns.query.tcp if tcp else dns.query.udp
        resp = send(msg, server, port=int(port), timeout=timeout)
        if resp.flags & dns.flags.TC:
            resp = dns.query.tcp(msg, server, port=int(port), timeout=timeout)
    except dns.exception.Timeout:
        raise DnsError("no answer from DNS server %s port %s within %.0f s for %s" % (server, port, timeout, name))
    except OSError as exc:
        raise DnsError("cannot reach DNS server %s port %s: %s" % (server, port, exc))
    rcode = resp.rcode()
    if not resp.flags & dns.flags.AA:
        raise DnsError("DNS server %s is not authoritative for %s (answer without AA, rcode %s); "
                       "point strackt_dns_server at the zone's primary" % (server, name, dns.rcode.to_text(rcode)))
    if rcode == dns.rcode.NXDOMAIN:
        return [], None
    if rcode != dns.rcode.NOERROR:
        raise DnsError("DNS server %s answered %s for %s" % (server, dns.rcode.to_text(rcode), name))
    for rrset in resp.answer:
        if rrset.name == qname and rrset.rdtype == dns.rdatatype.A:
            return sorted(r.address for r in rrset), rrset.ttl
    return [], None


def _explain(rcode, zone, key_name, server):
    text = dns.rcode.to_text(rcode)
    if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
        return ("DNS server %s refused the update: prerequisite failed (%s): the records are not "
                "what this move expected; someone else changed them. Query them and decide before "
                "retrying" % (server, text))
    if rcode == dns.rcode.NOTAUTH:
        return ("DNS server %s answered NOTAUTH: it is not authoritative for zone %s or did not "
                "accept TSIG key %s (wrong secret or algorithm, or clock skew)" % (server, zone, key_name))
    if rcode == dns.rcode.REFUSED:
        return ("DNS server %s REFUSED the update of zone %s: its allow-update/update-policy does not "
                "grant key %s" % (server, zone, key_name))
    if rcode == dns.rcode.NOTZONE:
        return "DNS server %s answered NOTZONE: a name is not inside zone %s" % (server, zone)
    return "DNS server %s answered %s to the update of zone %s" % (server, text, zone)


def update(server, port, zone, key_ring, key_name, algorithm, name, addresses, ttl,
           expect_addresses=None, timeout=5.0):
    """Replace the A rrset of ``name`` with ``addresses`` at ``ttl`` (signed, over TCP).

    ``expect_addresses``: None = no prerequisite; [] = the name must have no A record;
    a list = the A rrset must be exactly that set (compare-and-swap).
    """
    if key_ring is None:
        raise DnsError("refusing an unsigned DNS update")
    if not addresses:
        raise DnsError("no addresses given for %s" % name)
    upd = dns.update.UpdateMessage(zone, keyring=key_ring, keyname=key_name,
                                   keyalgorithm=dns.name.from_text(algorithm))
    if expect_addresses is not None:
        if expect_addresses:
            for addr in expect_addresses:
                upd.present(name, "A", addr)
        else:
            upd.absent(name, "A")
    upd.replace(name, int(ttl), "A", *addresses)
    return _send_signed(upd, server, port, zone, key_name, timeout, "the update")


def check_key(server, port, zone, key_ring, key_name, algorithm, name, addresses, timeout=5.0):
    """Prove the server accepts ``key_name``'s signature, changing nothing: a signed update with
    only prerequisites (``name`` answers ``addresses``) and no update section. A wrong key gets
    NOTAUTH/BADSIG (DnsError naming the key); a server that cannot be reached, DnsError too."""
    if key_ring is None:
        raise DnsError("no TSIG secret: cannot check the key")
    upd = dns.update.UpdateMessage(zone, keyring=key_ring, keyname=key_name,
                                   keyalgorithm=dns.name.from_text(algorithm))
    for addr in addresses or []:
        upd.present(name, "A", addr)
    if not addresses:
        upd.present(name)
    return _send_signed(upd, server, port, zone, key_name, timeout, "the key check")


def _send_signed(upd, server, port, zone, key_name, timeout, what):
    """Send a signed update message; every way it can fail becomes a DnsError that says why."""
    try:
        resp = dns.query.tcp(upd, server, port=int(port), timeout=timeout)
    except dns.tsig.PeerError as exc:
        raise DnsError("DNS server %s rejected the TSIG signature of key %s (%s: %s): check "
                       "strackt_dns_tsig_secret / strackt_dns_tsig_algorithm"
                       % (server, key_name, type(exc).__name__, exc))
    except dns.exception.Timeout:
        raise DnsError("no answer from DNS server %s port %s within %.0f s to %s" % (server, port, timeout, what))
    except OSError as exc:
        raise DnsError("cannot reach DNS server %s port %s: %s" % (server, port, exc))
    if resp.rcode() != dns.rcode.NOERROR:
        raise DnsError(_explain(resp.rcode(), zone, key_name, server))
    return resp


def wait_for(server, port, name, addresses, ttl, timeout=10.0, interval=0.2):
    """Ask the authoritative server until it answers exactly ``addresses`` with ``ttl``."""
    want = sorted(addresses)
    deadline = time.monotonic() + timeout
    while True:
        got, got_ttl = query(server, port, name, tcp=True)
        if got == want and (ttl is None or got_ttl == int(ttl)):
            return got, got_ttl
        if time.monotonic() >= deadline:
            raise DnsError("after the update DNS server %s still answers %s (ttl %s) for %s, expected %s "
                           "(ttl %s)" % (server, got, got_ttl, name, want, ttl))
        time.sleep(interval)
