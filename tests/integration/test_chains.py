"""CNIRuntime driving chains of Debian's Go reference plugins in real network namespaces."""

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

from cnisdk._confdir import conflist_from_bytes
from cnisdk._runtime import CNIRuntime, RuntimeConf
from cnisdk.spec._errors import CNIError
from cnisdk.spec._result import result_to_dict
from cnisdk.testing import require_netns, temporary_netns

pytestmark = pytest.mark.netns

GO_PLUGINS = "/usr/lib/cni"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def addresses(netns_path: str) -> dict[str, list[str]]:
    name = os.path.basename(netns_path)
    links = json.loads(run("ip", "-n", name, "-j", "addr"))
    return {
        link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
        for link in links
    }


def link_mtu(netns_path: str, ifname: str) -> int:
    (link,) = json.loads(
        run("ip", "-n", os.path.basename(netns_path), "-j", "link", "show", ifname)
    )
    mtu: int = link["mtu"]
    return mtu


class Net:
    """A unique bridge, subnet and scratch dirs for one test; the bridge is removed after."""

    def __init__(self, tmp_path: Path, octet: int) -> None:
        self.bridge = f"cnit{secrets.token_hex(4)}"
        self.subnet = f"10.250.{octet}.0/24"
        self.prefix = f"10.250.{octet}."
        self.data_dir = tmp_path / "ipam"
        self.cache_dir = tmp_path / "cache"
        self.name = f"net{octet}"
        self.runtime = CNIRuntime([GO_PLUGINS], cache_dir=str(self.cache_dir), timeout=30)

    def conflist(self, *extra: dict[str, Any]) -> Any:
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": self.subnet, "dataDir": str(self.data_dir)},
        }
        doc = {"cniVersion": "1.0.0", "name": self.name, "plugins": [bridge, *extra]}
        return conflist_from_bytes(json.dumps(doc).encode())

    def reservations(self) -> list[str]:
        directory = self.data_dir / self.name
        if not directory.exists():
            return []
        return sorted(p.name for p in directory.iterdir() if p.name.startswith(self.prefix))

    def cache_files(self) -> list[str]:
        directory = self.cache_dir / "results"
        return sorted(os.listdir(directory)) if directory.exists() else []

    def host_veths(self) -> list[str]:
        links = json.loads(run("ip", "-j", "link", "show", "master", self.bridge))
        return [link["ifname"] for link in links]

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


@pytest.fixture
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    require_netns()
    # A distinct third octet per test keeps parallel or leftover runs from colliding.
    octet = 10 + (sum(map(ord, request.node.name)) % 200)
    created = Net(tmp_path, octet)
    try:
        yield created
    finally:
        created.remove_bridge()


@pytest.mark.anyio
async def test_bridge_host_local_add_check_del(net: Net) -> None:
    conflist = net.conflist()
    with temporary_netns("cnit-") as ns:
        rt = RuntimeConf(container_id=f"c-{secrets.token_hex(6)}", netns=ns, ifname="eth0")
        started = time.monotonic()
        result = await net.runtime.add(conflist, rt)
        add_seconds = time.monotonic() - started
        doc = result_to_dict(result)
        assert doc["cniVersion"] == "1.0.0"
        address = doc["ips"][0]["address"]
        assert address.startswith(net.prefix)
        assert address in addresses(ns)["eth0"]
        assert net.reservations() == [address.split("/")[0]]
        assert len(net.cache_files()) == 1
        await net.runtime.check(conflist, rt)
        await net.runtime.delete(conflist, rt)
        assert "eth0" not in addresses(ns)
        assert net.reservations() == [] and net.cache_files() == []
        assert net.host_veths() == []
        # DEL is idempotent: a second one succeeds with nothing left to remove.
        await net.runtime.delete(conflist, rt)
    print(f"bridge+host-local ADD: {add_seconds * 1000:.0f} ms")


def nft_tables() -> set[str]:
    """The host's nft tables, as "family name" (iptables-nft keeps its tables there too)."""
    listing = run("nft", "list", "tables")
    return {line.removeprefix("table ").strip() for line in listing.splitlines() if line.strip()}


