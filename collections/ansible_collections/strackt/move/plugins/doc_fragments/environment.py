# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options every strackt.move module shares; argument spec: module_utils/environment.py."""

from __future__ import annotations


class ModuleDocFragment:

    # The env a module acts on. Spec: environment_argument_spec().
    DOCUMENTATION = r"""
options:
  env:
    description:
      - Name of the environment, a key of C(strackt_environments).
      - Must match C(^[a-z][a-z0-9-]{0,30}$).
    type: str
    required: true
notes:
  - Environments are defined in C(strackt_environments) (inventory C(group_vars/all/environments.yml));
    see C(docs/architecture.md) of strackt.move.
"""

    # Modules that read or write move records on the control node.
    STATE_DIR = r"""
options:
  state_dir:
    description:
      - Directory on the control node that holds move records (C(strackt_state_dir)) with the file store.
    type: path
    default: /var/lib/strackt-move
  record_store:
    description:
      - Where move records live and are locked. V(file) (the default) keeps them under O(state_dir) on
        this node. A PostgreSQL DSN (C(postgresql://USER@HOST/DB), or libpq C(key=value) pairs) keeps
        them in that database, which several control or execution nodes can share (AWX); it needs the
        Python library C(psycopg) (v3) where the task runs. See C(docs/record-store.md).
      - Usually set by the environment variable E(STRACKT_RECORD_STORE) (an AWX credential injects it)
        rather than in a task. The DSN may hold a password; it is never logged. TLS with C(sslmode=verify-full)
        is used for a host reached over TCP unless the DSN sets C(sslmode).
    type: str
"""
