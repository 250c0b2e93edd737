"""Namespace helpers for the istio-redirect tests (used by ``conftest.py`` and the tests).

Kept in this directory, self-contained, until a shared version lands in ``cnisdk.testing``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

GOLDEN = Path(__file__).parent / "golden"


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not found"
    probe = f"cnisdk-t-probe{secrets.token_hex(3)}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


_REASON: list[str | None] = []


def require_netns() -> None:
    """Skip (or fail under ``CNISDK_REQUIRE_NETNS=1``) when namespaces cannot be used."""
    if not _REASON:
        _REASON.append(_netns_unavailable())
    reason = _REASON[0]
    if reason is None:
        return
    if os.environ.get("CNISDK_REQUIRE_NETNS") == "1":
        pytest.fail(f"network namespaces required (CNISDK_REQUIRE_NETNS=1) but: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason}")


def new_netns() -> str:
    """Create a fresh namespace ``cnisdk-t-<random>``; the caller must delete it."""
    name = f"cnisdk-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return name


def delete_netns(name: str) -> None:
    """Delete a namespace made by :func:`new_netns` (ignores one already gone)."""
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


class NetnsRunner:
    """A ``CommandRunner`` that runs argv via ``ip netns exec NAME`` and records every call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[list[str]] = []
        # Numeric-only output and no host lock contention for legacy (per-netns lock file).
        self.env = {
            **os.environ,
            "LC_ALL": "C",
            "XTABLES_LOCKFILE": f"/run/xtables-{name}.lock",
        }

    async def __call__(
        self, argv: Sequence[str], input: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        self.calls.append(list(argv))
        result = await anyio.run_process(
            ["ip", "netns", "exec", self.name, *argv], input=input, check=False, env=self.env
        )
        return result.returncode, result.stdout, result.stderr

    def sync(self, *argv: str, input: bytes | None = None) -> tuple[int, str, str]:
        """Run one command synchronously (test setup); returns (code, stdout, stderr)."""

        async def go() -> tuple[int, bytes, bytes]:
            return await self(argv, input)

        code, out, err = anyio.run(go)
        return code, out.decode(), err.decode()
