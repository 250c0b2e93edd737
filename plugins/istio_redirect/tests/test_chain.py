"""The full chain a node runs: Debian's Go ``bridge`` + ``host-local``, then istio-redirect.

:class:`cnisdk._runtime.CNIRuntime` executes the plugins as containerd does: it finds them on
the CNI path and execs them, istio-redirect through the launcher ``write_launcher`` puts in a
temporary bin dir. The pod comes from the API stand-in over real HTTP.

``bridge`` is reached through a tiny shell wrapper earlier on the CNI path that execs the real
one and keeps a copy of its stdout, so the chain's final result can be compared with what
``bridge`` itself printed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kube_stub import KubeStub, injected_pod
from netns_traffic import iptables_state, ns_exec, pod_ref, write_kubeconfig

from cnisdk._confdir import conflist_from_bytes
from cnisdk._discovery import get_plugin
from cnisdk._launcher import is_launcher, write_launcher
from cnisdk._runtime import CNIRuntime, RuntimeConf
from cnisdk.spec._errors import CNIError
from cnisdk.spec._result import AnyResult, result_to_dict
from cnisdk.spec._result_decode import parse_result
from cnisdk.testing import require_netns, temporary_netns, write_recording_plugin

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

GO_PLUGINS = "/usr/lib/cni"
POD = injected_pod()


@dataclass
class Node:
    """A CNI bin dir, a cache dir, a bridge name and subnet that belong to one test."""

    tmp: Path
    runtime: CNIRuntime
    bridge: str
    subnet_prefix: str
    kubeconfig: str

    def conflist(self, version: str, **istio: Any) -> Any:
        doc = {
            "cniVersion": version,
            "name": "k8s-pod-network",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "subnet": f"{self.subnet_prefix}.0/24",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.tmp / "ipam"),
                    },
                },
                {
                    "type": "istio-redirect",
                    "kubeconfig": self.kubeconfig,
                    "exclude_namespaces": ["kube-system"],
                    "kube_api_attempts": 2,
                    "kube_api_backoff": 0.05,
                    **istio,
                },
            ],
        }
        return conflist_from_bytes(json.dumps(doc).encode())

    def bridge_output(self, command: str) -> Any:
        return json.loads((self.tmp / "recorded" / f"bridge.{command}").read_text())

    def assert_bridge_result(self, result: AnyResult) -> None:
        """The chain's result is what bridge printed: the same result, the same document.

        Debian's bridge (CNI 1.1.1) prints ``"dns": {}`` in 1.0.0 results; cnisdk prints an
        empty 1.0.0 ``dns`` not at all. Both mean the same; everything else must be equal.
        """
        raw = (self.tmp / "recorded" / "bridge.ADD").read_bytes()
        assert result == parse_result(raw, result.cni_version)
        printed = result_to_dict(result)
        expected = {k: v for k, v in json.loads(raw).items() if (k, v) != ("dns", {})}
        assert {k: v for k, v in printed.items() if (k, v) != ("dns", {})} == expected

    def reservations(self) -> list[str]:
        directory = self.tmp / "ipam" / "k8s-pod-network"
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit())


@pytest.fixture
def node(tmp_path: Path, stub: KubeStub) -> Iterator[Node]:
    require_netns()
    if not os.access(f"{GO_PLUGINS}/bridge", os.X_OK):
        pytest.skip(f"Debian's Go CNI plugins are not in {GO_PLUGINS}")
    bin_dir = tmp_path / "bin"
    launcher = write_launcher(bin_dir, get_plugin("istio-redirect"))
    assert is_launcher(launcher)
    write_recording_plugin(bin_dir, "bridge", f"{GO_PLUGINS}/bridge", tmp_path / "recorded")
    bridge = f"cnich{secrets.token_hex(4)}"
    runtime = CNIRuntime([str(bin_dir), GO_PLUGINS], cache_dir=str(tmp_path / "cache"), timeout=30)
    prefix = f"10.253.{secrets.randbelow(250) + 1}"
    try:
        yield Node(tmp_path, runtime, bridge, prefix, write_kubeconfig(tmp_path, stub.url))
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def runtime_conf(netns: str, pod: dict[str, Any] = POD) -> RuntimeConf:
    meta = pod["metadata"]
    return RuntimeConf(
        container_id=secrets.token_hex(16),
        netns=netns,
        ifname="eth0",
        args=[
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", meta["namespace"]),
            ("K8S_POD_NAME", meta["name"]),
            ("K8S_POD_INFRA_CONTAINER_ID", secrets.token_hex(16)),
            ("K8S_POD_UID", meta["uid"]),
        ],
    )


def nat_rules(netns: str) -> str:
    return "\n".join(iptables_state(netns)["iptables-nft-save"])


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
async def test_add_check_del_through_the_runtime(version: str, node: Node, stub: KubeStub) -> None:
    network = node.conflist(version)
    with temporary_netns("cnisdk-irc-") as netns:
        rt = runtime_conf(netns)
        try:
            result = await node.runtime.add(network, rt)
            # istio-redirect passes bridge's result through untouched.
            node.assert_bridge_result(result)
            assert result.cni_version == version
            assert len(stub.requests) == 1
            rules = nat_rules(netns)
            assert "-A OUTPUT -j ISTIO_OUTPUT" in rules
            assert "-A PREROUTING -p tcp -j ISTIO_INBOUND" in rules
            assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
            # bridge gave the pod its address; the rules are in *that* namespace.
            (ip,) = node.bridge_output("ADD")["ips"]
            assert ip["address"].split("/")[0] in ns_exec(netns, "ip", "-4", "addr")

            await node.runtime.check(network, rt)
        finally:
            await node.runtime.delete(network, rt)
        assert node.reservations() == []
        assert ns_exec(netns, "ip", "-o", "link", "show", "eth0", check=False) == ""


async def test_check_through_the_runtime_reports_a_deleted_rule(node: Node, stub: KubeStub) -> None:
    network = node.conflist("1.0.0")
    with temporary_netns("cnisdk-irc-") as netns:
        rt = runtime_conf(netns)
        try:
            await node.runtime.add(network, rt)
            ns_exec(netns, "iptables-nft", "-t", "nat", "-D", "OUTPUT", "-j", "ISTIO_OUTPUT")
            with pytest.raises(CNIError) as failed:
                await node.runtime.check(network, rt)
            assert pod_ref(POD) in failed.value.msg
            assert "-A OUTPUT -j ISTIO_OUTPUT" in (failed.value.details or "")
        finally:
            await node.runtime.delete(network, rt)


async def test_add_fails_closed_through_the_runtime(node: Node, stub: KubeStub) -> None:
    missing = injected_pod()
    missing["metadata"]["name"] = "ratings-v1-0000000000-gone0"
    network = node.conflist("1.0.0")
    with temporary_netns("cnisdk-irc-") as netns:
        rt = runtime_conf(netns, missing)
        try:
            with pytest.raises(CNIError) as failed:
                await node.runtime.add(network, rt)
            assert "bookinfo/ratings-v1-0000000000-gone0" in failed.value.msg
            assert "404" in failed.value.msg
            assert not any("ISTIO_" in line for line in iptables_state(netns)["iptables-nft-save"])
        finally:
            # A runtime cleans a failed ADD up with DEL; that must work for the whole chain.
            await node.runtime.delete(network, rt)
        assert node.reservations() == []


async def test_skipped_pod_through_the_runtime_gets_bridges_result_and_no_rules(
    node: Node, stub: KubeStub
) -> None:
    system_pod = injected_pod()
    system_pod["metadata"]["namespace"] = "kube-system"
    network = node.conflist("1.0.0")
    with temporary_netns("cnisdk-irc-") as netns:
        rt = runtime_conf(netns, system_pod)
        try:
            result = await node.runtime.add(network, rt)
            node.assert_bridge_result(result)
            assert stub.requests == []
            assert "ISTIO_" not in nat_rules(netns)
            await node.runtime.check(network, rt)
        finally:
            await node.runtime.delete(network, rt)
