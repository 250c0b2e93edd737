"""``cnisdk demo``: a real chain with istio-redirect, for two pods in throwaway namespaces.

It runs what a container runtime would: Debian's Go ``bridge`` (with ``host-local`` IPAM)
followed by ``istio-redirect``, for two sample pods served by a local stand-in of the
Kubernetes API. The pod Istio injected a sidecar into is redirected: the demo shows why, the
rules, and a connection from the pod landing on the sidecar's port. The plain pod goes
through the same chain and is left alone: no ISTIO chain in its namespace. Then it deletes
both attachments and everything it made.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnisdk import NetConfList
    from cnisdk._runtime import CNIRuntime, RuntimeConf

from cnisdk._commands import CommandError

__all__ = ["configure", "run"]

SAMPLE_NAMESPACE = "demo"
SIDECAR_POD = "productpage-v1-7d9f8b6c5-x2vkq"
PLAIN_POD = "postgres-0"
TOKEN = "cnisdk-demo-token"
OUTBOUND_PORT = 15001
SO_ORIGINAL_DST = 80
STATUS_ANNOTATION = "sidecar.istio.io/status"


def sample_pod() -> dict[str, Any]:
    """A pod as Istio's injector leaves it with istio-cni on (``istio-validation`` init)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": SIDECAR_POD,
            "namespace": SAMPLE_NAMESPACE,
            "labels": {"app": "productpage", "security.istio.io/tlsMode": "istio"},
            "annotations": {
                STATUS_ANNOTATION: json.dumps(
                    {
                        "initContainers": ["istio-validation"],
                        "containers": ["istio-proxy"],
                        "volumes": ["istio-envoy", "istio-data", "istiod-ca-cert"],
                        "revision": "default",
                    }
                ),
                "sidecar.istio.io/interceptionMode": "REDIRECT",
                "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
                "traffic.sidecar.istio.io/includeInboundPorts": "*",
                "traffic.sidecar.istio.io/excludeInboundPorts": "15020",
            },
        },
        "spec": {
            "initContainers": [
                {
                    "name": "istio-validation",
                    "image": "docker.io/istio/proxyv2:1.24.0",
                    "args": ["istio-iptables", "--run-validation", "--skip-rule-apply"],
                }
            ],
            "containers": [
                {"name": "productpage", "image": "docker.io/istio/examples-bookinfo:1.20"},
                {
                    "name": "istio-proxy",
                    "image": "docker.io/istio/proxyv2:1.24.0",
                    "args": ["proxy", "sidecar", "--domain", "demo.svc.cluster.local"],
                    "env": [{"name": "ISTIO_META_DNS_CAPTURE", "value": "false"}],
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                },
            ],
        },
    }


