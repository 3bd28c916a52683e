# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugins that run a control-node module's work in the worker Ansible has forked.

Why: the move records and env definitions are read and written a few dozen times per move, and
each module call costs a payload and a new Python (0.3 s on an idle control node, seconds on a
busy one) for work that takes milliseconds. The module files stay: they document the options
and keep the work runnable as a module (its unit tests run both ways). The work always runs on
the control node, whatever host or delegate_to the task names: these modules only ever touch the
control node's move records and read their arguments. The options are validated with the
module's own argument spec, so both ways accept and refuse the same input.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed, Work


def validate(name: str, argument_spec: dict, args: dict, **constraints: Any) -> tuple[dict, str | None]:
    """``args`` checked against ``argument_spec`` (and ``constraints`` such as
    ``mutually_exclusive``) as AnsibleModule checks them: (the validated parameters, None) or
    (_, the module's words for what is wrong; ``name``: the module)."""
    validated = ArgumentSpecValidator(argument_spec, **constraints).validate(args)
    unsupported = [e for e in validated.errors if type(e).__name__ == "UnsupportedError"]
    if unsupported:
        return {}, "Unsupported parameters for (%s) module: %s" % (name, unsupported[0])
    if validated.error_messages:
        return {}, "; ".join(validated.error_messages)
    return validated.validated_parameters, None


def run_work(name: str, argument_spec: dict, work: Work, args: dict, check_mode: bool) -> dict:
    """Validate ``args`` against ``argument_spec`` and run ``work``: the task's result. Bad
    arguments are refused with the module's words (``name``: the module)."""
    params, error = validate(name, argument_spec, args)
    if error is not None:
        return dict(failed=True, msg=error)
    try:
        result = work(params, check_mode)
    except TaskFailed as exc:
        return dict(failed=True, msg=exc.msg, **exc.details)
    return result


class LocalModuleAction(ActionBase):
    """Subclasses name the module's ``argument_spec()`` and ``work``."""

    _requires_connection = False  # the work never touches the task's host

    @staticmethod
    def argument_spec() -> dict:
        raise NotImplementedError

    @staticmethod
    def work(params: dict, check_mode: bool) -> dict:
        raise NotImplementedError

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict:
        result = super().run(tmp, task_vars)
        del tmp  # unused: nothing is copied to a host
        name = self._task.action.rsplit(".", 1)[-1]
        result.update(run_work(name, self.argument_spec(), self.work, dict(self._task.args), self._task.check_mode))
        return result
