# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a module on the source reaches the target's copy of the env's data; argument spec:
transfer_argument_spec() in plugins/module_utils/rsync.py."""

from __future__ import annotations


class ModuleDocFragment:

    # Every option is needed by each action that copies data (the module says which).
    DOCUMENTATION = r"""
options:
  env_root:
    description:
      - The env's root. Data paths are copied relative to it (the target's rsync guard, installed
        by M(strackt.move.move_key), takes them so).
    type: path
  data_paths:
    description: The env's data paths (absolute, under O(env_root)).
    type: list
    elements: path
  target_address:
    description: The target's address (where the data goes, or comes back from).
    type: str
  key_path:
    description: The move's private key on this server (M(strackt.move.move_key) made it).
    type: path
  known_hosts_path:
    description: The known_hosts file pinning the target's host key (M(strackt.move.move_key) wrote it).
    type: path
"""
