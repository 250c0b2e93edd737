"""A watch-fed cache of the pods on this node, for istio-redirect served by a ``cnisdk agent``.

In exec mode every redirected ADD GETs its pod from the API server. In the agent the plugin
lives on, so it LISTs the pods bound to its node once (``fieldSelector=spec.nodeName=<node>``)
and WATCHes them from the list's ``resourceVersion``: by the time the kubelet asks the runtime
to set up a pod's network, the pod is bound to the node and already in the cache, and the ADD
needs no API round trip.

Correctness rules:

- a lookup is answered from the cache only while it is *synced* (the LIST succeeded and a
  watch is connected); otherwise, and for any pod not in it, the caller GETs the pod;
- a cached object is used only if it is the pod asked for: its ``metadata`` namespace and
  name are the lookup's and, when ``CNI_ARGS`` carries ``K8S_POD_UID``, its uid is that one
  (a pod deleted and recreated under the same name while the watch lags is a miss);
- the API's answers are not trusted to be well formed: a LIST page is read up to 32 MiB, a
  watch event up to 4 MiB plus a margin; a body or line that is not JSON, an event of an
  unknown type, an object without namespace and name, or a watch ``ERROR`` ends the stream
  and relists (410 Gone: the ``resourceVersion`` is too old);
- reconnecting (re-watching after a stream ended, relisting after a 410 or any failure)
  waits a backoff of 0.5 s that doubles after each wait up to 30 s, and returns to 0.5 s
  once a watch delivers events; a watch that delivered events and then ended or said 410 is
  followed at once, every other reconnection waits (no busy loop, whatever the server does);
- nothing the API sends ends the cache's task: every failure is logged (scrubbed) and
  retried, and the agent keeps serving, with GETs, meanwhile;
- at most ``max_pods`` pods are kept (oldest update evicted first); evicted pods are misses.

The node name comes from the config (``kubernetes.node_name``) or the agent's ``NODE_NAME``
environment variable (the DaemonSet sets it from ``spec.nodeName``); without one there is no
cache. A cache starts on the first lookup that needs it (the credentials are in the request's
config), so the first ADD after an agent start does a GET.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.abc
import httpx

from cnisdk_istio_redirect._config import IstioRedirectConfig
from cnisdk_istio_redirect._kube import (
    MAX_POD_BYTES,
    BodyError,
    KubeConfig,
    KubeConfigError,
    content_coding,
    load_incluster_config,
    load_kubeconfig,
    new_client,
    read_capped,
    request_headers,
)
from cnisdk_istio_redirect._pod import identity_problem
from cnisdk_istio_redirect._redact import scrub

__all__ = ["PodCache", "PodCaches", "StreamError", "node_name"]

_WATCH_SECONDS = 300
"""``timeoutSeconds`` of one watch; the server ends it then and the cache re-watches."""
_MAX_CLIENTS = 4
_LIST_PAGE = 100
_MAX_PAGE_BYTES = 32 << 20
_MAX_EVENT_BYTES = MAX_POD_BYTES + (64 << 10)
_WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})

Pods = OrderedDict[tuple[str, str], dict[str, Any]]


class StreamError(ValueError):
    """A LIST or WATCH answer that cannot be used; the cache relists (after a backoff)."""


def node_name(config: IstioRedirectConfig, environ: Any = None) -> str | None:
    """The node whose pods are cached: ``kubernetes.node_name``, else ``$NODE_NAME``."""
    if config.kubernetes is not None and config.kubernetes.node_name:
        return config.kubernetes.node_name
    return (os.environ if environ is None else environ).get("NODE_NAME") or None


def _pod_key(obj: Any) -> tuple[str, str] | None:
    """``(namespace, name)`` of a pod object, or ``None`` when it has no usable metadata."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    namespace, name = meta.get("namespace"), meta.get("name")
    if isinstance(namespace, str) and namespace and isinstance(name, str) and name:
        return namespace, name
    return None


