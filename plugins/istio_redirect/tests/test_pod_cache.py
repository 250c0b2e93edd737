"""The agent's watch-fed pod cache against a LIST+WATCH stand-in (``watch_stub``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cnisdk_istio_redirect._config import IstioRedirectConfig
from cnisdk_istio_redirect._kube import KubeConfig
from cnisdk_istio_redirect._plugin import IstioRedirect, _lookup_pod
from cnisdk_istio_redirect._pod_cache import PodCache
from kube_stub import injected_pod
from watch_stub import WatchStub

pytestmark = pytest.mark.anyio


@pytest.fixture
def stub() -> Iterator[WatchStub]:
    with WatchStub() as s:
        yield s


def pod(name: str, node: str = "node-a", uid: str = "", **annotations: str) -> dict[str, Any]:
    obj = injected_pod(annotations=annotations or None)
    obj["metadata"].update(name=name, namespace="default", uid=uid or f"uid-{name}")
    obj["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    obj["spec"]["nodeName"] = node
    return obj


async def until(check: Callable[[], object], limit: float = 5) -> None:
    with anyio.fail_after(limit):
        while not check():  # noqa: ASYNC110 - the state changes in another task/thread
            await anyio.sleep(0.01)


async def test_list_then_watch_keeps_the_node_pods(stub: WatchStub) -> None:
    stub.put(pod("a"))
    stub.put(pod("elsewhere", node="node-b"))
    cache = PodCache(KubeConfig(server=stub.url), "node-a", backoff=(0.01, 0.05))
    assert cache.get("default", "a") is None  # not synced yet: callers GET
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: cache.synced)
        cached = cache.get("default", "a")
        assert cached is not None and "managedFields" not in cached["metadata"]
        assert cache.get("default", "elsewhere") is None
        stub.put(pod("b"))
        await until(lambda: cache.get("default", "b"))
        stub.put(pod("b", **{"traffic.sidecar.istio.io/excludeOutboundPorts": "9999"}))
        await until(
            lambda: "9999" in json.dumps(cache.get("default", "b") or {}),
        )
        stub.delete("default", "a")
        await until(lambda: cache.get("default", "a") is None)
        # A pod recreated under the same name: a lagging entry with another uid is a miss.
        assert cache.get("default", "b", uid="uid-b") is not None
        assert cache.get("default", "b", uid="another") is None
        assert stub.lists() == 1 and stub.gets() == 0
        tg.cancel_scope.cancel()


async def test_expired_version_relists_and_dropped_watch_resumes(stub: WatchStub) -> None:
    stub.put(pod("a"))
    cache = PodCache(KubeConfig(server=stub.url), "node-a", backoff=(0.01, 0.05))
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: cache.synced)
        stub.drop_watches()  # the stream ends: re-watch from the last version, no relist
        stub.put(pod("b"))
        await until(lambda: cache.get("default", "b"))
        assert stub.lists() == 1
        stub.expire()  # 410 Gone: relist
        stub.put(pod("c"))
        await until(lambda: cache.lists == 2 and cache.get("default", "c"))
        assert cache.get("default", "a") and cache.get("default", "b")
        tg.cancel_scope.cancel()


async def test_size_is_bounded(stub: WatchStub) -> None:
    for name in ("a", "b", "c"):
        stub.put(pod(name))
    cache = PodCache(KubeConfig(server=stub.url), "node-a", max_pods=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: cache.synced)
        assert len(cache) == 2 and cache.get("default", "a") is None
        tg.cancel_scope.cancel()


async def test_unreachable_api_backs_off_and_stays_unsynced() -> None:
    cache = PodCache(KubeConfig(server="http://127.0.0.1:9"), "node-a", backoff=(0.01, 0.02))
    with anyio.move_on_after(0.3):
        await cache.run()
    assert not cache.synced and cache.get("default", "a") is None


async def test_plugin_in_agent_answers_from_the_cache(stub: WatchStub, tmp_path: Path) -> None:
    stub.put(pod("web"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k"}}],
                "clusters": [{"name": "k", "cluster": {"server": stub.url}}],
            }
        )
    )
    config = IstioRedirectConfig.model_validate(
        {
            "cniVersion": "1.0.0",
            "name": "k8s",
            "type": "istio-redirect",
            "kubeconfig": str(kubeconfig),
            "kubernetes": {"node_name": "node-a"},
        }
    )
    plugin = IstioRedirect()
    # Exec mode (no serve()): every lookup GETs.
    assert (await _lookup_pod(config, "default", "web"))["metadata"]["name"] == "web"
    assert stub.gets() == 1
    async with plugin.serve():
        caches = plugin._pod_caches
        assert caches is not None
        # The first lookup starts the cache and GETs; once synced, no more round trips.
        await _lookup_pod(config, "default", "web", caches)
        assert stub.gets() == 2
        (cache,) = caches.caches.values()
        await until(lambda: cache.synced)
        for _ in range(5):
            found = await _lookup_pod(config, "default", "web", caches, "uid-web")
            assert found["metadata"]["uid"] == "uid-web"
        assert stub.gets() == 2
        # A pod the cache has not seen yet is fetched.
        stub.pods[("default", "new")] = pod("new")
        await _lookup_pod(config, "default", "new", caches)
        assert stub.gets() == 3
    assert plugin._pod_caches is None
