"""Helpers for the example plugins' tests (a unique module name: conftest.py is not importable)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def prev_result(netns_path: str, ifname: str = "eth0", **extra: Any) -> dict[str, Any]:
    """A 1.0.0 result as an interface-creating plugin (bridge, ptp, ...) would leave it."""
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": ifname, "sandbox": netns_path}],
        **extra,
    }


def ip(*args: str) -> str:
    """Run iproute2's ``ip`` and return its output (raises if it fails)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def host_sysctl(name: str) -> str:
    """A sysctl of the test process's own (the host's) namespace, e.g. ``net/ipv4/ip_forward``."""
    return Path("/proc/sys", name).read_text().strip()
