# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strackt.move.pg_move_plan on the control node, in the worker Ansible forked (see local_action)."""

from __future__ import annotations

from ansible_collections.strackt.move.plugins.modules import pg_move_plan
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import LocalModuleAction


class ActionModule(LocalModuleAction):
    argument_spec = staticmethod(pg_move_plan.argument_spec)
    work = staticmethod(pg_move_plan.work)
