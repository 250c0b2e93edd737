"""deploy/: the Kubernetes manifests against the Kubernetes schemas (offline), the Dockerfile.

``deploy/kubernetes`` (agent mode, the default) is read as it is; ``deploy/kubernetes-exec``
is rendered from it here by applying its JSON patches, as ``kubectl kustomize`` does, so
the tests need no kustomize (where one is installed, its output is compared with ours).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from cnisdk._cli import build_parser
from cnisdk._commands.install import _load_chain, build_spec
from cnisdk._launcher import AgentEntry

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "deploy" / "kubernetes"
EXEC_OVERLAY = ROOT / "deploy" / "kubernetes-exec"
K8S_VERSION = "1.30.0"

# Where runtimes pin pod network namespaces, i.e. what CNI_NETNS names on the node:
# - containerd's CRI plugin: /var/run/netns, or with netns_mounts_under_state_dir = true
#   <state>/io.containerd.grpc.v1.cri/netns, the state dir being /run/containerd by default;
# - CRI-O (pinns): <namespaces_dir>/netns, namespaces_dir being /var/run by default.
RUNTIME_NETNS_DIRS = {
    "containerd": "/var/run/netns",
    "containerd, netns_mounts_under_state_dir": "/run/containerd/io.containerd.grpc.v1.cri/netns",
    "CRI-O": "/var/run/netns",
}

# The kustomization fields render() implements; anything else must fail, not be ignored.
_KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "patches", "images"}


class PatchTestFailed(AssertionError):
    """A JSON patch ``test`` operation found another value: kustomize fails the build."""


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> None:
    """Apply RFC 6902 ``add``/``replace``/``remove``/``test`` operations to ``doc`` in place."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        kind = op["op"]
        if isinstance(target, list):
            index = len(target) if last == "-" and kind == "add" else int(last)
            if kind == "add":
                assert 0 <= index <= len(target), op
                target.insert(index, op["value"])
                continue
            assert 0 <= index < len(target), op
            key: int | str = index
        else:
            key = last
            if kind == "add":
                target[key] = op["value"]
                continue
            assert key in target, op
        if kind == "replace":
            target[key] = op["value"]
        elif kind == "remove":
            del target[key]
        elif kind == "test":
            if target[key] != op["value"]:
                raise PatchTestFailed(f"{op['path']}: {target[key]!r} != {op['value']!r}")
        else:
            raise AssertionError(f"unsupported JSON patch operation {kind!r}")


def _set_image_tags(doc: dict[str, Any], images: list[dict[str, str]]) -> None:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                container["image"] = f"{name}:{image['newTag']}"


