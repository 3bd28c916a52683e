# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the pg_move_* modules; argument spec: module_utils/pg_module.py."""

from __future__ import annotations


class ModuleDocFragment:

    # The database moved and the move it belongs to. Spec: database_argument_spec().
    DOCUMENTATION = r"""
options:
  move_id:
    description:
      - The move this database move belongs to (the move record's C(move_id)). Every replication
        object of the move is named from it (C(strackt_<move_id>), lower case, C([a-z0-9_])).
    type: str
    required: true
  database:
    description:
      - The env's database (C(database.name) of the env).
    type: str
    required: true
  port:
    description: Port of PostgreSQL on this server (its local Unix socket is used).
    type: int
    default: 5432
requirements:
  - PostgreSQL from Debian's C(postgresql-common) layout on the server, and C(python3-psycopg2).
notes:
  - Runs as root on the database server; talks to the local PostgreSQL as its superuser
    (C(postgres), peer authentication on the Unix socket).
"""

    # The other server of the move and the move's replication password. Spec: peer_argument_spec().
    PEER = r"""
options:
  peer_address:
    description:
      - Address of the other database server of the move, as this server reaches it (its
        C(ansible_host)). pg_hba rules of the move admit only this address.
    type: str
    required: true
  peer_port:
    description: Port of PostgreSQL on the other server.
    type: int
    default: 5432
  password:
    description:
      - The move's replication password (16 to 200 printable ASCII characters). The move's role
        on both servers has it; pass the same value to every call of one move (derive it, for
        example, from a secret and the move id; the move record never holds a secret).
      - Stored on the servers only as a SCRAM verifier and in the subscriptions' connection
        strings (C(pg_subscription), readable by superusers only).
    type: str
    required: true
"""