def _decode(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise StreamError(f"{what} is nested too deeply") from None
    except ValueError:
        raise StreamError(f"{what} is not JSON") from None


async def _lines(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The lines of a streamed body, none longer than ``limit`` (else :class:`StreamError`)."""
    if content_coding(response):
        raise StreamError("the watch stream is content-coded, which was not asked for")
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end - start > limit:
                break
            yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
        if len(buffer) > limit:
            raise StreamError(f"a watch event is larger than {limit} bytes")
    if buffer.strip():
        yield bytes(buffer)


class PodCache:
    """The pods on ``node``, kept current by LIST + WATCH against ``kube``.

    :param max_pods: bound on the number of pods kept (a node runs at most a few hundred).
    :param timeout: seconds for connecting and for the LIST.
    :param backoff: ``(first, maximum)`` seconds of the wait before reconnecting.
    :param log: called with one line per state change (synced, lost, relist).
    :param reload: loads the credentials again before each (re)list, so a rotated token
        is picked up.
    :param sleep: how to wait before reconnecting (tests pass a recorder).
    """

    def __init__(
        self,
        kube: KubeConfig,
        node: str,
        *,
        max_pods: int = 2000,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        log: Callable[[str], None] | None = None,
        reload: Callable[[], KubeConfig] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.kube = kube
        self._reload = reload
        self.node = node
        self.max_pods = max_pods
        self.timeout = timeout
        self.backoff = backoff
        self.synced = False
        self.resource_version = ""
        self.lists = 0
        """How many LISTs succeeded (relists included)."""
        self._pods: Pods = OrderedDict()
        self._log = log or (lambda line: None)
        self._sleep = sleep
        self._delivered = 0
        """Events applied by the current watch."""

    def __len__(self) -> int:
        return len(self._pods)

    def get(self, namespace: str, name: str, uid: str = "") -> dict[str, Any] | None:
        """The cached pod ``namespace/name`` (with ``uid`` when given), or ``None``.

        ``None`` when not synced, not cached, or when the cached object is not that pod
        (:func:`~cnisdk_istio_redirect._pod.identity_problem`): the caller GETs it then.
        """
        if not self.synced:
            return None
        pod = self._pods.get((namespace, name))
        if pod is None or identity_problem(pod, namespace, name, uid) is not None:
            return None
        return pod

    # -- the cache's state ------------------------------------------------------------------

    def _store(self, pods: Pods, obj: Any) -> None:
        key = _pod_key(obj)
        if key is None:
            raise StreamError("a pod object has no metadata namespace and name")
        # managedFields is most of a pod's size and nothing the decision reads.
        obj["metadata"].pop("managedFields", None)
        obj.setdefault("kind", "Pod")
        pods[key] = obj
        pods.move_to_end(key)
        while len(pods) > self.max_pods:
            pods.popitem(last=False)

    def _drop(self, obj: Any) -> None:
        key = _pod_key(obj)
        if key is None:
            raise StreamError("a DELETED event's object has no metadata namespace and name")
        stored = self._pods.get(key)
        uid = obj["metadata"].get("uid")
        # A deletion of an older pod under the same name leaves the newer one in place.
        if stored is not None and (not uid or stored["metadata"].get("uid") in (None, uid)):
            del self._pods[key]

    # -- LIST and WATCH ---------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        # No read timeout: a watch is quiet for long stretches; each watch is bounded by
        # timeoutSeconds on the server and by a deadline here.
        return new_client(self.kube, httpx.Timeout(self.timeout, read=None))

    def _url(self, **params: str) -> str:
        query = {"fieldSelector": f"spec.nodeName={self.node}", **params}
        return f"{self.kube.server}/api/v1/pods?{urlencode(query)}"

    async def _list_page(self, client: httpx.AsyncClient, url: str) -> tuple[list[Any], str, str]:
        """One page of the LIST: ``(items, resourceVersion, continue)``."""
        async with client.stream("GET", url, headers=request_headers(self.kube)) as response:
            if response.status_code != 200:
                raise StreamError(f"LIST answered HTTP {response.status_code}")
            try:
                body = _decode(await read_capped(response, _MAX_PAGE_BYTES), "the pod list")
            except BodyError as exc:
                raise StreamError(f"the pod list: {exc}") from None
        if not isinstance(body, dict):
            raise StreamError("the pod list is not a JSON object")
        items, meta = body.get("items"), body.get("metadata")
        if not isinstance(items, list | None) or not isinstance(meta, dict | None):
            raise StreamError("the pod list's items or metadata have the wrong JSON type")
        version = (meta or {}).get("resourceVersion")
        token = (meta or {}).get("continue") or ""
        if not isinstance(version, str) or not version or not isinstance(token, str):
            raise StreamError("the pod list has no resourceVersion, or a bad continue token")
        return items or [], version, token

    async def _list(self, client: httpx.AsyncClient) -> None:
        pods: Pods = OrderedDict()
        token, version = "", ""
        # More pages than max_pods can fill are not read: pods left out are misses.
        pages = -(-self.max_pods // _LIST_PAGE) + 1
        with anyio.fail_after(self.timeout * 3):
            for _ in range(pages):
                params = {"limit": str(_LIST_PAGE)} | ({"continue": token} if token else {})
                items, page_version, token = await self._list_page(client, self._url(**params))
                version = version or page_version
                for item in items:
                    self._store(pods, item)
                if not token:
                    break
        self.lists += 1
        self._pods = pods
        self.resource_version = version

    def _apply(self, line: bytes) -> bool:
        """Apply one watch event; ``True`` when it says the resourceVersion expired (410)."""
        event = _decode(line, "a watch event")
        if not isinstance(event, dict):
            raise StreamError("a watch event is not a JSON object")
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(kind, str) or kind not in _WATCH_TYPES:
            raise StreamError("a watch event has no known type")
        if not isinstance(obj, dict):
            raise StreamError(f"a {kind} watch event has no object")
        if kind == "ERROR":
            code, reason = obj.get("code"), obj.get("reason")
            if code == 410 or reason in ("Expired", "Gone"):
                return True
            shown = scrub(reason, self.kube.secrets, limit=60) if isinstance(reason, str) else ""
            raise StreamError(f"the watch reported an error (code {code!r}, reason {shown!r})")
        if kind in ("ADDED", "MODIFIED"):
            self._store(self._pods, obj)
        elif kind == "DELETED":
            self._drop(obj)
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if isinstance(version, str) and version:
            self.resource_version = version
        return False

    async def _watch(self, client: httpx.AsyncClient) -> bool:
        """Follow one watch, counting events in ``_delivered``; ``True`` if it ended in 410."""
        url = self._url(
            watch="1",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(_WATCH_SECONDS),
        )
        with anyio.fail_after(_WATCH_SECONDS + 30):
            async with client.stream("GET", url, headers=request_headers(self.kube)) as response:
                if response.status_code != 200:
                    raise StreamError(f"WATCH answered HTTP {response.status_code}")
                self.synced = True
                self._log(f"pod cache for node {self.node}: synced, {len(self._pods)} pods")
                try:
                    async for line in _lines(response, _MAX_EVENT_BYTES):
                        if not line.strip():
                            continue
                        if self._apply(line):
                            return True
                        self._delivered += 1
                finally:
                    self.synced = False
        return False

    async def _pause(self, delay: float) -> float:
        await self._sleep(delay)
        return min(delay * 2, self.backoff[1])

    async def run(self) -> None:
        """Keep the cache current until cancelled (never returns otherwise, never raises)."""
        first = delay = self.backoff[0]
        while True:
            wait = True
            self._delivered = 0
            try:
                if self._reload is not None and self.lists:
                    self.kube = self._reload()
                async with self._client() as client:
                    await self._list(client)
                    while True:
                        self._delivered = 0
                        expired = await self._watch(client)
                        if expired:
                            self._log(
                                f"pod cache for node {self.node}: resourceVersion expired "
                                "(410); relisting"
                            )
                            wait = not self._delivered
                            break
                        if self._delivered:
                            delay = first
                        else:
                            delay = await self._pause(delay)
            except Exception as exc:  # whatever the API sends, the agent keeps serving
                detail = scrub(str(exc), self.kube.secrets)
                self._log(f"pod cache for node {self.node}: {type(exc).__name__}: {detail}")
            self.synced = False
            if self._delivered:  # the watch that just ended was healthy for a while
                delay = first
            if wait:
                delay = await self._pause(delay)


def _log_json(line: str) -> None:
    # The agent's log format: one JSON object per line on stderr.
    record = {"ts": round(time.time(), 6), "event": "pod-cache", "msg": line}
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


class PodCaches:
    """The pod caches of one agent, one per (kubeconfig, node), each started on first use."""

    def __init__(self, task_group: anyio.abc.TaskGroup, log: Callable[[str], None]) -> None:
        self._tg = task_group
        self._log = log
        self.caches: dict[tuple[str | None, str], PodCache] = {}
        self._clients: OrderedDict[KubeConfig, httpx.AsyncClient] = OrderedDict()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, log: Callable[[str], None] | None = None) -> AsyncIterator[PodCaches]:
        """Caches whose background tasks (and shared clients) end when the context exits."""
        async with anyio.create_task_group() as tg:
            caches = cls(tg, log or _log_json)
            try:
                yield caches
            finally:
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    for client in caches._clients.values():
                        await client.aclose()
                    caches._clients.clear()

    def client(self, kube: KubeConfig, timeout: float) -> httpx.AsyncClient:
        """A client for GETs (cache misses) against ``kube``, kept open across requests.

        A cache miss then costs one request on an open (TLS) connection instead of a new
        client, TLS context and handshake. Clients belong to the agent's event loop (this
        object lives in the plugin's ``serve``) and are closed when it ends; at most
        ``_MAX_CLIENTS`` credential sets are kept (a rotated token is a new ``KubeConfig``).
        """
        client = self._clients.get(kube)
        if client is not None:
            self._clients.move_to_end(kube)
            return client
        client = new_client(kube, httpx.Timeout(timeout))
        self._clients[kube] = client
        while len(self._clients) > _MAX_CLIENTS:
            _, old = self._clients.popitem(last=False)
            self._tg.start_soon(_close_later, old)
        return client

    def lookup(
        self, config: IstioRedirectConfig, namespace: str, name: str, uid: str = ""
    ) -> dict[str, Any] | None:
        """The pod from the cache for ``config``'s node, or ``None`` (the caller GETs it)."""
        node = node_name(config)
        if node is None:
            return None
        try:
            path = config.kubeconfig_path()
        except KubeConfigError:
            return None
        cache = self.caches.get((path, node))
        if cache is None:

            def load() -> KubeConfig:
                return load_kubeconfig(path) if path else load_incluster_config()

            try:
                kube = load()
            except KubeConfigError:
                return None  # the GET that follows reports the problem
            cache = PodCache(
                kube, node, timeout=config.kube_api_timeout, log=self._log, reload=load
            )
            self.caches[(path, node)] = cache
            self._tg.start_soon(cache.run)
            return None
        return cache.get(namespace, name, uid)


async def _close_later(client: httpx.AsyncClient, delay: float = 60.0) -> None:
    # Later, not now: a GET still using the evicted client must be able to finish.
    await anyio.sleep(delay)
    await client.aclose()
