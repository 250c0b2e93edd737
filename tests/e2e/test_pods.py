"""Pods through a real containerd, driven over CRI as the kubelet drives it.

Every pod runs on bridge + host-local and then the chain of its runtime handler, once on the
exec node (exec-mode launchers) and once on the agent node (shims to ``cnisdk agent``). After
StopPodSandbox + RemovePodSandbox nothing of the pod may be left: no sandbox or container in
containerd, no network namespace file, no veth on the bridge, no host-local allocation.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from containerd_node import ContainerdNode
from cri_client import KUBELET_ANNOTATIONS
from netns_traffic import clean_state, nft_istio_tables
from pods import (
    POD_ANNOTATIONS,
    injected_pod,
    istio_chains,
    plain_pod,
    pod_gets,
    pod_netns,
    pod_spec,
)

pytestmark = pytest.mark.netns

NOTHING_LEFT = {"sandboxes": [], "containers": [], "netns": [], "veths": [], "ips": []}
ISTIO_CHAINS = {"ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"}
ISTIO_NFT = {"istio-proxy-nat"}


@pytest.fixture(params=["exec", "agent", "compiled"])
def node(request: pytest.FixtureRequest) -> ContainerdNode:
    """Each test once per mode: exec-mode launchers, agent mode with the Python shim, and agent
    mode with the compiled shim (what the default deployment installs)."""
    found: ContainerdNode = request.getfixturevalue(f"{request.param}_node")
    return found


@contextlib.contextmanager
def running(node: ContainerdNode, pod: dict[str, Any], handler: str) -> Iterator[tuple[str, str]]:
    """RunPodSandbox; yields ``(sandbox id, netns path)``; then Stop + Remove and check the host."""
    assert node.client is not None
    sandbox_id = node.client.run_pod(pod_spec(pod, handler))
    netns = ""
    try:
        netns = pod_netns(node.client, sandbox_id)
        assert os.path.exists(netns)
        yield sandbox_id, netns
    finally:
        node.client.stop_pod(sandbox_id)
        node.client.remove_pod(sandbox_id)
    assert node.leftovers() == NOTHING_LEFT
    assert not os.path.exists(netns)


def in_subnet(node: ContainerdNode, address: str) -> bool:
    return ipaddress.ip_address(address) in node.subnet


def agent_of(node: ContainerdNode, request: pytest.FixtureRequest) -> Any:
    """The agent serving ``node``'s shims, or ``None`` on the exec node."""
    return request.getfixturevalue("agent") if node.agent_socket else None


def served(agent: Any, sandbox_id: str, plugin_type: str) -> list[tuple[str, int]]:
    """``(command, exit code)`` of the agent's requests for this pod and plugin type."""
    return [
        (e["command"], e["exit_code"])
        for e in agent.events()
        if e["event"] == "request" and e["container_id"] == sandbox_id and e["type"] == plugin_type
    ]


def test_injected_pod_gets_istio_iptables_rules(
    node: ContainerdNode, kube_api: Any, request: pytest.FixtureRequest
) -> None:
    pod = injected_pod()
    kube_api.put(pod)
    with running(node, pod, "istio") as (sandbox_id, netns):
        assert istio_chains(netns) >= ISTIO_CHAINS
        assert nft_istio_tables(netns) == []
        status = node.client.pod_status(sandbox_id).status  # type: ignore[union-attr]
        assert in_subnet(node, status.network.ip)
    agent = agent_of(node, request)
    if agent is not None:
        # containerd 1.6 sends DEL at Stop (with the netns) and again at Remove (without).
        assert served(agent, sandbox_id, "istio-redirect") == [("ADD", 0), ("DEL", 0), ("DEL", 0)]


def test_injected_pod_gets_istio_nft_tables(node: ContainerdNode, kube_api: Any) -> None:
    pod = injected_pod()
    kube_api.put(pod)
    with running(node, pod, "istio-nft") as (_, netns):
        assert set(nft_istio_tables(netns)) >= ISTIO_NFT
        assert istio_chains(netns) == set()


def test_plain_pod_gets_no_rules_and_no_api_call(node: ContainerdNode, kube_api: Any) -> None:
    # Not in the API stand-in, nor so in the agent's pod cache: any lookup would GET it, be
    # counted, and fail the pod with a 404.
    pod = plain_pod()
    with running(node, pod, "istio") as (_, netns):
        assert clean_state(netns) == []
    # The annotations containerd passed were enough to skip the pod.
    assert pod_gets(kube_api.requests, pod) == 0


