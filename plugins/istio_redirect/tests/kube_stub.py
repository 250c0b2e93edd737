"""Test helpers: a realistic injected pod, a Kubernetes API stand-in over real HTTP(S), certs.

``KubeStub`` serves ``GET /api/v1/namespaces/{ns}/pods/{name}`` on ``127.0.0.1`` (an
ephemeral port) from a thread, with knobs for the failure modes the client must handle, and
for hostile answers: a :data:`Responder` writes whatever bytes it likes on the connection
(:func:`raw_answer`, :func:`dripping`, :func:`endless_body`), and ``echo_status`` makes every
answer an error whose message echoes the request's headers, as a misbehaving proxy does.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --------------------------------------------------------------------------- pods

_STATUS = json.dumps(
    {
        "initContainers": ["istio-validation"],
        "containers": ["istio-proxy"],
        "volumes": [
            "workload-socket",
            "credential-socket",
            "workload-certs",
            "istio-envoy",
            "istio-data",
            "istio-podinfo",
            "istio-token",
            "istiod-ca-cert",
        ],
        "imagePullSecrets": None,
        "revision": "default",
    },
    separators=(",", ":"),
)


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


# A pod as the sidecar injector (istio 1.2x, CNI on) leaves it: istio-validation instead of
# istio-init, interception annotations written, istio-proxy running "proxy sidecar".
INJECTED_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "reviews-v1-5b9d6c7f4-x8k2p",
        "generateName": "reviews-v1-5b9d6c7f4-",
        "namespace": "bookinfo",
        "uid": "6f1b1c1e-3a0e-4a53-9d6e-2a8f0c7b9e11",
        "labels": {
            "app": "reviews",
            "version": "v1",
            "pod-template-hash": "5b9d6c7f4",
            "security.istio.io/tlsMode": "istio",
            "service.istio.io/canonical-name": "reviews",
            "service.istio.io/canonical-revision": "v1",
        },
        "annotations": {
            "istio.io/rev": "default",
            "kubectl.kubernetes.io/default-container": "reviews",
            "kubectl.kubernetes.io/default-logs-container": "reviews",
            "prometheus.io/path": "/stats/prometheus",
            "prometheus.io/port": "15020",
            "prometheus.io/scrape": "true",
            "sidecar.istio.io/interceptionMode": "REDIRECT",
            "sidecar.istio.io/status": _STATUS,
            "traffic.sidecar.istio.io/excludeInboundPorts": "15020",
            "traffic.sidecar.istio.io/includeInboundPorts": "*",
            "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
        },
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "reviews-v1-5b9d6c7f4",
                "uid": "0c3d9a52-77b8-4a0a-b3f1-5d2d7c1e9f00",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    },
    "spec": {
        "serviceAccountName": "bookinfo-reviews",
        "initContainers": [
            {
                "name": "istio-validation",
                "image": "docker.io/istio/proxyv2:1.23.2",
                "args": [
                    "istio-iptables",
                    "-p",
                    "15001",
                    "-z",
                    "15006",
                    "-u",
                    "1337",
                    "-m",
                    "REDIRECT",
                    "-i",
                    "*",
                    "-x",
                    "",
                    "-b",
                    "*",
                    "-d",
                    "15090,15021,15020",
                    "--log_output_level=default:info",
                    "--run-validation",
                    "--skip-rule-apply",
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "runAsGroup": 1337,
                    "runAsNonRoot": True,
                    "runAsUser": 1337,
                },
            }
        ],
        "containers": [
            {
                "name": "reviews",
                "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.1",
                "ports": [{"containerPort": 9080, "protocol": "TCP"}],
            },
            {
                "name": "istio-proxy",
                "image": "docker.io/istio/proxyv2:1.23.2",
                "args": [
                    "proxy",
                    "sidecar",
                    "--domain",
                    "$(POD_NAMESPACE).svc.cluster.local",
                    "--proxyLogLevel=warning",
                    "--proxyComponentLogLevel=misc:error",
                    "--log_output_level=default:info",
                ],
                "env": [
                    {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                    {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
                    _field_env("POD_NAME", "metadata.name"),
                    _field_env("POD_NAMESPACE", "metadata.namespace"),
                    _field_env("INSTANCE_IP", "status.podIP"),
                    _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                    _field_env("HOST_IP", "status.hostIP"),
                    {
                        "name": "ISTIO_CPU_LIMIT",
                        "valueFrom": {
                            "resourceFieldRef": {"divisor": "0", "resource": "limits.cpu"}
                        },
                    },
                    {"name": "PROXY_CONFIG", "value": "{}\n"},
                    {
                        "name": "ISTIO_META_POD_PORTS",
                        "value": '[\n    {"containerPort":9080,"protocol":"TCP"}\n]',
                    },
                    {"name": "ISTIO_META_APP_CONTAINERS", "value": "reviews"},
                    {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
                    _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
                    {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
                    {"name": "ISTIO_META_WORKLOAD_NAME", "value": "reviews-v1"},
                    {
                        "name": "ISTIO_META_OWNER",
                        "value": "kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v1",
                    },
                    {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
                    {"name": "TRUST_DOMAIN", "value": "cluster.local"},
                ],
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                    "periodSeconds": 15,
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "runAsGroup": 1337,
                    "runAsNonRoot": True,
                    "runAsUser": 1337,
                },
            },
        ],
    },
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}


def _apply(target: dict[str, Any], changes: Mapping[str, str | None]) -> None:
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def injected_pod(
    *,
    annotations: Mapping[str, str | None] | None = None,
    labels: Mapping[str, str | None] | None = None,
    proxy_env: Mapping[str, str | None] | None = None,
    proxy_args: list[str] | None = None,
    proxy_security_context: dict[str, Any] | None = None,
    native_sidecar: bool = False,
    with_istio_init: bool = False,
    without_proxy: bool = False,
) -> dict[str, Any]:
    """A deep copy of :data:`INJECTED_POD` with changes.

    Mapping changes set keys; a ``None`` value deletes the key.  ``native_sidecar`` moves
    istio-proxy into initContainers with ``restartPolicy: Always`` (Kubernetes 1.28+).
    ``proxy_security_context`` replaces istio-proxy's securityContext (``{}`` clears it).
    """
    pod = copy.deepcopy(INJECTED_POD)
    meta, spec = pod["metadata"], pod["spec"]
    _apply(meta["annotations"], annotations or {})
    _apply(meta["labels"], labels or {})
    proxy = spec["containers"][1]
    if proxy_env:
        env = {e["name"]: e for e in proxy["env"]}
        for key, value in proxy_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = {"name": key, "value": value}
        proxy["env"] = list(env.values())
    if proxy_args is not None:
        proxy["args"] = proxy_args
    if proxy_security_context is not None:
        proxy["securityContext"] = proxy_security_context
    if native_sidecar:
        spec["containers"].remove(proxy)
        proxy["restartPolicy"] = "Always"
        spec["initContainers"].append(proxy)
    if with_istio_init:
        spec["initContainers"][0]["name"] = "istio-init"
    if without_proxy:
        spec["containers"] = [c for c in spec["containers"] if c["name"] != "istio-proxy"]
        spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "istio-proxy"]
    return pod


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class TLSFiles:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""

    ca_pem: str
    wrong_ca_pem: str
    cert_file: Path
    key_file: Path
    ca_file: Path


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_tls_files(directory: Path) -> TLSFiles:
    """Generate the certificates into ``directory`` (EC P-256: fast)."""
    ca_key, ca_cert = _ca("cnisdk-test-ca")
    _, wrong_cert = _ca("cnisdk-wrong-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_file, key_file, ca_file = (
        directory / "server.crt",
        directory / "server.key",
        directory / "ca.crt",
    )
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ca_pem = ca_cert.public_bytes(pem).decode()
    ca_file.write_text(ca_pem)
    return TLSFiles(
        ca_pem=ca_pem,
        wrong_ca_pem=wrong_cert.public_bytes(pem).decode(),
        cert_file=cert_file,
        key_file=key_file,
        ca_file=ca_file,
    )


# --------------------------------------------------------------------------- API stand-in

_POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/?]+)$")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    stub: KubeStub

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        ctx = self.stub.server_ssl
        if ctx is not None:
            # Handshake in the handler thread (setup), not in the accept loop.
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.stub.errors += 1  # TLS failures, clients that hung up: expected in tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        stub = self.server.stub
        with stub.lock:
            stub.requests.append(self.path)
            stub.headers.append(dict(self.headers.items()))
        if stub.delay:
            stub.release.wait(stub.delay)
        if stub.echo_status is not None:
            # Go's fmt of an http.Header: map[Authorization:[Bearer ...] ...]
            echoed = " ".join(f"{k}:[{v}]" for k, v in self.headers.items())
            message = f"request rejected by the gateway; request headers: map[{echoed}]"
            self._send(stub.echo_status, _status(stub.echo_status, "Rejected", message))
            return
        if stub.token is not None and self.headers.get("Authorization") != f"Bearer {stub.token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        match = _POD_PATH.match(self.path)
        if not match:
            self._send(404, _status(404, "NotFound", "the server could not find the resource"))
            return
        ns, name = match.groups()
        responder = stub.responders.get((ns, name))
        if responder is not None:
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client hung up: what bounded reads do
                responder(self)
            return
        if ns in stub.forbidden_namespaces:
            user = "system:serviceaccount:istio-system:istio-cni"
            message = (
                f'pods "{name}" is forbidden: User "{user}" cannot get resource "pods" '
                f'in API group "" in the namespace "{ns}"'
            )
            self._send(403, _status(403, "Forbidden", message))
            return
        with stub.lock:
            queued = stub.failures.get((ns, name))
            code = queued.pop(0) if queued else None
        if code is not None:
            self._send(code, _status(code, "InternalError", f"injected failure {code}"))
            return
        pod = stub.pods.get((ns, name))
        if pod is None:
            self._send(404, _status(404, "NotFound", f'pods "{name}" not found'))
            return
        self._send(200, pod)


Responder = Callable[[BaseHTTPRequestHandler], None]
"""Writes a whole answer (status line included) on the handler's ``wfile``."""


