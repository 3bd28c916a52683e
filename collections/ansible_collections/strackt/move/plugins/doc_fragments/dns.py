# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection to the authoritative DNS server; argument spec: dns_argument_spec() in
plugins/module_utils/dns_records.py. Modules with it are in the action group
C(strackt.move.dns), so a play sets it once with module_defaults."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  server:
    description: Address of the authoritative server (C(strackt_dns_server)).
    type: str
    required: true
  port:
    description: Its port (C(strackt_dns_port)).
    type: int
    default: 53
  zone:
    description: The zone the names are in (C(strackt_dns_zone)).
    type: str
    required: true
  tsig_key_name:
    description: Name of the TSIG key (C(strackt_dns_tsig_key_name)).
    type: str
    default: strackt-move
  tsig_secret:
    description:
      - Base64 TSIG secret (C(strackt_dns_tsig_secret)). Needed for any update; strackt.move
        never sends an unsigned one.
    type: str
  tsig_algorithm:
    description: TSIG algorithm (C(strackt_dns_tsig_algorithm)).
    type: str
    default: hmac-sha256
    choices: [hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512]
notes:
  - The module is in the action group C(strackt.move.dns). Set these options once per play with
    C(module_defaults), as the strackt.move playbooks do
    (C(group/strackt.move.dns) from the inventory's C(strackt_dns_*) variables).
"""
