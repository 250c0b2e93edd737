"""Pods, chains and what to look at in a pod: shared by the e2e tests and benchmarks/cri.py.

What to read in a pod's namespace comes from the istio-redirect tests' ``netns_traffic``:
containerd mounts pod namespaces in ``/var/run/netns``, so ``ip netns exec`` reaches them.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnisdk_istio_redirect._plugin import POD_ANNOTATIONS_CAPABILITY as POD_ANNOTATIONS
from cri_client import CRIClient, PodSpec

REPO = Path(__file__).resolve().parents[2]
for _kit in (REPO / "tests" / "agent", REPO / "plugins" / "istio_redirect" / "tests"):
    if str(_kit) not in sys.path:
        sys.path.append(str(_kit))

import kube_stub  # noqa: E402  (the istio-redirect tests' realistic injected pod)
from netns_traffic import rule_lines  # noqa: E402

NODE_NAME = "e2e-node"
"""The node the pods are bound to; the agent's pod cache watches it (``NODE_NAME``)."""
RECORDER = "cnisdk-e2e-recorder"


def chains(kubeconfig: str, record_dir: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Runtime handler -> the plugins chained after bridge + host-local.

    ``istio*`` entries declare the pod-annotations capability (containerd then passes the
    sandbox's annotations in ``runtimeConfig``), except ``istio-nocap``, the control.
    """
    istio: dict[str, Any] = {
        "type": "istio-redirect",
        "kubeconfig": kubeconfig,
        "kube_api_attempts": 1,
        "capabilities": {POD_ANNOTATIONS: True},
    }
    table: dict[str, list[dict[str, Any]]] = {
        "tuning": [{"type": "tuning"}],
        "passthrough": [{"type": "passthrough"}],
        "istio": [istio],
        "istio-nft": [{**istio, "native_nftables": True}],
        "istio-nocap": [{k: v for k, v in istio.items() if k != "capabilities"}],
    }
    if record_dir is not None:
        table["record"] = [{"type": RECORDER, "capabilities": {POD_ANNOTATIONS: True}}]
    return table


def write_recorder(bin_dir: Path, record_dir: Path) -> None:
    """A chained plugin that keeps its stdin, then runs the installed ``passthrough`` on it."""
    record_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / RECORDER
    path.write_text(
        "#!/bin/sh\nset -e\n"
        f'keep="{record_dir}/$CNI_COMMAND.$CNI_CONTAINERID.json"\n'
        'cat > "$keep"\n'
        f'exec "{bin_dir}/passthrough" < "$keep"\n'
    )
    path.chmod(0o755)


def _unique(pod: dict[str, Any], prefix: str) -> dict[str, Any]:
    meta = pod["metadata"]
    meta["name"] = f"{prefix}-{secrets.token_hex(4)}"
    meta["uid"] = secrets.token_hex(16)
    pod["spec"]["nodeName"] = NODE_NAME
    return pod


def injected_pod(prefix: str = "reviews", **annotations: str) -> dict[str, Any]:
    """A pod as Istio's sidecar injector leaves it, bound to :data:`NODE_NAME`."""
    return _unique(kube_stub.injected_pod(annotations=annotations), prefix)


def plain_pod(prefix: str = "plain") -> dict[str, Any]:
    """A pod the injector never touched: no ``sidecar.istio.io/*`` annotation, no proxy."""
    pod = kube_stub.injected_pod(without_proxy=True)
    meta = pod["metadata"]
    meta["annotations"] = {"kubectl.kubernetes.io/default-container": "reviews"}
    meta["labels"] = {"app": "reviews"}
    pod["spec"]["initContainers"] = []
    return _unique(pod, prefix)


def pod_spec(pod: Mapping[str, Any], handler: str = "") -> PodSpec:
    """What the kubelet asks the runtime for: the pod's identity, labels and annotations."""
    meta = pod["metadata"]
    return PodSpec(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        annotations=dict(meta.get("annotations", {})),
        labels=dict(meta.get("labels", {})),
        runtime_handler=handler,
    )


def pod_netns(client: CRIClient, sandbox_id: str) -> str:
    """The path of the pod's network namespace, from the runtime's verbose status."""
    info = json.loads(client.pod_status(sandbox_id, verbose=True).info["info"])
    for namespace in info["runtimeSpec"]["linux"]["namespaces"]:
        if namespace["type"] == "network":
            path: str = namespace["path"]
            return path
    raise AssertionError(f"sandbox {sandbox_id} has no network namespace path")


def istio_chains(netns: str) -> set[str]:
    """The ``ISTIO_*`` iptables chains in a namespace (any backend or family)."""
    found = set()
    for line in rule_lines(netns):
        rule = line.partition(": ")[2]
        if rule.startswith(":ISTIO_"):
            found.add(rule[1:].split()[0])
    return found


def pod_gets(requests: list[str], pod: Mapping[str, Any]) -> int:
    """How often the API stand-in was asked for this pod by name."""
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    return sum(1 for r in requests if r.split("?")[0] == path)