def plain_pod() -> dict[str, Any]:
    """A pod in the same namespace that Istio's injector did not touch."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": PLAIN_POD, "namespace": SAMPLE_NAMESPACE, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "postgres", "image": "docker.io/library/postgres:16"}]},
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a real chain (Debian's Go bridge with host-local, then istio-redirect) for two "
        "sample pods in throwaway network namespaces: one with Istio's sidecar, which is "
        "redirected, and one without, which is left alone."
    )
    parser.epilog = (
        "Needs root, iproute2, iptables and Debian's containernetworking-plugins. Everything "
        "it creates (namespaces, bridge, rules, files) is removed before it exits."
    )
    parser.add_argument(
        "--go-plugins",
        default="/usr/lib/cni:/opt/cni/bin",
        metavar="DIR[:DIR]",
        help="where the Go reference plugins are (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    import anyio

    if os.geteuid() != 0:
        raise CommandError("needs root", "it creates network namespaces: run it as root")
    from cnisdk.spec._errors import CNIError

    try:
        return anyio.run(_demo, args.go_plugins.split(":"), backend="asyncio")
    except (DemoError, CNIError) as exc:
        print()
        raise CommandError(f"FAILED: {exc}") from None


class DemoError(Exception):
    pass


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def _demo(go_plugins: list[str]) -> int:
    import anyio

    from cnisdk._confdir import conflist_from_bytes
    from cnisdk._discovery import PluginLoadError, get_plugin
    from cnisdk._launcher import write_launcher
    from cnisdk._runtime import CNIRuntime

    suffix = secrets.token_hex(3)
    bridge = f"cnidemo{suffix}"
    subnet = f"10.{200 + secrets.randbelow(50)}.7"
    pods = [sample_pod(), plain_pod()]
    with tempfile.TemporaryDirectory(prefix="cnisdk-demo-") as tmp, _api_server(pods) as api_url:
        work = Path(tmp)
        bin_dir = work / "bin"
        try:
            write_launcher(bin_dir, get_plugin("istio-redirect"))
        except PluginLoadError as exc:
            raise DemoError(f"{exc} (pip install plugins/istio_redirect)") from exc
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(api_url))
        kubeconfig.chmod(0o600)
        _explain(api_url)
        conflist = _conflist(bridge, subnet, work, kubeconfig)
        _step("the chain (a conflist as a node would have it)")
        print(_folded_json(conflist))
        runtime = CNIRuntime([str(bin_dir), *go_plugins], cache_dir=str(work / "cache"), timeout=60)
        network = conflist_from_bytes(json.dumps(conflist).encode())
        with ExitStack() as namespaces:
            attached: list[RuntimeConf] = []
            try:
                sidecar_ns = namespaces.enter_context(_throwaway_netns(f"cnisdk-demo-{suffix}-1"))
                plain_ns = namespaces.enter_context(_throwaway_netns(f"cnisdk-demo-{suffix}-2"))

                _step(f"pod 1: {SAMPLE_NAMESPACE}/{SIDECAR_POD}, with Istio's sidecar")
                _print_deciding_facts(pods[0])
                rt = await _add(runtime, network, SIDECAR_POD, suffix, "1", sidecar_ns, attached)
                print("rules istio-redirect installed in the pod's namespace (nat table):")
                for line in _iptables_lines(sidecar_ns):
                    if "ISTIO" in line:
                        print(f"  {line}")
                original = await _prove_redirect(sidecar_ns, f"{subnet}.1")
                print(
                    f"a connection from the pod to {subnet}.1:8080 was accepted by the listener "
                    f"on :{OUTBOUND_PORT}, original destination {original}: it reached the "
                    "sidecar's outbound port"
                )
                await runtime.check(network, rt)
                print("CHECK: ok (the rules are as ADD installed them)")

                _step(f"pod 2: {SAMPLE_NAMESPACE}/{PLAIN_POD}, without a sidecar")
                _print_deciding_facts(pods[1])
                await _add(runtime, network, PLAIN_POD, suffix, "2", plain_ns, attached)
                _prove_no_rules(plain_ns)
            finally:
                _step("DEL and clean-up")
                try:
                    for attachment in reversed(attached):
                        await runtime.delete(network, attachment)
                finally:
                    await anyio.run_process(["ip", "link", "del", bridge], check=False)
        print("deleted both attachments, the bridge and the namespaces")
    print(
        "\ndemo finished: the pod with a sidecar has its traffic redirected to it; "
        "the pod without one is left alone."
    )
    return 0


def _explain(api_url: str) -> None:
    """What the demo runs, how istio-redirect decides, and what the API stand-in is."""
    import textwrap

    def say(*sentences: str) -> None:
        print(textwrap.fill(" ".join(sentences), width=88, break_on_hyphens=False))

    say(
        "cnisdk demo: Debian's Go bridge (with host-local), then istio-redirect, run as a",
        "container runtime runs a chain, for two pods in throwaway network namespaces.",
    )
    _step("how istio-redirect decides, and a stand-in for the Kubernetes API")
    say(
        "istio-redirect reads each pod from the Kubernetes API to decide whether to redirect",
        "its traffic: it redirects a pod Istio injected a sidecar into (the",
        f"{STATUS_ANNOTATION} annotation, an istio-proxy container running as a sidecar, no",
        "istio-init container) and leaves any other pod alone (every rule:",
        "docs/reference/istio-redirect.md).",
    )
    say(
        f"There is no cluster here: a local HTTP server, {api_url}, answers",
        "GET /api/v1/namespaces/NAMESPACE/pods/NAME as an API server would (bearer token",
        "checked, the Pod as JSON, a 404 Status for any other pod), and the kubeconfig in the",
        "chain's config points istio-redirect at it. It knows the two pods below; its requests",
        'show as "[kube-api stand-in] GET ...".',
    )


def _conflist(bridge: str, subnet: str, work: Path, kubeconfig: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "cnisdk-demo",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": f"{subnet}.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(work / "ipam"),
                },
            },
            {
                "type": "istio-redirect",
                "kubeconfig": str(kubeconfig),
                "exclude_namespaces": ["kube-system"],
                "plugin_log_level": "info",
                "kube_api_attempts": 2,
            },
        ],
    }


def _folded_json(value: Any, indent: str = "", width: int = 88) -> str:
    """JSON with one key per line, except values short enough to stay on one line."""
    flat = json.dumps(value)
    if len(indent) + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k)}: {_folded_json(v, inner, width)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [f"{inner}{_folded_json(v, inner, width)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def _print_deciding_facts(pod: dict[str, Any]) -> None:
    """What istio-redirect reads in the pod; the verdict is its own (its log line)."""
    status = pod["metadata"].get("annotations", {}).get(STATUS_ANNOTATION)
    if status is not None:  # its keys that name what the injector added, then the rest elided
        added = json.loads(status)
        shown = {k: added[k] for k in ("initContainers", "containers") if k in added}
        status = json.dumps(shown)[:-1] + (", ...}" if len(shown) < len(added) else "}")
    containers = [
        c["name"]
        + (f" (args: {' '.join(c['args'][:2])} ...)" if c["name"] == "istio-proxy" else "")
        for c in pod["spec"]["containers"]
    ]
    init = [c["name"] for c in pod["spec"].get("initContainers", [])]
    print("what istio-redirect reads in it (the API's answer):")
    print(f"  annotation {STATUS_ANNOTATION}: {status or '(none: the injector did not run)'}")
    print(f"  containers: {', '.join(containers)}")
    print(f"  init containers: {', '.join(init) or '(none)'}")


async def _add(
    runtime: CNIRuntime,
    network: NetConfList,
    pod: str,
    suffix: str,
    n: str,
    netns_path: str,
    attached: list[RuntimeConf],
) -> RuntimeConf:
    """ADD one pod (recorded for DEL first, as a failed ADD is cleaned up by DEL too)."""
    from cnisdk._runtime import RuntimeConf
    from cnisdk.spec._result import result_to_json

    rt = RuntimeConf(
        container_id=f"demo{suffix}-{n}",
        netns=netns_path,
        ifname="eth0",
        args=[
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", SAMPLE_NAMESPACE),
            ("K8S_POD_NAME", pod),
        ],
    )
    print(f"ADD in network namespace {Path(netns_path).name}")
    attached.append(rt)
    log = io.StringIO()
    try:
        # The plugins' stderr (istio-redirect's log: its decision), shown in the flow.
        with redirect_stderr(log):
            result = json.loads(result_to_json(await runtime.add(network, rt)))
    finally:
        for line in log.getvalue().splitlines():
            print(f"   [plugin log] {line}")
    addresses = ", ".join(f"{ip['address']} via {ip.get('gateway')}" for ip in result["ips"])
    print(f"result: eth0 {addresses} (bridge's result, which istio-redirect passes on as it is)")
    return rt


async def _prove_redirect(netns_path: str, gateway: str) -> str:
    from cnisdk._netns import NetNS

    with NetNS.open(netns_path) as netns:
        listener = await netns.run(_listen, OUTBOUND_PORT)
        client = await netns.run(socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    with listener, client:
        client.settimeout(5)
        try:
            client.connect((gateway, 8080))
        except OSError as exc:
            raise DemoError(f"connection to {gateway}:8080 was not redirected: {exc}") from exc
        accepted, _ = listener.accept()
        with accepted:
            raw = accepted.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, packed = struct.unpack_from("!2xH4s", raw)
            return f"{socket.inet_ntoa(packed)}:{port}"


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(1)
    sock.settimeout(5)
    return sock


def _prove_no_rules(netns_path: str) -> None:
    """No istio rule in the namespace, by iptables (either backend) and, if installed, nft."""
    found = [line for line in _iptables_lines(netns_path) if "ISTIO" in line]
    tools = ["iptables-save"]
    if shutil.which("nft") is not None:
        ruleset = _in_netns(netns_path, "nft", "list", "ruleset").splitlines()
        found += [line for line in ruleset if "istio" in line.lower()]
        tools.append("nft list ruleset")
    if found:
        raise DemoError(f"the plain pod got redirect rules: {found}")
    print(f"rules in the pod's namespace: no ISTIO chain ({' and '.join(tools)} show none)")


def _iptables_lines(netns_path: str) -> list[str]:
    """The namespace's IPv4 rules as iptables-save prints them, comments left out."""
    text = _in_netns(netns_path, "iptables-save")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _in_netns(netns_path: str, *argv: str) -> str:
    completed = subprocess.run(
        ["ip", "netns", "exec", Path(netns_path).name, *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise DemoError(f"{' '.join(argv)} failed: {completed.stderr.strip()}")
    return completed.stdout


@contextmanager
def _throwaway_netns(name: str) -> Iterator[str]:
    if shutil.which("ip") is None:
        raise DemoError("`ip` (iproute2) is not installed")
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if created.returncode != 0:
        raise DemoError(f"cannot create network namespace {name}: {created.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _kubeconfig(server: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "demo", "cluster": {"server": server}}],
        "users": [{"name": "istio-cni", "user": {"token": TOKEN}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "istio-cni"}}],
        "current-context": "demo",
    }
    return json.dumps(doc, indent=2)


@contextmanager
def _api_server(pods: list[dict[str, Any]]) -> Iterator[str]:
    """A stand-in for the Kubernetes API that answers GET pod for ``pods``, on 127.0.0.1."""
    served = {
        f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/{p['metadata']['name']}": (
            json.dumps(p).encode()
        )
        for p in pods
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path.split("?")[0])
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, b'{"kind":"Status","code":401,"reason":"Unauthorized"}')
            elif body is not None:
                self._reply(200, body)
            else:
                self._reply(404, b'{"kind":"Status","code":404,"reason":"NotFound"}')

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"   [kube-api stand-in] {self.command} {self.path}", flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
