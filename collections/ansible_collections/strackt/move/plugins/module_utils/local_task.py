# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of a control-node module, written once for both ways Ansible may run it.

A module whose work happens on the control node (the move records, the env definitions) is
called a few dozen times per move. As a module each call builds a payload and starts a new
Python; its action plugin (plugins/plugin_utils/local_action.py) runs the same work in the
worker Ansible already forked. The work is a function ``work(params, check_mode) -> result``
that raises TaskFailed; ``run_as_module`` adapts it to AnsibleModule.
"""

from __future__ import annotations

from typing import Any, Callable

Work = Callable[[dict, bool], dict]


class TaskFailed(Exception):
    """The task fails with ``msg``; ``details`` are returned beside it (e.g. the record)."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def run_as_module(module: Any, work: Work) -> None:
    """Run ``work`` on an AnsibleModule's params and exit with its result or its failure."""
    try:
        result = work(module.params, module.check_mode)
    except TaskFailed as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)
