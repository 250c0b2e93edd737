"""A small async Kubernetes client: load credentials, then GET one pod.

Import this module only when a lookup is needed; it pulls in ``httpx`` and ``ssl``.

Credentials come from a kubeconfig file (:func:`load_kubeconfig`; Istio's node agent writes
one with a ``token`` and ``certificate-authority-data``) or from the pod's own service
account (:func:`load_incluster_config`).  :func:`get_pod` fetches
``/api/v1/namespaces/{ns}/pods/{name}`` with a per-attempt timeout and a bounded number of
attempts, and turns every failure into a :class:`KubeError` that names the pod.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx

__all__ = [
    "DEFAULT_SERVICE_ACCOUNT_DIR",
    "KubeConfig",
    "KubeConfigError",
    "KubeError",
    "get_pod",
    "load_incluster_config",
    "load_kubeconfig",
    "new_client",
]

DEFAULT_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_USER_AGENT = "cnisdk-istio-redirect"
_MAX_DETAIL = 300


class KubeConfigError(ValueError):
    """Credentials could not be loaded: a missing, unreadable or invalid file or setting."""


class KubeError(Exception):
    """Getting a pod from the API server failed.

    :ivar pod: the pod as ``namespace/name``.
    :ivar status_code: the HTTP status, or ``None`` for timeouts and connection/TLS errors.
    :ivar retryable: whether another attempt could succeed (timeouts, 5xx, 429, connection
        errors); 401, 403, 404 and TLS verification failures are final.
    :ivar attempts: how many attempts were made before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        pod: str,
        status_code: int | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.pod = pod
        self.status_code = status_code
        self.retryable = retryable
        self.attempts = attempts


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it.

    :ivar server: base URL, ``https://host:port`` (a path prefix is kept) or ``http://...``.
    :ivar token: bearer token, or ``None`` for no ``Authorization`` header.
    :ivar ca_pem: PEM CA bundle to verify the server with; ``None`` uses the system store.
    :ivar insecure_skip_tls_verify: do not verify the server certificate at all.
    :ivar source: where this came from (a file path or ``in-cluster``), for messages.
    """

    server: str
    token: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    source: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context for :attr:`server` (unused for ``http``).

        :raises KubeConfigError: if :attr:`ca_pem` holds no usable certificate.
        """
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_pem is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise KubeConfigError(
                f"{self.source or 'kubeconfig'}: the certificate authority is not a valid PEM "
                f"certificate: {exc}"
            ) from None


# --------------------------------------------------------------------------- loading


def _check_server(server: Any, where: str) -> str:
    if not isinstance(server, str) or not server:
        raise KubeConfigError(f"{where}: no server URL")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KubeConfigError(f"{where}: server {server!r} is not an http(s)://host URL")
    return server.rstrip("/")


