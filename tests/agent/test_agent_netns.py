"""The agent under real namespaces: bridge (host-local) then a cnisdk plugin through shims.

Many pods ADDed and DELeted concurrently; the agent SIGKILLed mid-ADD (the runtime gets an
error, DEL cleans the pod, nothing is left half-applied); a restarted agent serves again.
Each runs with the Python and with the compiled shim.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agent_kit import AgentProcess, write_shims

from cnisdk._confdir import conflist_from_bytes
from cnisdk._runtime import CNIRuntime, RuntimeConf
from cnisdk.spec._errors import CNIError
from cnisdk.spec._result import Result
from cnisdk.testing import require_netns, temporary_netns

pytestmark = pytest.mark.netns
GO_PLUGINS = "/usr/lib/cni"
PODS = 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Node:
    """A bin dir of shims, an agent socket path, a bridge network and a runtime."""

    def __init__(self, tmp_path: Path, shim_binary: Path | None) -> None:
        require_netns()
        self.bin_dir = tmp_path / "bin"
        self.socket = Path(f"/tmp/cnisdk-agent-{secrets.token_hex(4)}/agent.sock")
        write_shims(self.bin_dir, self.socket, ["passthrough", "slow"], shim_binary=shim_binary)
        self.ipam_dir = tmp_path / "ipam"
        self.bridge = f"cnia{secrets.token_hex(4)}"
        self.subnet_prefix = f"10.{230 + secrets.randbelow(10)}.{secrets.randbelow(250)}"
        self.runtime = CNIRuntime(
            [str(self.bin_dir), GO_PLUGINS], cache_dir=str(tmp_path / "cache"), timeout=60
        )
        self.marker = tmp_path / "slow.marker"
        self.log_dir = tmp_path

    def conflist(self, last: dict[str, Any]) -> Any:
        doc = {
            "cniVersion": "1.0.0",
            "name": "agentnet",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipam": {
                        "type": "host-local",
                        "subnet": f"{self.subnet_prefix}.0/24",
                        "dataDir": str(self.ipam_dir),
                    },
                },
                last,
            ],
        }
        return conflist_from_bytes(json.dumps(doc).encode())

    def reservations(self) -> list[str]:
        net = self.ipam_dir / "agentnet"
        if not net.is_dir():
            return []
        return [p.name for p in net.iterdir() if p.name[0].isdigit()]

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        with contextlib.suppress(OSError):
            self.socket.unlink()
        with contextlib.suppress(OSError):
            self.socket.parent.rmdir()


@pytest.fixture
def node(tmp_path: Path, shim_binary: Path | None) -> Iterator[Node]:
    n = Node(tmp_path, shim_binary)
    try:
        yield n
    finally:
        n.close()


def eth0_address(netns: str) -> list[str]:
    done = subprocess.run(
        ["ip", "-4", "-j", "-n", os.path.basename(netns), "addr", "show", "eth0"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return []
    return [a["local"] for link in json.loads(done.stdout) for a in link["addr_info"]]


@pytest.mark.anyio
async def test_concurrent_add_and_del_of_many_pods(node: Node) -> None:
    agent = AgentProcess(node.socket, log_dir=node.log_dir)
    agent.wait_ready()
    # The agent made the missing socket directory owner-only.
    assert node.socket.parent.stat().st_mode & 0o777 == 0o700
    conflist = node.conflist({"type": "passthrough"})
    try:
        with contextlib.ExitStack() as stack:
            paths = [stack.enter_context(temporary_netns("cnisdk-ag-")) for _ in range(PODS)]
            rts = [RuntimeConf(f"pod-{i}", path) for i, path in enumerate(paths)]
            results: dict[int, Any] = {}

            async def add(i: int) -> None:
                results[i] = await node.runtime.add(conflist, rts[i])

            async with anyio.create_task_group() as tg:
                for i in range(PODS):
                    tg.start_soon(add, i)
            addresses = set()
            for i, path in enumerate(paths):
                ip = results[i].ips[0].address.split("/")[0]
                assert eth0_address(path) == [ip]
                addresses.add(ip)
            assert len(addresses) == PODS
            assert len(node.reservations()) == PODS

            async with anyio.create_task_group() as tg:
                for rt in rts:
                    tg.start_soon(node.runtime.delete, conflist, rt)
            assert node.reservations() == []
            assert all(eth0_address(p) == [] for p in paths)
        served = [e for e in agent.events() if e["event"] == "request"]
        assert {e["command"] for e in served} == {"ADD", "DEL"}
        assert len(served) == 2 * PODS and all(e["exit_code"] == 0 for e in served)
    finally:
        assert agent.stop() == 0, agent.log()


@pytest.mark.anyio
async def test_agent_killed_mid_add_then_restarted(node: Node) -> None:
    agent = AgentProcess(node.socket, log_dir=node.log_dir)
    agent.wait_ready()
    conflist = node.conflist({"type": "slow", "sleep": 30, "marker": str(node.marker)})
    with temporary_netns("cnisdk-ag-") as path:
        rt = RuntimeConf("killed-1", path)
        failure: list[BaseException] = []

        async def add() -> None:
            try:
                await node.runtime.add(conflist, rt)
            except CNIError as exc:
                failure.append(exc)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(add)
            while not node.marker.exists():  # noqa: ASYNC110 - another process writes it
                await anyio.sleep(0.02)
            agent.kill()  # SIGKILL while the ADD runs in the agent
        assert time.monotonic() - started < 20
        # The runtime got an error (not a second, racing exec-mode ADD) ...
        (error,) = failure
        assert isinstance(error, CNIError) and error.code == 11
        assert "failed during ADD" in error.msg and "not retried" in error.msg
        assert node.runtime.get_cached_result(conflist, rt) is None
        # ... and, as a runtime does after a failed ADD, DELs the pod: through a new agent,
        # started on the socket path the killed one left behind.
        assert node.socket.exists()
        restarted = AgentProcess(node.socket, log_dir=node.log_dir)
        restarted.wait_ready()
        try:
            await node.runtime.delete(conflist, rt)
            assert eth0_address(path) == []
            assert node.reservations() == []
            # The restarted agent serves ADDs again.
            node.marker.unlink()
            quick = node.conflist({"type": "slow", "sleep": 0, "marker": str(node.marker)})
            result = await node.runtime.add(quick, rt)
            assert isinstance(result, Result)
            assert eth0_address(path) == [result.ips[0].address.split("/")[0]]
            await node.runtime.delete(quick, rt)
            assert any(
                e["event"] == "request" and e["container_id"] == "killed-1"
                for e in restarted.events()
            )
        finally:
            assert restarted.stop() == 0, restarted.log()