@pytest.fixture
def host_portmap_chains() -> Iterator[None]:
    """Put the host's NAT tables back as they were before the test.

    portmap's DEL removes a container's own rules but never its top-level chains and jumps,
    and iptables-nft leaves the ``ip nat``/``ip6 nat`` tables it created for them. Tables the
    test created are deleted whole; in tables that existed, only portmap's chains go.
    """
    tables_before = nft_tables()
    chains_before = {
        tool: "CNI-HOSTPORT-DNAT" in run(f"{tool}-save", "-t", "nat") for tool in IPTABLES_TOOLS
    }
    yield
    for created in sorted(nft_tables() - tables_before):
        subprocess.run(["nft", "delete", "table", *created.split()], check=False)
    for tool, existed in chains_before.items():
        family = "ip6" if tool.startswith("ip6") else "ip"
        if existed or f"{family} nat" not in tables_before:
            continue
        for chain in ("PREROUTING", "OUTPUT"):
            jump = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]
            subprocess.run([tool, "-t", "nat", "-D", chain, *jump], capture_output=True)
        for name in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
            subprocess.run([tool, "-t", "nat", "-F", name], capture_output=True, check=False)
            subprocess.run([tool, "-t", "nat", "-X", name], capture_output=True, check=False)


IPTABLES_TOOLS = ("iptables", "ip6tables")


@pytest.mark.anyio
@pytest.mark.usefixtures("host_portmap_chains")
async def test_with_portmap_and_tuning(net: Net) -> None:
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False}
    tuning = {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}
    conflist = net.conflist(portmap, tuning)
    with temporary_netns("cnit-") as ns:
        container_id = f"pm-{secrets.token_hex(6)}"
        rt = RuntimeConf(
            container_id=container_id,
            netns=ns,
            ifname="eth0",
            capability_args={
                "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
            },
        )
        started = time.monotonic()
        await net.runtime.add(conflist, rt)
        add_seconds = time.monotonic() - started
        try:
            assert link_mtu(ns, "eth0") == 1400
            nat = run("iptables-save", "-t", "nat")
            assert container_id in nat and "18080" in nat
            # portmap 1.1.1 (Debian) fails its own CHECK when the result has no IPv6 address:
            # it looks for an ip6tables chain it never made. The error must come through
            # unwrapped.
            with pytest.raises(CNIError, match="could not check ipv6 dnat"):
                await net.runtime.check(conflist, rt)
        finally:
            await net.runtime.delete(conflist, rt)
        assert container_id not in run("iptables-save", "-t", "nat")
        assert "eth0" not in addresses(ns)
        assert net.reservations() == [] and net.cache_files() == []
    print(f"bridge+host-local+portmap+tuning ADD: {add_seconds * 1000:.0f} ms")


@pytest.mark.anyio
async def test_fifty_concurrent_chains(net: Net) -> None:
    conflist = net.conflist({"type": "tuning", "mtu": 1450})
    count = 50
    with contextlib.ExitStack() as stack:
        paths = [stack.enter_context(temporary_netns("cnit-")) for _ in range(count)]
        confs = [
            RuntimeConf(container_id=f"many-{i}-{secrets.token_hex(3)}", netns=p, ifname="eth0")
            for i, p in enumerate(paths)
        ]
        results: dict[int, str] = {}

        async def add(i: int) -> None:
            result = await net.runtime.add(conflist, confs[i])
            results[i] = result_to_dict(result)["ips"][0]["address"]

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for i in range(count):
                group.start_soon(add, i)
        add_seconds = time.monotonic() - started
        assert len(set(results.values())) == count  # every container got its own address
        assert len(net.reservations()) == count and len(net.cache_files()) == count
        assert len(net.host_veths()) == count
        for i in (0, count // 2, count - 1):
            assert results[i] in addresses(paths[i])["eth0"]

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for rt in confs:
                group.start_soon(net.runtime.delete, conflist, rt)
        del_seconds = time.monotonic() - started
        assert net.reservations() == [] and net.cache_files() == []
        assert net.host_veths() == []
        assert all("eth0" not in addresses(p) for p in paths)
    leftover = [
        n for n in os.listdir("/var/run/netns") if n in {os.path.basename(p) for p in paths}
    ]
    assert leftover == []
    print(f"{count} concurrent ADDs: {add_seconds:.2f} s, DELs: {del_seconds:.2f} s")
