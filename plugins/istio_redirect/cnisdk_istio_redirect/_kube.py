"""A small async Kubernetes client: GET one pod, bounded, failing with clear, clean errors.

Import this module only when a lookup is needed; it pulls in ``httpx`` and ``ssl``.
The credentials come from :mod:`cnisdk_istio_redirect._kubeconfig` (re-exported here).
:func:`get_pod` fetches ``/api/v1/namespaces/{ns}/pods/{name}`` with a per-attempt timeout
and a bounded number of attempts, and turns every failure into a :class:`KubeError` that
names the pod.

Nothing sent back by a server reaches a message unfiltered: a ``Status`` message or an HTTP
library's error text passes through :func:`~cnisdk_istio_redirect._redact.scrub` with the
token in use, and a 401's body is not shown at all.  Answers are read with a size cap and
within the per-attempt timeout, without content coding; redirects are not followed; the pod
object returned must be the pod asked for.
"""

from __future__ import annotations

import contextlib
import http
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from cnisdk_istio_redirect._kubeconfig import (
    DEFAULT_SERVICE_ACCOUNT_DIR,
    KubeConfig,
    KubeConfigError,
    load_incluster_config,
    load_kubeconfig,
)
from cnisdk_istio_redirect._pod import identity_problem
from cnisdk_istio_redirect._redact import scrub

__all__ = [
    "DEFAULT_SERVICE_ACCOUNT_DIR",
    "MAX_POD_BYTES",
    "USER_AGENT",
    "BodyError",
    "KubeConfig",
    "KubeConfigError",
    "KubeError",
    "PodIdentityError",
    "content_coding",
    "get_pod",
    "load_incluster_config",
    "load_kubeconfig",
    "new_client",
    "read_capped",
    "request_headers",
    "retry_waits",
]

USER_AGENT = "cnisdk-istio-redirect"
MAX_POD_BYTES = 4 << 20
"""Cap on one Pod object as read from the API (etcd stores at most 1.5 MiB per object)."""
_MAX_ERROR_BODY = 64 << 10
_MAX_WAIT = 10.0
"""Longest wait between two lookup attempts (unless the first wait is already longer)."""


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


class PodIdentityError(KubeError):
    """The API answered with an object that is not the pod asked for (name, namespace, uid).

    Reported as retryable: a pod deleted and recreated under the same name is the usual
    cause, and the runtime's retry either finds the right pod or gives up on the old one.
    Never retried within one lookup: the answer is already the API server's current view.
    """


# --------------------------------------------------------------------------- lookup


def retry_waits(first: float, attempts: int) -> list[float]:
    """The waits between ``attempts`` lookup attempts: ``first``, doubling, capped.

    Each wait is at most 10 s, or ``first`` when that is longer: ``retry_waits(0.5, 6)`` is
    ``[0.5, 1.0, 2.0, 4.0, 8.0]``.
    """
    cap = max(first, _MAX_WAIT)
    return [min(first * 2**n, cap) for n in range(max(attempts - 1, 0))]


class BodyError(Exception):
    """An answer's body cannot be used as read: too large, or content-coded."""


def content_coding(response: httpx.Response) -> str:
    """The answer's content coding, or ``""`` for none (``identity``), which is what requests
    ask for (:func:`request_headers`)."""
    coding = response.headers.get("content-encoding", "").strip().lower()
    return "" if coding == "identity" else coding


