"""The testbed's network: one bridge on the host, one network namespace per server (and DNS)."""

from __future__ import annotations

from pathlib import Path

from .config import TestbedConfig
from .shell import run


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def create_bridge(cfg: TestbedConfig) -> None:
    if not link_exists(cfg.bridge):
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    run(["ip", "addr", "replace", f"{cfg.bridge_address}/24", "dev", cfg.bridge])
    run(["ip", "link", "set", cfg.bridge, "up"])


def create_namespace(cfg: TestbedConfig, netns: str, host_veth: str, address: str) -> None:
    """A namespace whose eth0 sits on the bridge with `address`."""
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    if not link_exists(host_veth):
        run(["ip", "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", host_veth, "master", cfg.bridge, "up"])
    run(["ip", "-n", netns, "addr", "replace", f"{address}/24", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "route", "replace", "default", "via", cfg.bridge_address])


def delete_namespace(netns: str, host_veth: str) -> None:
    if link_exists(host_veth):
        run(["ip", "link", "del", host_veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)


def delete_bridge(cfg: TestbedConfig) -> None:
    if link_exists(cfg.bridge):
        run(["ip", "link", "del", cfg.bridge], check=False)


def set_link(host_veth: str, up: bool) -> None:
    """Cut or restore one server's link (fault tests)."""
    run(["ip", "link", "set", host_veth, "up" if up else "down"])
