"""``cnisdk demo``: a real chain with istio-redirect in a throwaway network namespace.

It runs what a container runtime would: Debian's Go ``bridge`` (with ``host-local`` IPAM)
followed by ``istio-redirect``, for a built-in sample pod served by a local stand-in of the
Kubernetes API. It shows the result and the rules, proves that a connection from the pod is
redirected to the sidecar port, then deletes the attachment and everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["configure", "run"]

SAMPLE_NAMESPACE = "demo"
SAMPLE_POD = "productpage-v1-7d9f8b6c5-x2vkq"
TOKEN = "cnisdk-demo-token"
OUTBOUND_PORT = 15001
SO_ORIGINAL_DST = 80


def sample_pod() -> dict[str, Any]:
    """A pod as Istio's injector leaves it with istio-cni on (``istio-validation`` init)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": SAMPLE_POD,
            "namespace": SAMPLE_NAMESPACE,
            "labels": {"app": "productpage", "security.istio.io/tlsMode": "istio"},
            "annotations": {
                "sidecar.istio.io/status": json.dumps(
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


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.epilog = (
        "Needs root, iproute2, iptables and Debian's containernetworking-plugins. Everything "
        "it creates (namespace, bridge, rules, files) is removed before it exits."
    )
    parser.add_argument(
        "--go-plugins",
        default="/usr/lib/cni:/opt/cni/bin",
        help="where the Go reference plugins are (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    import anyio

    if os.geteuid() != 0:
        print("cnisdk demo: needs root (it creates a network namespace)", file=sys.stderr)
        return 1
    from cnisdk.spec._errors import CNIError

    try:
        return anyio.run(_demo, args.go_plugins.split(":"), backend="asyncio")
    except (DemoError, CNIError) as exc:
        print(f"\ncnisdk demo: FAILED: {exc}", file=sys.stderr)
        return 1


class DemoError(Exception):
    pass


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def _demo(go_plugins: list[str]) -> int:
    import anyio

    from cnisdk._confdir import conflist_from_bytes
    from cnisdk._discovery import PluginLoadError, get_plugin
    from cnisdk._launcher import write_launcher
    from cnisdk._runtime import CNIRuntime, RuntimeConf
    from cnisdk.spec._result import result_to_json

    suffix = secrets.token_hex(3)
    netns_name = f"cnisdk-demo-{suffix}"
    bridge = f"cnidemo{suffix}"
    subnet_octet = 200 + secrets.randbelow(50)
    with tempfile.TemporaryDirectory(prefix="cnisdk-demo-") as tmp, _api_server() as api_url:
        work = Path(tmp)
        bin_dir = work / "bin"
        try:
            write_launcher(bin_dir, get_plugin("istio-redirect"))
        except PluginLoadError as exc:
            raise DemoError(f"{exc} (pip install plugins/istio_redirect)") from exc
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(api_url))
        kubeconfig.chmod(0o600)
        conflist = {
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
                        "ranges": [[{"subnet": f"10.{subnet_octet}.7.0/24"}]],
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
        _step("the chain (a conflist as a node would have it)")
        print(json.dumps(conflist, indent=2))
        runtime = CNIRuntime([str(bin_dir), *go_plugins], cache_dir=str(work / "cache"), timeout=60)
        network = conflist_from_bytes(json.dumps(conflist).encode())
        with _throwaway_netns(netns_name) as netns_path:
            rt = RuntimeConf(
                container_id=f"demo{suffix}",
                netns=netns_path,
                ifname="eth0",
                args=[
                    ("IgnoreUnknown", "1"),
                    ("K8S_POD_NAMESPACE", SAMPLE_NAMESPACE),
                    ("K8S_POD_NAME", SAMPLE_POD),
                ],
            )
            try:
                _step(f"ADD {SAMPLE_NAMESPACE}/{SAMPLE_POD} in namespace {netns_name}")
                result = await runtime.add(network, rt)
                print(result_to_json(result).decode())
                _step("rules istio-redirect installed in the pod's namespace (nat table)")
                print(_ip_netns(netns_name, "iptables-save", "-t", "nat").strip())
                _step("does an outbound connection reach the sidecar?")
                gateway = f"10.{subnet_octet}.7.1"
                original = await _prove_redirect(netns_path, gateway)
                print(
                    f"connected to {gateway}:8080 from the pod; the connection was accepted by "
                    f"the listener on :{OUTBOUND_PORT}, original destination {original}"
                )
                _step("CHECK")
                await runtime.check(network, rt)
                print("ok")
            finally:
                _step("DEL and clean-up")
                await runtime.delete(network, rt)
                await anyio.run_process(["ip", "link", "del", bridge], check=False)
                print("deleted the attachment, the bridge and the namespace")
    print("\ndemo finished: traffic from the pod is redirected to the sidecar.")
    return 0


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


def _ip_netns(name: str, *argv: str) -> str:
    completed = subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, check=False
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
def _api_server() -> Iterator[str]:
    """A stand-in for the Kubernetes API that knows one pod, on 127.0.0.1."""
    pod = json.dumps(sample_pod()).encode()
    pod_path = f"/api/v1/namespaces/{SAMPLE_NAMESPACE}/pods/{SAMPLE_POD}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, b'{"kind":"Status","code":401,"reason":"Unauthorized"}')
            elif self.path.split("?")[0] == pod_path:
                self._reply(200, pod)
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