async def read_capped(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The body of a streamed ``response``, at most ``limit`` bytes.

    Requests ask for no content coding (:func:`request_headers`), so bytes are counted as
    they arrive and a small compressed body can never expand into a large one.

    :param truncate: cut a longer body at ``limit`` instead of failing, and read a
        content-coded one as empty (for error answers, whose body is only shown).
    :raises BodyError: the body is (announced as) larger than ``limit``, or content-coded.
    """
    coding = content_coding(response)
    if coding:
        if truncate:
            return b""
        raise BodyError(f"the body is {scrub(coding, limit=40)}-encoded, which was not asked for")
    too_large = BodyError(f"the body is larger than {limit} bytes")
    announced = response.headers.get("content-length", "")
    if not truncate and announced.isdigit() and int(announced) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if truncate:
                break
            raise too_large
    return b"".join(chunks)[:limit]


def _api_detail(body: bytes, secrets: tuple[str, ...]) -> str:
    """What to show of an error answer's body: the ``Status`` message, scrubbed, or nothing."""
    if not body.strip():
        return ""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", "replace")
    else:
        message = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(message, str):
            return ""
        text = message
    text = scrub(text, secrets)
    return f": {text}" if text else ""


def _status_error(code: int, body: bytes, config: KubeConfig, ns: str, pod: str) -> KubeError:
    at = config.where
    if code == 401:
        # The body is never shown: 401 is where a misbehaving server or proxy echoes the
        # credentials, and its message never says more than "Unauthorized".
        return KubeError(
            f"getting pod {pod}: 401 Unauthorized from {at}: the token from "
            f"{scrub(config.source) or 'the config'} is invalid or expired",
            pod=pod,
            status_code=code,
        )
    detail = _api_detail(body, config.secrets)
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
    if 300 <= code < 400:
        # Not followed: the credentials would go wherever the answer points.
        return KubeError(
            f"getting pod {pod}: {at} answered with a redirect ({code}), which is not followed",
            pod=pod,
            status_code=code,
        )
    retryable = code >= 500 or code == 429
    try:
        phrase = f" {http.HTTPStatus(code).phrase}"
    except ValueError:
        phrase = ""
    return KubeError(
        f"getting pod {pod}: HTTP {code}{phrase} from {at}{detail}",
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
    at = config.where
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = scrub(str(tls.verify_message or tls), config.secrets)
        return KubeError(
            f"getting pod {pod}: TLS verification of {at} failed ({reason}); "
            f"check the certificate authority in {scrub(config.source) or 'the config'}",
            pod=pod,
        )
    if tls is not None:
        final = "WRONG_VERSION_NUMBER" in str(tls)  # e.g. https:// to a plain-HTTP port
        return KubeError(
            f"getting pod {pod}: TLS handshake with {at} failed: {scrub(str(tls), config.secrets)}",
            pod=pod,
            retryable=not final,
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        what = f"{at} broke the HTTP protocol"
    else:
        what = f"cannot reach {at}"
    # The library's text can quote what the server sent (a header line, a URL): scrubbed.
    return KubeError(
        f"getting pod {pod}: {what}: {type(exc).__name__}: {scrub(str(exc), config.secrets)}",
        pod=pod,
        retryable=True,
    )


def new_client(config: KubeConfig, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An HTTP client for ``config``'s server (proxy variables ignored, redirects not followed).

    TLS settings are only built for ``https`` servers: for ``http`` there is no handshake,
    and httpx's default (``verify=True``) would load the system CA store, ~15 ms, for nothing.

    :raises KubeConfigError: if the configured CA is invalid.
    """
    verify: ssl.SSLContext | bool = (
        config.ssl_context() if config.server.startswith("https:") else False
    )
    return httpx.AsyncClient(
        verify=verify, timeout=timeout, trust_env=False, follow_redirects=False
    )


def request_headers(config: KubeConfig) -> dict[str, str]:
    """The headers of every request to the API: JSON, no content coding, the bearer token."""
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    return headers


async def get_pod(
    config: KubeConfig,
    namespace: str,
    name: str,
    *,
    timeout: float,  # noqa: ASYNC109 - a per-attempt bound, not one for the whole call
    attempts: int,
    backoff: float,
    uid: str = "",
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> dict[str, Any]:
    """GET ``/api/v1/namespaces/{namespace}/pods/{name}`` and return the Pod JSON.

    Each attempt is bounded by ``timeout`` seconds in total (connect, TLS, request and the
    whole body, however slowly it drips).  Timeouts, connection and protocol errors, HTTP 5xx
    and 429 are retried, up to ``attempts`` attempts, waiting :func:`retry_waits` between
    them (``backoff``, doubling, at most 10 s); 401, 403, 404, redirects (never followed),
    other 4xx, TLS verification failures and answers that are not one Pod object fail at
    once.  A body is read up to :data:`MAX_POD_BYTES`, without content coding.  Proxy
    environment variables are ignored.

    :param config: where and how to connect.
    :param namespace: the pod's namespace.
    :param name: the pod's name.
    :param timeout: seconds per attempt (> 0).
    :param attempts: maximum number of attempts (>= 1).
    :param backoff: seconds before the second attempt (>= 0); it doubles for each further one.
    :param uid: the runtime's ``K8S_POD_UID``, when it passed one: the answer must carry it.
    :param client: a client from :func:`new_client` for ``config`` to reuse (an agent keeps
        one, so its connection stays open); by default a new one is made and closed.
    :param sleep: waits between attempts (tests pass a recorder).
    :returns: the decoded Pod object, which is the pod asked for.
    :raises PodIdentityError: if the answer is another pod (namespace, name or uid differ).
    :raises KubeError: naming the pod as ``namespace/name``, on any other failure.
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
    headers = request_headers(config)
    waits = retry_waits(backoff, attempts)

    last: KubeError | None = None
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(new_client(config, httpx.Timeout(timeout)))
        for attempt in range(1, attempts + 1):
            try:
                with anyio.fail_after(timeout):
                    answer = await _attempt(client, url, headers, config, namespace, pod)
            except (TimeoutError, httpx.TimeoutException):
                last = KubeError(
                    f"getting pod {pod}: no complete answer from {config.where} within "
                    f"{timeout:g} s",
                    pod=pod,
                    retryable=True,
                )
            except httpx.TransportError as exc:
                last = _transport_error(exc, config, pod)
            except Exception as exc:
                # Whatever else goes wrong fails this lookup cleanly: never a traceback, and
                # the text shown is scrubbed like any other.
                raise KubeError(
                    f"getting pod {pod}: request to {config.where} failed: "
                    f"{type(exc).__name__}: {scrub(str(exc), config.secrets)}",
                    pod=pod,
                    attempts=attempt,
                ) from None
            else:
                if isinstance(answer, dict):
                    problem = identity_problem(answer, namespace, name, uid)
                    if problem is not None:
                        raise PodIdentityError(
                            f"getting pod {pod}: {config.where} answered with another pod: "
                            f"{problem}; nothing is decided from it",
                            pod=pod,
                            status_code=200,
                            retryable=True,
                            attempts=attempt,
                        )
                    return answer
                last = answer
            last.attempts = attempt
            if not last.retryable:
                raise last
            if attempt < attempts:
                await sleep(waits[attempt - 1])
    if last is None:  # unreachable: attempts >= 1
        raise RuntimeError("no attempt was made")
    raise KubeError(
        f"{last} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
        pod=pod,
        status_code=last.status_code,
        retryable=True,
        attempts=attempts,
    )


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    config: KubeConfig,
    namespace: str,
    pod: str,
) -> dict[str, Any] | KubeError:
    """One GET: the Pod object, or the error the answer amounts to."""
    async with client.stream("GET", url, headers=headers) as response:
        code = response.status_code
        if code != 200:
            body = await read_capped(response, _MAX_ERROR_BODY, truncate=True)
            return _status_error(code, body, config, namespace, pod)
        try:
            body = await read_capped(response, MAX_POD_BYTES)
        except BodyError as exc:
            return _not_a_pod(config, pod, str(exc))
    return _decode_pod(body, config, pod)


def _decode_pod(body: bytes, config: KubeConfig, pod: str) -> dict[str, Any] | KubeError:
    if not body.strip():
        return _not_a_pod(config, pod, "the body is empty")
    try:
        doc = json.loads(body)
    except RecursionError:
        return _not_a_pod(config, pod, "the JSON is nested too deeply")
    except ValueError:
        return _not_a_pod(config, pod, "the body is not JSON")
    if not isinstance(doc, dict):
        return _not_a_pod(config, pod, "the JSON is not an object")
    kind = doc.get("kind", "Pod")
    if kind != "Pod":
        shown = scrub(kind, limit=40) if isinstance(kind, str) else "not a string"
        return _not_a_pod(config, pod, f"its kind is {shown!r}")
    return doc


def _not_a_pod(config: KubeConfig, pod: str, what: str) -> KubeError:
    return KubeError(
        f"getting pod {pod}: {config.where} answered 200 without a Pod object: {what}",
        pod=pod,
        status_code=200,
    )