def test_without_the_capability_a_plain_pod_is_looked_up(
    exec_node: ContainerdNode, kube_api: Any
) -> None:
    pod = plain_pod()
    kube_api.put(pod)
    with running(exec_node, pod, "istio-nocap") as (_, netns):
        assert clean_state(netns) == []
    assert pod_gets(kube_api.requests, pod) == 1


def test_runtime_config_carries_the_pod_annotations(node: ContainerdNode, record_dir: Any) -> None:
    pod = plain_pod()
    pod["metadata"]["annotations"]["example.com/note"] = "kept as is"
    spec = pod_spec(pod, "record")
    with running(node, pod, "record") as (sandbox_id, _):
        request = json.loads((record_dir / f"ADD.{sandbox_id}.json").read_text())
    # Exactly what RunPodSandbox carried: the pod's annotations and the kubelet's own.
    assert request["runtimeConfig"][POD_ANNOTATIONS] == {**KUBELET_ANNOTATIONS, **spec.annotations}
    assert in_subnet(node, request["prevResult"]["ips"][0]["address"].split("/")[0])


def test_invalid_annotation_fails_the_pod(node: ContainerdNode, kube_api: Any) -> None:
    pod = injected_pod(**{"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/33"})
    kube_api.put(pod)
    assert node.client is not None
    with pytest.raises(grpc.RpcError) as caught:
        node.client.run_pod(pod_spec(pod, "istio"))
    details = caught.value.details()  # type: ignore[attr-defined]
    meta = pod["metadata"]
    assert f"istio-redirect: pod {meta['namespace']}/{meta['name']}" in details
    assert "traffic.sidecar.istio.io/includeOutboundIPRanges" in details
    # containerd tore the half-made pod down itself.
    assert node.leftovers() == NOTHING_LEFT


def test_passthrough_pod(node: ContainerdNode) -> None:
    pod = plain_pod()
    with running(node, pod, "passthrough") as (sandbox_id, netns):
        status = node.client.pod_status(sandbox_id).status  # type: ignore[union-attr]
        assert in_subnet(node, status.network.ip)
        assert node.reservations() == [status.network.ip]
        assert len(node.host_veths()) == 1
        assert os.path.basename(netns) in node.netns_files()
    # containerd logged the ADD, and how long it took (what benchmarks/cri.py reads).
    assert 0 < node.cni_add_seconds()[sandbox_id] < 60


def test_pods_started_together(node: ContainerdNode, kube_api: Any) -> None:
    """As the kubelet starts a node's pods: several RunPodSandbox calls at once."""
    assert node.client is not None
    client = node.client
    pods = [injected_pod(), plain_pod(), injected_pod(), plain_pod()]
    for pod in pods:
        kube_api.put(pod)
    with ThreadPoolExecutor(len(pods)) as pool:
        started = [pool.submit(client.run_pod, pod_spec(pod, "istio")) for pod in pods]
    # Whatever started is stopped and removed below, even if another one failed.
    ids = [f.result() for f in started if f.exception() is None]
    try:
        assert len(ids) == len(pods), [f.exception() for f in started]
        addresses = {client.pod_status(i).status.network.ip for i in ids}
        assert len(addresses) == len(pods) and all(in_subnet(node, a) for a in addresses)
        for pod, sandbox_id in zip(pods, ids, strict=True):
            netns = pod_netns(client, sandbox_id)
            if "sidecar.istio.io/status" in pod["metadata"]["annotations"]:
                assert istio_chains(netns) >= ISTIO_CHAINS
            else:
                assert clean_state(netns) == []
    finally:
        with ThreadPoolExecutor(len(pods)) as pool:
            list(pool.map(lambda i: (client.stop_pod(i), client.remove_pod(i)), ids))
    assert node.leftovers() == NOTHING_LEFT


def test_each_agent_node_runs_the_shim_it_was_given(
    agent_node: ContainerdNode, compiled_node: ContainerdNode
) -> None:
    python_shim = (agent_node.bin_dir / "istio-redirect").read_bytes()
    compiled = (compiled_node.bin_dir / "istio-redirect").read_bytes()
    assert python_shim.startswith(b"#!") and b"-IS" in python_shim.split(b"\n", 1)[0]
    assert compiled.startswith(b"\x7fELF")