def raw_answer(head: bytes, body: bytes = b"") -> Responder:
    """Send ``head`` (status line and headers, without the blank line) and ``body`` verbatim."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(head.rstrip(b"\r\n") + b"\r\n\r\n" + body)
        handler.wfile.flush()

    return respond


def dripping(interval: float, announced: int = 10_000) -> Responder:
    """A 200 announcing ``announced`` bytes, then one byte every ``interval`` s, until the
    client hangs up or the stub closes."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        stub: KubeStub = handler.server.stub  # type: ignore[attr-defined]
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}"
        handler.wfile.write(head.encode() + b"\r\n\r\n{")
        handler.wfile.flush()
        for _ in range(announced - 1):
            if stub.release.wait(interval):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()
            with stub.lock:
                stub.sent += 1

    return respond


def endless_body(*, announce: int | None, chunk: bytes = b" " * 65536) -> Responder:
    """A 200 whose body never ends (``announce``: the Content-Length claimed, else chunked)."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        stub: KubeStub = handler.server.stub  # type: ignore[attr-defined]
        framing = f"Content-Length: {announce}" if announce else "Transfer-Encoding: chunked"
        handler.wfile.write(f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode())
        piece = chunk if announce else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        deadline = time.monotonic() + 30
        while not stub.release.is_set() and time.monotonic() < deadline:
            handler.wfile.write(piece)
            with stub.lock:
                stub.sent += len(chunk)

    return respond


class KubeStub:
    """A Kubernetes API stand-in on ``127.0.0.1``; use as a context manager.

    :ivar pods: ``(namespace, name) -> pod JSON`` served with 200.
    :ivar token: the bearer token required (``None``: no check); others get 401.
    :ivar forbidden_namespaces: namespaces answered with 403.
    :ivar failures: ``(namespace, name) -> [status, ...]`` answered first, one per request.
    :ivar delay: seconds to wait before answering (interrupted on close).
    :ivar responders: ``(namespace, name) -> Responder`` writing a raw answer for that pod.
    :ivar echo_status: answer every request with this status, echoing its headers.
    :ivar requests: request paths seen, in order.
    :ivar headers: the headers of each request, in order.
    :ivar sent: body bytes written by :func:`dripping` and :func:`endless_body` responders.
    """

    def __init__(self, *, token: str | None = "good-token", tls: TLSFiles | None = None) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.token = token
        self.forbidden_namespaces: set[str] = set()
        self.failures: dict[tuple[str, str], list[int]] = {}
        self.delay = 0.0
        self.responders: dict[tuple[str, str], Responder] = {}
        self.echo_status: int | None = None
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.sent = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server_ssl: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            self.server_ssl = ctx
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, ``http(s)://127.0.0.1:<port>``."""
        scheme = "https" if self.server_ssl else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def add_pod(self, pod: dict[str, Any]) -> None:
        """Serve ``pod`` under its metadata namespace/name."""
        meta = pod["metadata"]
        self.pods[(meta["namespace"], meta["name"])] = pod

    def __enter__(self) -> KubeStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
