"""A CRI client that drives pod sandboxes as the kubelet does, over containerd's gRPC socket.

The Python message and stub modules are generated from ``cri_api.proto`` by grpcio-tools
into a directory the caller owns (nothing generated is kept in the repository).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
PROTO = HERE / "cri_api.proto"
KUBELET_ANNOTATIONS = {
    "kubernetes.io/config.seen": "2026-01-01T00:00:00.000000000Z",
    "kubernetes.io/config.source": "api",
}
"""What the kubelet adds to every pod's annotations in the sandbox config."""
RPC_TIMEOUT = 120.0
"""Bound on one call; RunPodSandbox includes the whole CNI ADD, StopPodSandbox the DEL."""


def generate_stubs(out: Path) -> tuple[ModuleType, ModuleType]:
    """Compile ``cri_api.proto`` into ``out`` and import ``(messages, stubs)`` from there."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("cri_api_pb2"), importlib.import_module("cri_api_pb2_grpc")
    finally:
        sys.path.remove(str(out))


@dataclass
class PodSpec:
    """What the kubelet puts into a ``PodSandboxConfig`` for a pod."""

    name: str
    namespace: str
    uid: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    runtime_handler: str = ""


class CRIClient:
    """CRI calls on one channel; errors surface as ``grpc.RpcError``.

    ``cgroup_parent`` is what the kubelet passes as the pod's cgroup (``/kubepods/...``); a
    node sets its own so that the pods' cgroups sit under a directory it removes.
    """

    def __init__(
        self, socket_path: Path, messages: ModuleType, stubs: ModuleType, cgroup_parent: str = ""
    ) -> None:
        self.api = messages
        self.cgroup_parent = cgroup_parent
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stub = stubs.RuntimeServiceStub(self._channel)
        self._images = stubs.ImageServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def version(self, timeout: float = 5.0) -> Any:
        return self._stub.Version(self.api.VersionRequest(version="v1"), timeout=timeout)

    def image_tags(self, ref: str, timeout: float = 5.0) -> list[str]:
        """The tags of image ``ref`` as the CRI plugin sees it; empty when it does not know it."""
        request = self.api.ImageStatusRequest(image=self.api.ImageSpec(image=ref))
        response = self._images.ImageStatus(request, timeout=timeout)
        return list(response.image.repo_tags)

    def run_pod(self, pod: PodSpec) -> str:
        """RunPodSandbox, with the config fields the kubelet sets for a plain pod."""
        api = self.api
        mode = api.NamespaceOption(network=api.POD, pid=api.CONTAINER, ipc=api.POD)
        config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(
                name=pod.name, uid=pod.uid, namespace=pod.namespace, attempt=0
            ),
            hostname=pod.name[:63],
            dns_config=api.DNSConfig(),
            labels={
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
                **pod.labels,
            },
            annotations={**KUBELET_ANNOTATIONS, **pod.annotations},
            linux=api.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=api.LinuxSandboxSecurityContext(namespace_options=mode),
            ),
        )
        request = api.RunPodSandboxRequest(config=config, runtime_handler=pod.runtime_handler)
        response = self._stub.RunPodSandbox(request, timeout=RPC_TIMEOUT)
        sandbox_id: str = response.pod_sandbox_id
        return sandbox_id

    def stop_pod(self, sandbox_id: str) -> None:
        request = self.api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._stub.StopPodSandbox(request, timeout=RPC_TIMEOUT)

    def remove_pod(self, sandbox_id: str) -> None:
        request = self.api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._stub.RemovePodSandbox(request, timeout=RPC_TIMEOUT)

    def pod_status(self, sandbox_id: str, verbose: bool = False) -> Any:
        request = self.api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return self._stub.PodSandboxStatus(request, timeout=RPC_TIMEOUT)

    def list_pods(self) -> list[Any]:
        response = self._stub.ListPodSandbox(self.api.ListPodSandboxRequest(), timeout=30)
        return list(response.items)
