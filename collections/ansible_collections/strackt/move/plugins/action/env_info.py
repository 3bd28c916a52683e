# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strackt.move.env_info on the control node, in the worker Ansible forked (see local_action)."""

from __future__ import annotations

from ansible_collections.strackt.move.plugins.modules import env_info
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import LocalModuleAction


class ActionModule(LocalModuleAction):
    argument_spec = staticmethod(env_info.argument_spec)
    work = staticmethod(env_info.work)
