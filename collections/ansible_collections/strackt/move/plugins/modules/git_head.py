#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_head
short_description: The commit at the head of an environment's branch
version_added: 0.1.0
description:
  - Runs C(git ls-remote) against O(repo) and returns the full sha of O(branch), the commit a
    move or deploy will put live.
  - With O(compare_to) (the sha running somewhere), says whether it differs.
  - Never changes anything. Needs C(git) on the host it runs on, and that host must reach O(repo).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  repo:
    description: The env's git repository URL.
    type: str
    required: true
  branch:
    description: The env's branch.
    type: str
    required: true
  compare_to:
    description: A commit sha to compare the head with, for example the content of C(REVISION).
    type: str
requirements:
  - git
"""

EXAMPLES = r"""
- name: Find the commit that will go live
  strackt.move.git_head:
    env: shop
    repo: git://10.77.0.1/shop.git
    branch: main
    compare_to: "{{ source_facts.revision }}"
  register: head
"""

RETURN = r"""
commit:
  description: Full sha of the head of the branch.
  returned: success
  type: str
  sample: 3f0c6a3d1b9e4c2a8f7e6d5c4b3a29180716f5e4
ref:
  description: The ref that was resolved.
  returned: success
  type: str
  sample: refs/heads/main
differs:
  description: True when O(compare_to) is given and is not the head commit.
  returned: success
  type: bool
"""

import re

from ansible_collections.strackt.move.plugins.module_utils.environment import BRANCH_RE, env_module

SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The sha of exactly ``ref`` in ``git ls-remote`` output, or None."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref and SHA_RE.fullmatch(parts[0]):
            return parts[0]
    return None


def main() -> None:
    module, env = env_module(
        dict(
            repo=dict(type="str", required=True),
            branch=dict(type="str", required=True),
            compare_to=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    branch = p["branch"]
    if not BRANCH_RE.fullmatch(branch) or branch.startswith("-"):
        module.fail_json(msg="branch %r of env %r is not a valid branch name" % (branch, env))
    ref = "refs/heads/%s" % branch
    git = module.get_bin_path("git", required=True)
    rc, out, err = module.run_command(
        [git, "ls-remote", "--", p["repo"], ref],
        environ_update={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
    )
    if rc != 0:
        module.fail_json(
            msg="cannot read the repository %s of env %r (git ls-remote exited %d): %s; check the "
            "repo URL and that this host reaches it" % (p["repo"], env, rc, err.strip()),
            rc=rc, stderr=err,
        )
    commit = parse_ls_remote(out, ref)
    if commit is None:
        module.fail_json(
            msg="branch %r does not exist in %s (env %r): push it or fix strackt_environments.%s.branch"
            % (branch, p["repo"], env, env)
        )
    compare_to = (p["compare_to"] or "").strip()
    module.exit_json(
        changed=False,
        commit=commit,
        ref=ref,
        differs=bool(compare_to) and compare_to != commit,
    )


if __name__ == "__main__":
    main()