def render(directory: Path) -> list[dict[str, Any]]:
    """What ``kubectl kustomize DIRECTORY`` renders, for the features deploy/ uses."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= _KUSTOMIZE_FIELDS, set(kustomization) - _KUSTOMIZE_FIELDS
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        [doc] = [
            d
            for d in docs
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        json_patch(doc, yaml.safe_load((directory / patch["path"]).read_text()))
    for doc in docs:
        _set_image_tags(doc, kustomization.get("images", []))
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [c for c in pod_spec(docs)["containers"] if c["name"] == name]
    return found


def host_paths(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {v["name"]: v["hostPath"]["path"] for v in pod_spec(docs)["volumes"] if "hostPath" in v}


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)


def install_spec(docs: list[dict[str, Any]]) -> Any:
    """The installer container's arguments through the real parser and ``build_spec``.

    The chain is the ConfigMap's ``chain.json`` (the file the pod reads at --chain).
    """
    args = list(container(docs, "install")["args"])
    assert "--chain=/etc/cnisdk/chain.json" in args
    chain = by_kind(docs, "ConfigMap")["data"]["chain.json"]
    args = [f"--chain={chain}" if a.startswith("--chain=") else a for a in args]
    return build_spec(build_parser("install").parse_args(args), "install")


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render(DEFAULT)


@pytest.fixture(scope="module")
def exec_only() -> list[dict[str, Any]]:
    return render(EXEC_OVERLAY)


@pytest.mark.parametrize(
    "doc", render(DEFAULT), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_valid_against_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    # strict: unknown fields are errors too. The schemas ship inside the package: no network.
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_exec_overlay_valid_against_kubernetes_schema(exec_only: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in exec_only:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomizations_list_every_file() -> None:
    base = yaml.safe_load((DEFAULT / "kustomization.yaml").read_text())
    files = sorted(p.name for p in DEFAULT.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(base["resources"]) == files
    overlay = yaml.safe_load((EXEC_OVERLAY / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../kubernetes"]
    patches = sorted(p.name for p in EXEC_OVERLAY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(p["path"] for p in overlay["patches"]) == patches
    assert overlay["images"] == base["images"]


@pytest.mark.parametrize("directory", [DEFAULT, EXEC_OVERLAY], ids=lambda p: p.name)
def test_render_is_what_kustomize_renders(directory: Path) -> None:
    if shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        argv = ["kustomize", "build", str(directory)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    assert theirs == sorted(render(directory), key=key)


def test_exec_overlay_refuses_a_reordered_base() -> None:
    # Each removal is guarded by a `test` op: on a base whose lists moved, the build fails
    # instead of dropping the wrong container, flag or volume.
    ops = yaml.safe_load((EXEC_OVERLAY / "daemonset-exec.yaml").read_text())
    assert ops[0]["op"] != "remove"
    for prev, op in itertools.pairwise(ops):
        if op["op"] == "remove":
            assert prev["op"] == "test", op
            assert prev["path"] == op["path"] or prev["path"].startswith(op["path"] + "/"), op
    for swap in ("containers", "volumes"):
        docs = copy.deepcopy(render(DEFAULT))
        items = pod_spec(docs)[swap]
        items[-1], items[-2] = items[-2], items[-1]
        with pytest.raises(PatchTestFailed):
            json_patch(by_kind(docs, "DaemonSet"), ops)
    docs = copy.deepcopy(render(DEFAULT))
    args = container(docs, "install")["args"]
    args[-1], args[-2] = args[-2], args[-1]
    with pytest.raises(PatchTestFailed):
        json_patch(by_kind(docs, "DaemonSet"), ops)


def test_every_volume_is_mounted_and_every_mount_has_a_volume(
    default: list[dict[str, Any]], exec_only: list[dict[str, Any]]
) -> None:
    for docs in (default, exec_only):
        pod = pod_spec(docs)
        volumes = [v["name"] for v in pod["volumes"]]
        assert len(set(volumes)) == len(volumes)
        mounted = {m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert mounted == set(volumes)


def test_installer_runs_the_documented_install(
    default: list[dict[str, Any]], exec_only: list[dict[str, Any]]
) -> None:
    for docs in (default, exec_only):
        pod = pod_spec(docs)
        install = container(docs, "install")
        args = install["args"]
        assert args[:2] == ["install", "istio-redirect"] and "--watch" in args
        assert pod["priorityClassName"] == "system-node-critical"
        assert pod["tolerations"] == [{"operator": "Exists"}]
        assert install["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
        mounts = {m["name"]: m["mountPath"] for m in install["volumeMounts"]}
        host = {n: p for n, p in host_paths(docs).items() if n in mounts}
        # Every hostPath it mounts sits at /host + its node path: what --host-root=/host assumes.
        for name, path in host.items():
            assert mounts[name] == "/host" + path
        given = flags(args)
        assert given["--host-root"] == "/host"
        assert given["--bin-dir"] == "/host/opt/cni/bin"
        assert given["--conf-dir"] == "/host/etc/cni/net.d"
        assert given["--runtime"].split(":")[1] in host.values()
        assert pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")["metadata"]["name"]
        security = install["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True


def test_default_installer_writes_shims_that_fall_back_to_exec(
    default: list[dict[str, Any]],
) -> None:
    spec = install_spec(default)
    agent_flags = flags(container(default, "agent")["args"])
    [entry] = spec.plugins
    assert isinstance(entry, AgentEntry) and entry.type == "istio-redirect"
    assert entry.socket_path == agent_flags["--socket"]
    assert entry.fallback == "exec"


def test_default_runs_the_agent_beside_the_installer(default: list[dict[str, Any]]) -> None:
    pod = pod_spec(default)
    install, agent = container(default, "install"), container(default, "agent")
    assert [c["name"] for c in pod["containers"]] == ["install", "agent"]
    assert pod["hostNetwork"] is True and agent["image"] == install["image"]
    args = build_parser("agent").parse_args(agent["args"])
    assert args.command == "agent" and args.types == "istio-redirect"
    host, port = args.health.rsplit(":", 1)
    for probe in ("livenessProbe", "readinessProbe"):
        assert agent[probe]["httpGet"] == {"host": host, "path": "/healthz", "port": int(port)}
    [node_name] = [e for e in agent["env"] if e["name"] == "NODE_NAME"]
    assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # The socket dir and the conf dir (the kubeconfig the config names) at their node paths.
    hosts = host_paths(default)
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    socket_dir = str(PurePosixPath(args.socket).parent)
    assert hosts[mounts[socket_dir]["name"]] == socket_dir
    assert hosts[mounts["/etc/cni/net.d"]["name"]] == "/etc/cni/net.d"
    assert mounts["/etc/cni/net.d"]["readOnly"] is True
    # The shims on the node connect to the same path the agent listens on, inside its mount.
    assert flags(install["args"])["--agent-socket"] == args.socket


@pytest.mark.parametrize("runtime", RUNTIME_NETNS_DIRS)
def test_agent_sees_the_runtimes_netns_dir(default: list[dict[str, Any]], runtime: str) -> None:
    # CNI_NETNS names a node path and the agent opens it as it is: the directory must be
    # mounted at that path. /var/run is /run in the image, as on the node.
    node_dir = RUNTIME_NETNS_DIRS[runtime].replace("/var/run/", "/run/", 1)
    mounts = {m["mountPath"]: m for m in container(default, "agent")["volumeMounts"]}
    mount = mounts[node_dir]
    assert host_paths(default)[mount["name"]] == node_dir
    # Namespaces pinned after the agent started must appear: HostToContainer propagation.
    assert mount["mountPropagation"] == "HostToContainer"
    assert mount["readOnly"] is True


def test_agent_privileges(default: list[dict[str, Any]]) -> None:
    pod = pod_spec(default)
    agent = container(default, "agent")
    security = agent["securityContext"]
    # setns into pod namespaces; iptables/nft there (NET_RAW: iptables-legacy). Nothing else.
    assert security["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"],
    }
    assert security["runAsUser"] == 0 and "privileged" not in security
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    # Writable: only its own memory-backed /run and the socket dir on the node.
    writable = {m["mountPath"] for m in agent["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/run", "/run/cnisdk"}
    [run] = [v for v in pod["volumes"] if v["name"] == "agent-run"]
    assert run["emptyDir"]["medium"] == "Memory"


def test_default_rbac_lets_the_agent_cache_pods(default: list[dict[str, Any]]) -> None:
    assert by_kind(default, "ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]


def test_exec_overlay_is_the_unprivileged_installer_alone(
    exec_only: list[dict[str, Any]],
) -> None:
    pod = pod_spec(exec_only)
    assert [c["name"] for c in pod["containers"]] == ["install"]
    assert not any(a.startswith("--agent") for a in container(exec_only, "install")["args"])
    [entry] = install_spec(exec_only).plugins
    assert entry.type == "istio-redirect" and not isinstance(entry, AgentEntry)
    assert set(host_paths(exec_only).values()) == {"/opt/cni/bin", "/etc/cni/net.d", "/opt/cnisdk"}
    assert by_kind(exec_only, "ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    ]


def test_exec_overlay_changes_only_the_agent_parts(
    default: list[dict[str, Any]], exec_only: list[dict[str, Any]]
) -> None:
    for before, after in zip(default, exec_only, strict=True):
        if after["kind"] not in ("DaemonSet", "ClusterRole"):
            assert after == before
    before_pod, after_pod = pod_spec(default), pod_spec(exec_only)
    assert {k: v for k, v in after_pod.items() if k not in ("containers", "volumes")} == {
        k: v for k, v in before_pod.items() if k not in ("containers", "volumes")
    }
    assert [v for v in before_pod["volumes"] if v in after_pod["volumes"]] == after_pod["volumes"]
    install_before = container(default, "install")
    install_after = container(exec_only, "install")
    assert {**install_after, "args": None} == {**install_before, "args": None}
    [rule_before] = by_kind(default, "ClusterRole")["rules"]
    [rule_after] = by_kind(exec_only, "ClusterRole")["rules"]
    assert {**rule_after, "verbs": None} == {**rule_before, "verbs": None}


def test_chain_configmap_is_a_valid_istio_redirect_entry(default: list[dict[str, Any]]) -> None:
    from cnisdk_istio_redirect._config import IstioRedirectConfig
    from cnisdk_istio_redirect._plugin import POD_ANNOTATIONS_CAPABILITY

    text = by_kind(default, "ConfigMap")["data"]["chain.json"]
    [entry] = _load_chain(text)
    assert entry["type"] == "istio-redirect"
    config = IstioRedirectConfig.model_validate(
        {"cniVersion": "1.0.0", "name": "k8s-pod-network", **entry}
    )
    # The runtime passes the pod's annotations: a pod without a sidecar needs no API GET.
    assert config.capabilities == {POD_ANNOTATIONS_CAPABILITY: True}
    assert json.loads(text) == entry


def test_deploy_docs_show_the_chained_entry_with_the_capability() -> None:
    from cnisdk_istio_redirect._plugin import POD_ANNOTATIONS_CAPABILITY

    text = (ROOT / "docs" / "how-to" / "deploy-istio-redirect.md").read_text()
    conflists = [
        json.loads(block)
        for block in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)
        if '"plugins"' in block
    ]
    entries = [p for c in conflists for p in c["plugins"] if p["type"] == "istio-redirect"]
    assert entries
    for entry in entries:
        assert entry["capabilities"] == {POD_ANNOTATIONS_CAPABILITY: True}


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
