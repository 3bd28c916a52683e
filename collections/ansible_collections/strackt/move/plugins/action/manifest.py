# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strackt.move.manifest: the walk on the task's host, the file and the comparison on the control node.

Why: a manifest of an env of 20,000 files is tens of thousands of dicts. As a registered
variable templated into the next task's arguments it cost Ansible 13 s per comparison on the
reference env (ansible-core 2.19 copies and checks every value it templates), and the check after
the switch-over passes two. ``save`` keeps the entries in a file on the control node instead,
``expected_file`` compares with one there: the entries cross from the host once, as the
module's JSON result, and never become a variable.
"""

from __future__ import annotations

from typing import Any

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.strackt.move.plugins.module_utils import manifest as mf
from ansible_collections.strackt.move.plugins.modules import manifest

_ON_THE_CONTROL_NODE = ("save", "expected_file")


class ActionModule(ActionBase):

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict:
        result = super().run(tmp, task_vars)
        del tmp  # unused: the module is run with Ansible's own temporary directory
        validated = ArgumentSpecValidator(manifest.argument_spec(), mutually_exclusive=manifest.MUTUALLY_EXCLUSIVE) \
            .validate(dict(self._task.args))
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return result
        params = validated.validated_parameters
        if not (params["save"] or params["expected_file"]):
            result.update(self._execute_module(module_args=dict(self._task.args), task_vars=task_vars))
            return result
        try:
            expected = mf.load(params["expected_file"]) if params["expected_file"] else None
        except ValueError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        module_args = {k: v for k, v in self._task.args.items() if k not in _ON_THE_CONTROL_NODE}
        module_args["return_entries"] = True
        walked = self._execute_module(module_args=module_args, task_vars=task_vars)
        if walked.get("failed"):
            result.update(walked)
            return result
        entries = walked.pop("entries")
        if expected is not None:
            walked["comparison"], failure = manifest.check(params, entries, expected)
            if failure:
                walked.update(failed=True, msg=failure)
        if params["save"]:
            host = self._task.delegate_to or (task_vars or {}).get("inventory_hostname", "host")
            walked["manifest_file"] = mf.save(entries, C.DEFAULT_LOCAL_TMP, str(host))
        if params["return_entries"]:
            walked["entries"] = entries
        result.update(walked)
        return result
