"""deploy/: the Kubernetes manifests against the Kubernetes schemas (offline), the Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnisdk._commands.install import _load_chain

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
AGENT_OVERLAY = ROOT / "deploy" / "kubernetes-agent"
K8S_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for _, d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("name,doc", documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_against_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    # strict: unknown fields are errors too. The schemas ship inside the package: no network.
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


def test_rbac_is_only_get_pods() -> None:
    assert by_kind("ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    ]


def test_daemonset_runs_the_documented_install() -> None:
    ds = by_kind("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:2] == ["install", "istio-redirect"] and "--watch" in args
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    # Every hostPath sits at /host + its node path, which is what --host-root=/host assumes.
    for name, path in host.items():
        assert mounts[name] == "/host" + path
    flags = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
    assert (
        flags["--bin-dir"] == "/host/opt/cni/bin" and flags["--conf-dir"] == "/host/etc/cni/net.d"
    )
    assert flags["--runtime"].split(":")[1] in host.values()
    assert pod["serviceAccountName"] == by_kind("ServiceAccount")["metadata"]["name"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_chain_configmap_is_a_valid_istio_redirect_entry() -> None:
    from cnisdk_istio_redirect._config import IstioRedirectConfig

    text = by_kind("ConfigMap")["data"]["chain.json"]
    [entry] = _load_chain(text)
    assert entry["type"] == "istio-redirect"
    IstioRedirectConfig.model_validate({"cniVersion": "1.0.0", "name": "k8s-pod-network", **entry})
    assert json.loads(text) == entry


def test_dockerfile_pins_base_and_python() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(
        r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$", text, re.M
    )
    for arch in ("AMD64", "ARM64"):
        assert re.search(rf"^ARG PBS_SHA256_{arch}=[0-9a-f]{{64}}$", text, re.M)
    assert "sha256sum -c" in text
    # Every path it COPYs exists in the repository.
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in line.split():
            assert (ROOT / source).exists(), source


def _json_patch(doc: Any, ops: list[dict[str, Any]]) -> None:
    """RFC 6902 ``add``/``replace``: what the agent overlay uses (kustomize is not needed)."""
    for op in ops:
        *parents, last = op["path"].split("/")[1:]
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] == "add":
                target.insert(index, op["value"])
            else:
                assert op["op"] == "replace", op
                target[index] = op["value"]
        else:
            assert op["op"] in ("add", "replace"), op
            target[last] = op["value"]


def agent_documents() -> list[dict[str, Any]]:
    """The base with deploy/kubernetes-agent's patches applied, as `kubectl kustomize` would."""
    kustomization = yaml.safe_load((AGENT_OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../kubernetes"]
    docs = [doc for _, doc in documents()]
    for patch in kustomization["patches"]:
        target = patch["target"]
        [doc] = [
            d
            for d in docs
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        _json_patch(doc, yaml.safe_load((AGENT_OVERLAY / patch["path"]).read_text()))
    return docs


def test_agent_overlay_valid_against_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in agent_documents():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_agent_overlay_wires_shims_to_the_agent() -> None:
    docs = agent_documents()
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    [ds] = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    install, agent = pod["containers"]
    assert pod["hostNetwork"] is True and agent["image"] == install["image"]
    flags = dict(a.split("=", 1) for a in install["args"] if a.startswith("--") and "=" in a)
    agent_flags = dict(a.split("=", 1) for a in agent["args"][1:])
    assert agent["args"][0] == "agent" and flags["--agent-fallback"] == "exec"
    socket_dir = flags["--agent-socket"].rsplit("/", 1)[0]
    assert agent_flags["--socket"] == flags["--agent-socket"]
    host, port = agent_flags["--health"].rsplit(":", 1)
    for probe in ("livenessProbe", "readinessProbe"):
        assert agent[probe]["httpGet"] == {"host": host, "path": "/healthz", "port": int(port)}
    [node_name] = [e for e in agent["env"] if e["name"] == "NODE_NAME"]
    assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    # The agent sees the socket dir, the pinned netns dir and the conf dir at their node paths.
    mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
    for path in (socket_dir, "/run/netns", "/etc/cni/net.d"):
        assert host_paths[mounts[path]] == path
    assert {"NET_ADMIN", "SYS_ADMIN"} <= set(agent["securityContext"]["capabilities"]["add"])
