#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dns_records
short_description: Query or set an environment's DNS A records at the authoritative server
version_added: 0.1.0
description:
  - Runs on the control node (delegate to C(localhost)); needs dnspython.
  - O(state=query) asks the authoritative server directly and requires an authoritative
    (AA) NOERROR answer.
  - O(state=present) replaces the A rrset and TTL of each name with a TSIG-signed RFC 2136
    update over TCP, then asks the server again until it answers the new rrset. With
    O(expect_addresses) the update carries the current rrset as a prerequisite, so the switch is
    a compare-and-swap that the server refuses if someone else changed the records.
  - Never sends an unsigned update. The server's refusal (NOTAUTH, REFUSED, a bad TSIG
    signature, a failed prerequisite) is reported with what to check.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.dns
options:
  names:
    description: The names (the env's domains); relative names are taken inside O(zone).
    type: list
    elements: str
    required: true
  state:
    description: Only read, or make the names answer O(addresses).
    type: str
    choices: [query, present]
    default: query
  addresses:
    description: The A addresses every name must answer (O(state=present)).
    type: list
    elements: str
  ttl:
    description: The TTL to set (O(state=present)); default keeps each name's current TTL.
    type: int
  expect_addresses:
    description:
      - With O(state=present), a prerequisite; each name's current A rrset must be exactly these
        addresses (an empty list means no A record), or the server refuses the update. A name
        that already answers O(addresses) with O(ttl) is left alone either way.
      - With O(state=query), fail unless each name answers exactly these addresses.
    type: list
    elements: str
  expect_records:
    description:
      - Name to list of addresses, as the move record keeps them (names inside O(zone)).
      - With O(state=query), fail unless each name answers exactly the addresses given for it.
      - With O(state=present), each name's own prerequisite (as O(expect_addresses), which it
        overrides for the names it lists), so one call switches several names.
    type: dict
  allow_addresses:
    description:
      - With O(state=query), fail when a name answers an address that is not in this list.
    type: list
    elements: str
  mismatch_note:
    description:
      - What a failed O(expect_addresses), O(expect_records) or O(allow_addresses) check means
        and what to do, added to the failure message.
    type: str
    default: "someone changed the records; check them before going on"
  ttl_best_effort:
    description:
      - With O(state=present), a name that already answers O(addresses) and whose TTL cannot be
        set is not a failure; the reason is returned in RV(ttl_not_set) instead.
    type: bool
    default: false
  check_key:
    description:
      - With O(state=query), also prove the server accepts the TSIG key without changing
        anything (a signed update carrying only the current rrset as prerequisite). Needs
        O(tsig_secret). Preflight uses it so a wrong key is refused before a move starts.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the server to answer the new rrset after an update.
    type: float
    default: 10
requirements:
  - dnspython >= 2.0
"""

EXAMPLES = r"""
- name: Lower the TTL for the move, keeping the address
  strackt.move.dns_records:
    server: "{{ strackt_dns_server }}"
    port: "{{ strackt_dns_port }}"
    zone: "{{ strackt_dns_zone }}"
    tsig_key_name: "{{ strackt_dns_tsig_key_name }}"
    tsig_secret: "{{ strackt_dns_tsig_secret }}"
    names: [shop.example.test]
    state: present
    addresses: [10.77.0.11]
    expect_addresses: [10.77.0.11]
    ttl: 5
  delegate_to: localhost

- name: The connection once per play, for every module of the dns action group
  hosts: localhost
  module_defaults:
    group/strackt.move.dns:
      server: "{{ strackt_dns_server }}"
      zone: "{{ strackt_dns_zone }}"
      tsig_secret: "{{ strackt_dns_tsig_secret }}"
  tasks:
    - name: Refuse unless the records still point at the source
      strackt.move.dns_records:
        names: [shop.example.test]
        expect_addresses: [10.77.0.11]
        mismatch_note: nothing was switched

- name: Switch to the target (compare-and-swap)
  strackt.move.dns_records:
    server: "{{ strackt_dns_server }}"
    zone: "{{ strackt_dns_zone }}"
    tsig_secret: "{{ strackt_dns_tsig_secret }}"
    names: [shop.example.test]
    state: present
    addresses: [10.77.0.12]
    expect_addresses: [10.77.0.11]
  delegate_to: localhost
"""

RETURN = r"""
records:
  description: Each absolute name with the addresses and TTL the server answers (after any update).
  returned: always
  type: dict
  sample: {"shop.example.test.": {"addresses": ["10.77.0.12"], "ttl": 5}}
previous:
  description: The same, before the update.
  returned: always
  type: dict
updated:
  description: Names that were (or in check mode would be) updated.
  returned: always
  type: list
  elements: str
ttl_not_set:
  description: With O(ttl_best_effort), each name whose TTL could not be set, with the reason.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.strackt.move.plugins.module_utils import dns_records as d


