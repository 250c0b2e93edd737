"""A watch-fed cache of the pods on this node, for istio-redirect served by a ``cnisdk agent``.

In exec mode every redirected ADD GETs its pod from the API server. In the agent the plugin
lives on, so it LISTs the pods bound to its node once (``fieldSelector=spec.nodeName=<node>``)
and WATCHes them from the list's ``resourceVersion``: by the time the kubelet asks the runtime
to set up a pod's network, the pod is bound to the node and already in the cache, and the ADD
needs no API round trip.

Correctness rules:

- a lookup is answered from the cache only while it is *synced* (the LIST succeeded and the
  watch is connected); otherwise, and for any pod not in it, the caller GETs the pod;
- when ``CNI_ARGS`` carries ``K8S_POD_UID`` and the cached pod has another uid (a pod deleted
  and recreated under the same name, the watch lagging), it is a miss;
- a watch ``ERROR`` (410 Gone: the resourceVersion is too old) or a broken stream relists;
  failures back off exponentially (0.5 s doubling to 30 s);
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
import ssl
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.abc
import httpx

from cnisdk_istio_redirect._config import IstioRedirectConfig
from cnisdk_istio_redirect._kube import (
    KubeConfig,
    KubeConfigError,
    load_incluster_config,
    load_kubeconfig,
)

__all__ = ["PodCache", "PodCaches", "node_name"]

_USER_AGENT = "cnisdk-istio-redirect"
_WATCH_SECONDS = 300
"""``timeoutSeconds`` of one watch; the server ends it then and the cache re-watches."""
_MAX_CLIENTS = 4


def node_name(config: IstioRedirectConfig, environ: Any = None) -> str | None:
    """The node whose pods are cached: ``kubernetes.node_name``, else ``$NODE_NAME``."""
    if config.kubernetes is not None and config.kubernetes.node_name:
        return config.kubernetes.node_name
    return (os.environ if environ is None else environ).get("NODE_NAME") or None


class PodCache:
    """The pods on ``node``, kept current by LIST + WATCH against ``kube``.

    :param max_pods: bound on the number of pods kept (a node runs at most a few hundred).
    :param timeout: seconds for connecting and for the LIST.
    :param backoff: ``(first, maximum)`` seconds between failed attempts.
    :param log: called with one line per state change (synced, lost, relist).
    :param reload: loads the credentials again before each (re)list, so a rotated token
        is picked up.
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
        """How many LISTs were made (relists included)."""
        self._pods: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._log = log or (lambda line: None)

    def __len__(self) -> int:
        return len(self._pods)

    def get(self, namespace: str, name: str, uid: str = "") -> dict[str, Any] | None:
        """The cached pod, or ``None`` (not synced, not cached, or another ``uid``)."""
        if not self.synced:
            return None
        pod = self._pods.get((namespace, name))
        if pod is None:
            return None
        if uid and pod.get("metadata", {}).get("uid") not in (None, uid):
            return None
        return pod

    # -- the cache's state ------------------------------------------------------------------

    def _store(self, pod: Any) -> None:
        if not isinstance(pod, dict):
            return
        meta = pod.get("metadata")
        if not isinstance(meta, dict):
            return
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        # managedFields is most of a pod's size and nothing the decision reads.
        meta.pop("managedFields", None)
        pod.setdefault("kind", "Pod")
        self._pods[key] = pod
        self._pods.move_to_end(key)
        while len(self._pods) > self.max_pods:
            self._pods.popitem(last=False)

    def _drop(self, pod: Any) -> None:
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        if isinstance(meta, dict):
            self._pods.pop((str(meta.get("namespace", "")), str(meta.get("name", ""))), None)

    # -- LIST and WATCH ---------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = (
            self.kube.ssl_context() if self.kube.server.startswith("https:") else False
        )
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        if self.kube.token:
            headers["Authorization"] = f"Bearer {self.kube.token}"
        # No read timeout on the client: a watch is quiet for long stretches; each watch is
        # bounded by timeoutSeconds on the server and by a deadline here.
        return httpx.AsyncClient(
            verify=verify,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, read=None),
            trust_env=False,
        )

    def _url(self, **params: str) -> str:
        query = {"fieldSelector": f"spec.nodeName={self.node}", **params}
        return f"{self.kube.server}/api/v1/pods?{urlencode(query)}"

    async def _list(self, client: httpx.AsyncClient) -> None:
        pods: list[Any] = []
        token = ""
        with anyio.fail_after(self.timeout * 3):
            while True:
                params = {"limit": "500"} | ({"continue": token} if token else {})
                response = await client.get(self._url(**params))
                response.raise_for_status()
                body = response.json()
                pods.extend(body.get("items") or [])
                meta = body.get("metadata") or {}
                token = meta.get("continue") or ""
                if not token:
                    break
        self.lists += 1
        self._pods.clear()
        for pod in pods:
            self._store(pod)
        self.resource_version = str(meta.get("resourceVersion", ""))

    async def _watch(self, client: httpx.AsyncClient) -> bool:
        """Follow one watch; ``True`` to re-watch from the last version, ``False`` to relist."""
        url = self._url(
            watch="1",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(_WATCH_SECONDS),
        )
        with anyio.fail_after(_WATCH_SECONDS + 30):
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                self.synced = True
                self._log(f"pod cache for node {self.node}: synced, {len(self._pods)} pods")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        self._log(f"pod cache for node {self.node}: watch error {obj}; relist")
                        return False
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if kind in ("ADDED", "MODIFIED"):
                        self._store(obj)
                    elif kind == "DELETED":
                        self._drop(obj)
                    if version:
                        self.resource_version = str(version)
        return True

    async def run(self) -> None:
        """Keep the cache current until cancelled (never returns otherwise)."""
        delay = self.backoff[0]
        while True:
            try:
                if self._reload is not None and self.lists:
                    self.kube = self._reload()
                async with self._client() as client:
                    await self._list(client)
                    while await self._watch(client):
                        delay = self.backoff[0]  # a watch that ended cleanly: healthy
            except (httpx.HTTPError, ValueError, KubeConfigError, TimeoutError, OSError) as exc:
                self._log(f"pod cache for node {self.node}: {type(exc).__name__}: {exc}")
            # A watch ERROR also lands here (relist), without delay the first time.
            self.synced = False
            await anyio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])


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
        from cnisdk_istio_redirect._kube import new_client

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