def _read_text(path: Path, what: str, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KubeConfigError(f"{where}: {what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeConfigError(f"{where}: cannot read {what} {path}: {exc}") from None


def _read_token(path: Path, where: str) -> str:
    token = _read_text(path, "token file", where).strip()
    if not token:
        raise KubeConfigError(f"{where}: token file {path} is empty")
    return token


def _named(entries: Any, name: str, kind: str, where: str) -> Mapping[str, Any]:
    if not isinstance(entries, list):
        raise KubeConfigError(f"{where}: {kind}s is missing or not a list")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(kind)
            if not isinstance(body, Mapping):
                raise KubeConfigError(f"{where}: {kind} {name!r} has no {kind} section")
            return body
    raise KubeConfigError(f"{where}: {kind} {name!r} not found")


def _parse_document(text: str, where: str) -> Mapping[str, Any]:
    doc: Any
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KubeConfigError(f"{where}: invalid JSON: {exc}") from None
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KubeConfigError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise KubeConfigError(f"{where}: not a kubeconfig (expected a mapping at the top)")
    return doc


def _checked(config: KubeConfig) -> KubeConfig:
    if config.ca_pem is not None:
        config.ssl_context()  # raises KubeConfigError for a bad CA
    return config


def load_kubeconfig(path: str | os.PathLike[str], *, context: str | None = None) -> KubeConfig:
    """Load a kubeconfig file (YAML or JSON).

    The context is ``context`` or the file's ``current-context``; it names a cluster
    (``server``, ``certificate-authority-data`` (base64 PEM) or ``certificate-authority`` (a
    file), ``insecure-skip-tls-verify``) and a user (``tokenFile`` or ``token``; as in
    client-go the file wins when both are set).  Relative file paths are resolved against the
    kubeconfig's directory.  Files are read now, once: a CNI plugin lives for one request.

    :param path: the kubeconfig file.
    :param context: a context name overriding ``current-context``.
    :returns: the loaded configuration.
    :raises KubeConfigError: if the file or anything it refers to is missing or invalid, or
        the user authenticates only in an unsupported way (client certificates, exec,
        auth-provider).
    """
    file = Path(path)
    where = f"kubeconfig {file}"
    doc = _parse_document(_read_text(file, "file", "kubeconfig"), where)
    base = file.parent

    ctx_name = context if context is not None else doc.get("current-context")
    if not isinstance(ctx_name, str) or not ctx_name:
        raise KubeConfigError(f"{where}: no current-context set")
    ctx = _named(doc.get("contexts"), ctx_name, "context", where)
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise KubeConfigError(f"{where}: context {ctx_name!r} names no cluster")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", where)
    server = _check_server(cluster.get("server"), f"{where}, cluster {cluster_name!r}")

    ca_pem: str | None = None
    ca_data = cluster.get("certificate-authority-data")
    ca_file = cluster.get("certificate-authority")
    if ca_data:
        if not isinstance(ca_data, str):
            raise KubeConfigError(f"{where}: certificate-authority-data is not a string")
        try:
            ca_pem = base64.b64decode(ca_data, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise KubeConfigError(
                f"{where}: certificate-authority-data is not base64-encoded PEM"
            ) from None
    elif ca_file:
        if not isinstance(ca_file, str):
            raise KubeConfigError(f"{where}: certificate-authority is not a path")
        ca_pem = _read_text(base / ca_file, "certificate-authority file", where)
    insecure = cluster.get("insecure-skip-tls-verify", False) is True
    if insecure and ca_pem is not None:
        raise KubeConfigError(
            f"{where}: certificate-authority(-data) and insecure-skip-tls-verify are "
            "mutually exclusive"
        )

    token: str | None = None
    user_name = ctx.get("user")
    if isinstance(user_name, str) and user_name:
        user = _named(doc.get("users"), user_name, "user", where)
        token_file = user.get("tokenFile")
        raw_token = user.get("token")
        if token_file:
            if not isinstance(token_file, str):
                raise KubeConfigError(f"{where}: user {user_name!r} tokenFile is not a path")
            token = _read_token(base / token_file, where)
        elif raw_token:
            if not isinstance(raw_token, str):
                raise KubeConfigError(f"{where}: user {user_name!r} token is not a string")
            token = raw_token.strip()
        else:
            other = sorted(
                k
                for k in ("client-certificate", "client-certificate-data", "exec", "auth-provider")
                if user.get(k)
            )
            if other:
                raise KubeConfigError(
                    f"{where}: user {user_name!r} authenticates with {', '.join(other)}, "
                    "which is not supported; use token or tokenFile"
                )

    return _checked(
        KubeConfig(
            server=server,
            token=token,
            ca_pem=ca_pem,
            insecure_skip_tls_verify=insecure,
            source=str(file),
        )
    )


def load_incluster_config(
    *,
    service_account_dir: str | os.PathLike[str] = DEFAULT_SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeConfig:
    """Load the credentials of the pod this process runs in.

    Uses ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and the service account's
    ``token`` and ``ca.crt`` files.

    :param service_account_dir: directory of ``token`` and ``ca.crt``.
    :param environ: environment to read (default :data:`os.environ`).
    :returns: the loaded configuration (``https``, verified against ``ca.crt``).
    :raises KubeConfigError: outside a cluster, or when a file is missing, empty or invalid.
    """
    env = os.environ if environ is None else environ
    where = "in-cluster config"
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError(
            f"{where}: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
            "(not running in a pod?)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    sa_dir = Path(service_account_dir)
    token = _read_token(sa_dir / "token", where)
    ca_pem = _read_text(sa_dir / "ca.crt", "CA file", where)
    server = _check_server(f"https://{host}:{port}", where)
    return _checked(KubeConfig(server=server, token=token, ca_pem=ca_pem, source="in-cluster"))


# --------------------------------------------------------------------------- lookup


def _api_message(response: httpx.Response) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else a short text excerpt."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f": {text[:_MAX_DETAIL]}" if text else ""
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return f": {body['message'][:_MAX_DETAIL]}"
    return ""


def _status_error(response: httpx.Response, config: KubeConfig, ns: str, pod: str) -> KubeError:
    code = response.status_code
    detail = _api_message(response)
    at = config.server
    if code == 401:
        return KubeError(
            f"getting pod {pod}: 401 Unauthorized from {at}: the token from "
            f"{config.source or 'the config'} is invalid or expired{detail}",
            pod=pod,
            status_code=code,
        )
    if code == 403:
        return KubeError(
            f"getting pod {pod}: 403 Forbidden from {at}: RBAC denies it; the account needs "
            f"'get' on 'pods' in namespace {ns!r}{detail}",
            pod=pod,
            status_code=code,
        )
    if code == 404:
        return KubeError(
            f"getting pod {pod}: 404 pod not found at {at}{detail}", pod=pod, status_code=code
        )
    retryable = code >= 500 or code == 429
    return KubeError(
        f"getting pod {pod}: HTTP {code} {response.reason_phrase} from {at}{detail}",
        pod=pod,
        status_code=code,
        retryable=retryable,
    )


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _transport_error(exc: httpx.TransportError, config: KubeConfig, pod: str) -> KubeError:
    at = config.server
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return KubeError(
            f"getting pod {pod}: TLS verification of {at} failed ({tls.verify_message or tls}); "
            f"check the certificate authority in {config.source or 'the config'}",
            pod=pod,
        )
    if tls is not None:
        final = "WRONG_VERSION_NUMBER" in str(tls)  # e.g. https:// to a plain-HTTP port
        return KubeError(
            f"getting pod {pod}: TLS handshake with {at} failed: {tls}",
            pod=pod,
            retryable=not final,
        )
    return KubeError(
        f"getting pod {pod}: cannot reach {at}: {type(exc).__name__}: {exc}",
        pod=pod,
        retryable=True,
    )


def new_client(config: KubeConfig, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An HTTP client for ``config``'s server (proxy variables ignored).

    TLS settings are only built for ``https`` servers: for ``http`` there is no handshake,
    and httpx's default (``verify=True``) would load the system CA store, ~15 ms, for nothing.

    :raises KubeConfigError: if the configured CA is invalid.
    """
    verify: ssl.SSLContext | bool = (
        config.ssl_context() if config.server.startswith("https:") else False
    )
    return httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False)


async def get_pod(
    config: KubeConfig,
    namespace: str,
    name: str,
    *,
    timeout: float,  # noqa: ASYNC109 - a per-attempt bound, not one for the whole call
    attempts: int,
    backoff: float,
    client: httpx.AsyncClient | None = None,
) -> dict[str, Any]:
    """GET ``/api/v1/namespaces/{namespace}/pods/{name}`` and return the Pod JSON.

    Each attempt is bounded by ``timeout`` seconds in total (connect, TLS, request and body).
    Timeouts, connection errors, HTTP 5xx and 429 are retried, up to ``attempts`` attempts
    with ``backoff`` seconds between them; 401, 403, 404, other 4xx, TLS verification
    failures and non-JSON answers fail at once.  Proxy environment variables are ignored.

    :param config: where and how to connect.
    :param namespace: the pod's namespace.
    :param name: the pod's name.
    :param timeout: seconds per attempt (> 0).
    :param attempts: maximum number of attempts (>= 1).
    :param backoff: seconds to sleep between attempts (>= 0).
    :param client: a client from :func:`new_client` for ``config`` to reuse (an agent keeps
        one, so its connection stays open); by default a new one is made and closed.
    :returns: the decoded Pod object.
    :raises KubeError: naming the pod as ``namespace/name``, on any failure.
    :raises KubeConfigError: if the configured CA is invalid.
    :raises ValueError: for an empty name/namespace or out-of-range numbers.
    """
    pod = f"{namespace}/{name}"
    if not namespace or not name:
        raise ValueError(f"pod {pod!r}: namespace and name must not be empty")
    if timeout <= 0 or attempts < 1 or backoff < 0:
        raise ValueError("need timeout > 0, attempts >= 1 and backoff >= 0")
    url = (
        f"{config.server}/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
    )
    headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"

    last: KubeError | None = None
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(new_client(config, httpx.Timeout(timeout)))
        for attempt in range(1, attempts + 1):
            try:
                with anyio.fail_after(timeout):
                    response = await client.get(
                        url, headers=headers, timeout=httpx.Timeout(timeout)
                    )
            except (TimeoutError, httpx.TimeoutException):
                last = KubeError(
                    f"getting pod {pod}: no answer from {config.server} within {timeout:g} s",
                    pod=pod,
                    retryable=True,
                )
            except httpx.TransportError as exc:
                last = _transport_error(exc, config, pod)
            else:
                if response.status_code == 200:
                    return _pod_json(response, config, pod, attempt)
                last = _status_error(response, config, namespace, pod)
            last.attempts = attempt
            if not last.retryable:
                raise last
            if attempt < attempts:
                await anyio.sleep(backoff)
    if last is None:  # unreachable: attempts >= 1
        raise RuntimeError("no attempt was made")
    raise KubeError(
        f"{last} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
        pod=pod,
        status_code=last.status_code,
        retryable=True,
        attempts=attempts,
    )


def _pod_json(
    response: httpx.Response, config: KubeConfig, pod: str, attempt: int
) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("kind", "Pod") != "Pod":
        raise KubeError(
            f"getting pod {pod}: {config.server} answered 200 without a Pod JSON object",
            pod=pod,
            status_code=200,
            attempts=attempt,
        )
    return body
