"""The iptables runner and goldens the istio-redirect rule tests share.

Namespaces themselves come from the cnisdk test kit (``cnisdk.testing``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anyio

GOLDEN = Path(__file__).parent / "golden"


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
