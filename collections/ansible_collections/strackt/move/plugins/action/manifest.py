# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strackt.move.manifest: the walk on the task's host, the file and the comparison on the control node.

Why: a manifest of an env of 20,000 files is tens of thousands of dicts. As a registered
variable templated into the next task's arguments it cost Ansible seconds per task (ansible-core
2.19 copies and checks every value it templates), and the check after the switch-over passes
two. With ``save`` or ``expected_file`` the module writes the entries to a file in Ansible's
remote temporary directory, the file is fetched (a million entries are hundreds of megabytes:
minutes as a module's output read through the connection, seconds as a file), kept in the local
temporary directory of the playbook run, and compared there: the entries never become a variable.
"""

from __future__ import annotations

import os
from typing import Any

from ansible import constants as C
from ansible.plugins.action import ActionBase

from ansible_collections.strackt.move.plugins.module_utils import manifest as mf
from ansible_collections.strackt.move.plugins.modules import manifest
from ansible_collections.strackt.move.plugins.plugin_utils.local_action import validate

_ON_THE_CONTROL_NODE = ("save", "expected_file")


class ActionModule(ActionBase):

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict:
        result = super().run(tmp, task_vars)
        del tmp  # unused: the module gets Ansible's own temporary directory
        params, error = validate("manifest", manifest.argument_spec(), dict(self._task.args),
                                 mutually_exclusive=manifest.MUTUALLY_EXCLUSIVE)
        if error is not None:
            result.update(failed=True, msg=error)
            return result
        if not (params["save"] or params["expected_file"]):
            result.update(self._execute_module(module_args=dict(self._task.args), task_vars=task_vars))
            return result
        try:
            expected = mf.load(params["expected_file"]) if params["expected_file"] else params["expected"]
        except ValueError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        host = str(self._task.delegate_to or (task_vars or {}).get("inventory_hostname", "host"))
        local = mf.new_file(C.DEFAULT_LOCAL_TMP, host)
        try:
            walked = self._walk(local, task_vars)
            if walked.get("failed"):
                result.update(walked)
                return result
            wanted = params["return_entries"] or (params["return_entries"] is None and not params["save"])
            # a million entries take seconds to read: only when they are compared or returned
            entries = mf.load(local) if expected is not None or wanted else []
            if expected is not None:
                walked["comparison"], failure = manifest.check(params, entries, expected)
                if failure:
                    walked.update(failed=True, msg=failure)
            if params["save"]:
                walked["manifest_file"] = local
                local = None  # kept for the next task; gone with the playbook run's temporary directory
            if wanted:
                walked["entries"] = entries
        except ValueError as exc:
            walked = dict(failed=True, msg="the manifest fetched from %s: %s" % (host, exc))
        finally:
            if local is not None:
                os.unlink(local)
        result.update(walked)
        return result

    def _walk(self, local: str, task_vars: Any) -> dict:
        """Run the module on the host with its entries written to a file there, and fetch that
        file to ``local``: the module's result without the entries."""
        remote_tmp = self._make_tmp_path()
        try:
            remote = self._connection._shell.join_path(remote_tmp, "manifest.json")
            args = {k: v for k, v in self._task.args.items() if k not in _ON_THE_CONTROL_NODE}
            args.update(save_to=remote, return_entries=False)
            args.pop("expected", None)  # compared here
            walked = self._execute_module(module_name="strackt.move.manifest", module_args=args, task_vars=task_vars)
            if not walked.get("failed"):
                self._connection.fetch_file(remote, local)
                os.chmod(local, 0o600)
            return walked
        finally:
            self._remove_tmp_path(remote_tmp)
