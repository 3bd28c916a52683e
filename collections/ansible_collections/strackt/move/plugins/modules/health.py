#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: health
short_description: Check an environment's health through the server's own front proxy
version_added: 0.2.0
description:
  - Run on the server itself. For each of O(domains), asks the front proxy at O(proxy)
    (C(127.0.0.1), so a site closed to the public still answers) for C(GET) O(path) with that
    domain as C(Host), and requires O(status) within O(timeout) seconds. The app needs no
    particular health contract - any path that answers a known status will do (the env
    definition's C(health)).
  - With O(commit), also requires the deployed commit in O(revision_file) (written by deploy),
    so the check does not need the app's cooperation.
  - Tries again until every domain is healthy or O(wait) seconds have passed, then fails naming
    each domain's last answer (or returns them with O(fail=false)).
  - Changes nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
options:
  domains:
    description: The env's domains (each is asked for separately).
    type: list
    elements: str
    required: true
  path:
    description: The health path (C(health.path) of the env definition).
    type: str
    default: /
  status:
    description: The HTTP status a healthy env answers (C(health.status)).
    type: int
    default: 200
  timeout:
    description: Seconds one request may take (C(health.timeout)).
    type: int
    default: 5
  wait:
    description: Seconds to keep trying until healthy; 0 tries once.
    type: int
    default: 0
  proxy:
    description: The front proxy to ask, as C(host:port).
    type: str
    default: 127.0.0.1:80
  revision_file:
    description: The deployed commit's file (C(<root>/app/REVISION)); read when O(commit) is given.
    type: path
  commit:
    description: The commit that must be deployed (full sha).
    type: str
  fail:
    description: Fail when not healthy (V(false) returns the answers instead).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Wait until the env answers healthy on the deployed commit
  strackt.move.health:
    env: notes
    domains: [notes.example.test]
    path: /up
    status: 200
    timeout: 5
    wait: 60
    revision_file: /srv/notes/app/REVISION
    commit: 0123456789abcdef0123456789abcdef01234567
"""

RETURN = r"""
healthy:
  description: Every domain answered O(status) (and the commit matched, when asked).
  returned: success
  type: bool
answers:
  description: Each domain's last answer.
  returned: success
  type: list
  elements: dict
  sample: [{domain: notes.example.test, status: 200, ok: true, error: null, elapsed_ms: 12}]
revision:
  description: The content of O(revision_file) (when O(commit) is given), or null when unreadable.
  returned: success
  type: str
attempts:
  description: How many rounds of requests were made.
  returned: success
  type: int
"""

import time

from ansible_collections.strackt.move.plugins.module_utils.environment import HEALTH_PATH_RE, env_module
from ansible_collections.strackt.move.plugins.module_utils.health_probe import ask, describe


def read_revision(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def main() -> None:
    module, env = env_module(
        dict(
            domains=dict(type="list", elements="str", required=True),
            path=dict(type="str", default="/"),
            status=dict(type="int", default=200),
            timeout=dict(type="int", default=5),
            wait=dict(type="int", default=0),
            proxy=dict(type="str", default="127.0.0.1:80"),
            revision_file=dict(type="path"),
            commit=dict(type="str"),
            fail=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
        required_by=dict(commit=["revision_file"]),
    )
    p = module.params
    if not HEALTH_PATH_RE.fullmatch(p["path"]):
        module.fail_json(msg="path %r is not a URL path: start it with '/'" % p["path"])
    if not p["domains"]:
        module.fail_json(msg="domains is empty: give the env's domains")
    if ":" not in p["proxy"] or not p["proxy"].rpartition(":")[2].isdigit():
        module.fail_json(msg="proxy %r is not host:port" % p["proxy"])
    deadline = time.monotonic() + max(0, p["wait"])
    attempts = 0
    while True:
        attempts += 1
        answers = [ask(p["proxy"], d, p["path"], p["timeout"]) for d in p["domains"]]
        for answer in answers:
            answer["ok"] = answer["status"] == p["status"]
        revision = read_revision(p["revision_file"]) if p["commit"] else None
        commit_ok = not p["commit"] or revision == p["commit"]
        healthy = commit_ok and all(a["ok"] for a in answers)
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))
    result = dict(changed=False, healthy=healthy, answers=answers, revision=revision, attempts=attempts)
    if not healthy and p["fail"]:
        problems = [describe(a, p["status"]) for a in answers if not a["ok"]]
        if not commit_ok:
            problems.append("%s holds %s, not the commit %s" % (p["revision_file"], revision or "nothing", p["commit"]))
        module.fail_json(
            msg="env %r is not healthy through %s on GET %s after %ds: %s; look at its units "
            "(systemctl status 'strackt-env-%s*') and the front proxy" % (
                env, p["proxy"], p["path"], p["wait"], "; ".join(problems), env),
            **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
