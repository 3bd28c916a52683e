# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strackt.move.data_check on the control node, in the worker Ansible forked (see local_action):
it reads the manifests strackt.move.manifest saved there."""

from __future__ import annotations

from ansible_collections.strackt.move.plugins.modules import data_check
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import LocalModuleAction


class ActionModule(LocalModuleAction):
    argument_spec = staticmethod(data_check.argument_spec)
    work = staticmethod(data_check.work)