def main():
    argument_spec = d.dns_argument_spec()
    argument_spec.update(
        names=dict(type="list", elements="str", required=True),
        state=dict(type="str", default="query", choices=["query", "present"]),
        check_key=dict(type="bool", default=False),
        addresses=dict(type="list", elements="str"),
        ttl=dict(type="int"),
        expect_addresses=dict(type="list", elements="str"),
        expect_records=dict(type="dict"),
        allow_addresses=dict(type="list", elements="str"),
        mismatch_note=dict(type="str", default="someone changed the records; check them before going on"),
        ttl_best_effort=dict(type="bool", default=False),
        timeout=dict(type="float", default=10),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("addresses", "tsig_secret"))],
        supports_check_mode=True,
    )
    if not d.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(d.DNSPYTHON_IMPORT_ERROR))
    p = module.params
    zone = d.absolute(p["zone"])
    names = [d.absolute(n, zone) for n in p["names"]]
    server, port = p["server"], p["port"]

    previous = {}
    try:
        for name in names:
            addrs, ttl = d.query(server, port, name)
            previous[name] = {"addresses": addrs, "ttl": ttl}
    except d.DnsError as exc:
        module.fail_json(msg=str(exc))
    if p["state"] == "query":
        query(module, p, zone, names, previous)

    want = sorted(set(p["addresses"]))
    expect_all = sorted(set(p["expect_addresses"])) if p["expect_addresses"] is not None else None
    expect_by_name = {d.absolute(n, zone): sorted(set(a)) for n, a in (p["expect_records"] or {}).items()}
    updated = []
    for name in names:
        cur = previous[name]
        ttl = p["ttl"] if p["ttl"] is not None else (cur["ttl"] if cur["ttl"] is not None else 300)
        if cur["addresses"] == want and cur["ttl"] == ttl:
            continue
        expect = expect_by_name.get(name, expect_all)
        if expect is not None and cur["addresses"] != expect:
            module.fail_json(
                msg="%s answers %s at %s, not the expected %s: someone changed it; not updating. "
                    "Check the records and the move record before retrying" % (name, cur["addresses"], server, expect),
                records=previous, previous=previous, updated=updated)
        updated.append((name, ttl, expect))
    if module.check_mode or not updated:
        module.exit_json(changed=bool(updated), records=previous, previous=previous,
                         updated=[n for n, _ttl, _expect in updated], ttl_not_set={})

    records = dict(previous)
    ttl_not_set = {}
    for name, ttl, expect in updated:
        try:
            key_ring = d.keyring(p["tsig_key_name"], p["tsig_secret"], p["tsig_algorithm"])
            d.update(server, port, zone, key_ring, p["tsig_key_name"], p["tsig_algorithm"], name, want, ttl,
                     expect_addresses=expect)
            addrs, got_ttl = d.wait_for(server, port, name, want, ttl, timeout=p["timeout"])
        except d.DnsError as exc:
            # only the TTL was left to set: with ttl_best_effort that is reported, not a failure
            if p["ttl_best_effort"] and previous[name]["addresses"] == want:
                ttl_not_set[name] = str(exc)
                continue
            module.fail_json(msg=str(exc), records=records, previous=previous,
                             updated=[n for n, _ttl, _expect in updated], ttl_not_set=ttl_not_set)
        records[name] = {"addresses": addrs, "ttl": got_ttl}
    changed = len(ttl_not_set) < len(updated)
    module.exit_json(changed=changed, records=records, previous=previous,
                     updated=[n for n, _ttl, _expect in updated if n not in ttl_not_set], ttl_not_set=ttl_not_set)


def query(module, p, zone, names, previous):
    """state=query: the key check and the comparisons asked for, then exit."""
    if p["check_key"] and not module.check_mode:
        try:
            key_ring = d.keyring(p["tsig_key_name"], p["tsig_secret"], p["tsig_algorithm"])
            for name in names:
                d.check_key(p["server"], p["port"], zone, key_ring, p["tsig_key_name"], p["tsig_algorithm"], name,
                            previous[name]["addresses"])
        except d.DnsError as exc:
            module.fail_json(msg=str(exc), records=previous, previous=previous, updated=[])
    problems = d.mismatches(previous, expect_records=p["expect_records"], expect_addresses=p["expect_addresses"],
                            allow_addresses=p["allow_addresses"], zone=zone)
    if problems:
        module.fail_json(msg="at DNS server %s: %s: %s" % (p["server"], "; ".join(problems), p["mismatch_note"]),
                         records=previous, previous=previous, updated=[], mismatches=problems)
    module.exit_json(changed=False, records=previous, previous=previous, updated=[], ttl_not_set={})


if __name__ == "__main__":
    main()
