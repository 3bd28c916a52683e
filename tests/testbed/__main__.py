"""`python -m tests.testbed up|down|status|reset` — see docs/architecture.md."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .testbed import Testbed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed",
                                     description="Real servers on this machine for strackt.move.")
    parser.add_argument("command", choices=["up", "down", "status", "reset"])
    parser.add_argument("--no-deploy", action="store_true", help="up: boot only, do not deploy the sample env")
    parser.add_argument("--json", action="store_true", help="status: machine-readable")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the testbed needs root (network namespaces, mounts, systemd-nspawn); run it with sudo",
              file=sys.stderr)
        return 2
    testbed = Testbed()
    if args.command == "up":
        testbed.up(deploy=not args.no_deploy)
        print(testbed.inventory_dir)
    elif args.command == "down":
        testbed.down()
        left = testbed.leftovers()
        if left:
            print("left behind: " + ", ".join(left), file=sys.stderr)
            return 1
    elif args.command == "reset":
        testbed.reset()
    else:
        status = testbed.status()
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print(f"testbed {status['index']}: {'up' if status['up'] else 'down'} (inventory {status['inventory']})")
            print(f"  dns   {status['dns']['address']:<12} {'running' if status['dns']['running'] else 'stopped'}")
            for name, srv in status["servers"].items():
                print(f"  {name:<5} {srv['address']:<12} {'running' if srv['running'] else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
