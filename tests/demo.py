"""`make demo`: move the sample env `shop` from srv1 to srv2 on local servers, with a client
writing and reading throughout, and show the result."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from tests.testbed import Testbed
from tests.testbed.client import Client
from tests.testbed.config import ENV_DOMAIN, ENV_NAME, REPO_ROOT
from tests.testbed.dns import query_a


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def controller(testbed: Testbed, *args: str) -> int:
    cmd = [str(REPO_ROOT / ".venv" / "bin" / "strackt-move"), "-i", str(testbed.inventory_dir), *args]
    print("$ strackt-move " + " ".join(args), flush=True)
    env = testbed.ansible_env()
    env["STRACKT_STATE_DIR"] = str(testbed.cfg.state_dir / "moves")
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT).returncode


def fetch_json(address: str, path: str) -> dict:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": ENV_DOMAIN})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--yes", action="store_true", help="confirm the switch-over without asking")
    args = parser.parse_args(argv)

    testbed = Testbed()
    say("bringing up the testbed: srv1, srv2, srv3, BIND9, PostgreSQL on srv1, shop on srv1")
    testbed.up()
    testbed.reset()
    before = query_a(testbed.dns_server, ENV_DOMAIN)[0]
    print(f"{ENV_DOMAIN} -> {before} (srv1 is {testbed.addresses['srv1']})")

    say("starting a client that writes and reads through the domain during the whole move")
    client = Client(testbed.dns_server, ENV_DOMAIN, writes_per_s=2, reads_per_s=4).start()

    say(f"moving {ENV_NAME} from srv1 to srv2")
    rc = controller(testbed, "start", ENV_NAME, "--target", "srv2")
    if rc != 4:  # 4: verified, waiting for the operator's confirmation
        client.stop()
        print(f"the move did not reach the confirmation gate (exit {rc})", file=sys.stderr)
        return 1

    confirm_args = ["confirm", ENV_NAME, "--wait"] + (["--yes"] if args.yes or not sys.stdin.isatty() else [])
    if not args.yes and not sys.stdin.isatty():
        print("no terminal to ask at and CONFIRM=yes not given: leaving the move waiting.\n"
              f"Confirm it with: .venv/bin/strackt-move -i {testbed.inventory_dir} confirm {ENV_NAME}")
        client.stop()
        return 0
    rc = controller(testbed, *confirm_args)
    time.sleep(3)  # let the client talk to the new server for a moment
    client.stop()
    if rc != 0:
        print(f"the switch-over did not complete (exit {rc})", file=sys.stderr)
        return 1

    say("result")
    after = query_a(testbed.dns_server, ENV_DOMAIN)[0]
    health = fetch_json(after[0], "/health")
    print(f"{ENV_DOMAIN} -> {after} (srv2 is {testbed.addresses['srv2']}); served by {health['server']}, "
          f"commit {health['commit'][:12]}")
    acknowledged = client.acknowledged_writes()
    missing = [i for i in acknowledged if fetch_json(after[0], f"/read/{i}").get("id") != i]
    summary = client.summary()
    print(f"client: {summary['requests']} requests, {summary['failed']} failed, "
          f"{len(acknowledged)} writes acknowledged, {len(missing)} missing after the move; "
          f"answered by {', '.join(summary['servers'])}")
    for failure in client.failed()[:10]:
        print(f"  failed: {time.strftime('%H:%M:%S', time.gmtime(failure.at))} {failure.kind} "
              f"status {failure.status} via {failure.address or '?'} {failure.error}")
    ok = after == [testbed.addresses["srv2"]] and health["server"] == "srv2" and not missing
    print("demo: " + ("OK" if ok else "FAILED"))
    if os.environ.get("STRACKT_DEMO_KEEP") != "1":
        print("the testbed stays up (make testbed-down to remove it)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
