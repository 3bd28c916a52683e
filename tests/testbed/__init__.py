"""A testbed of real servers on one machine (systemd-nspawn, BIND9, PostgreSQL, Caddy)."""

from .config import TestbedConfig
from .testbed import Testbed

__all__ = ["Testbed", "TestbedConfig"]
