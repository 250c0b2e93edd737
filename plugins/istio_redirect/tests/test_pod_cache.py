"""The agent's watch-fed pod cache against a LIST+WATCH stand-in (``watch_stub``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from cnisdk_istio_redirect._config import IstioRedirectConfig
from cnisdk_istio_redirect._kube import KubeConfig
from cnisdk_istio_redirect._plugin import IstioRedirect, _lookup_pod
from cnisdk_istio_redirect._pod_cache import PodCache, PodCaches
from kube_stub import injected_pod
from watch_stub import WatchStub

from cnisdk import CNIError

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


def _config(stub: WatchStub, tmp_path: Path) -> IstioRedirectConfig:
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
    return IstioRedirectConfig.model_validate(
        {
            "cniVersion": "1.0.0",
            "name": "k8s",
            "type": "istio-redirect",
            "kubeconfig": str(kubeconfig),
            "kubernetes": {"node_name": "node-a"},
            "kube_api_attempts": 1,
        }
    )


@contextlib.asynccontextmanager
async def running(cache: PodCache) -> AsyncIterator[PodCache]:
    """``cache`` kept current in the background, synced; stopped on exit."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: cache.synced)
        yield cache
        tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def agent_caches(config: IstioRedirectConfig) -> AsyncIterator[tuple[PodCaches, PodCache]]:
    """An agent's pod caches (``serve()``), the cache started by a first lookup (a GET)."""
    plugin = IstioRedirect()
    async with plugin.serve():
        caches = plugin._pod_caches
        assert caches is not None
        await _lookup_pod(config, "default", "web", caches)
        (cache,) = caches.caches.values()
        yield caches, cache
    assert plugin._pod_caches is None


def quick(stub: WatchStub, token: str | None = None, **options: Any) -> PodCache:
    """A cache of node-a's pods that reconnects within milliseconds."""
    options.setdefault("backoff", (0.01, 0.05))
    return PodCache(KubeConfig(server=stub.url, token=token), "node-a", **options)


async def test_list_then_watch_keeps_the_node_pods(stub: WatchStub) -> None:
    stub.put(pod("a"))
    stub.put(pod("elsewhere", node="node-b"))
    cache = quick(stub)
    assert cache.get("default", "a") is None  # not synced yet: callers GET
    async with running(cache):
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


async def test_expired_version_relists_and_dropped_watch_resumes(stub: WatchStub) -> None:
    stub.put(pod("a"))
    async with running(quick(stub)) as cache:
        stub.drop_watches()  # the stream ends: re-watch from the last version, no relist
        stub.put(pod("b"))
        await until(lambda: cache.get("default", "b"))
        assert stub.lists() == 1
        stub.expire()  # 410 Gone: relist
        stub.put(pod("c"))
        await until(lambda: cache.lists == 2 and cache.get("default", "c"))
        assert cache.get("default", "a") and cache.get("default", "b")


async def test_size_is_bounded(stub: WatchStub) -> None:
    for name in ("a", "b", "c"):
        stub.put(pod(name))
    async with running(quick(stub, max_pods=2)) as cache:
        assert len(cache) == 2 and cache.get("default", "a") is None


async def test_unreachable_api_backs_off_and_stays_unsynced() -> None:
    cache = PodCache(KubeConfig(server="http://127.0.0.1:9"), "node-a", backoff=(0.01, 0.02))
    with anyio.move_on_after(0.3):
        await cache.run()
    assert not cache.synced and cache.get("default", "a") is None


async def test_plugin_in_agent_answers_from_the_cache(stub: WatchStub, tmp_path: Path) -> None:
    stub.put(pod("web"))
    config = _config(stub, tmp_path)
    # Exec mode (no serve()): every lookup GETs.
    assert (await _lookup_pod(config, "default", "web"))["metadata"]["name"] == "web"
    assert stub.gets() == 1
    # The first lookup starts the cache and GETs; once synced, no more round trips.
    async with agent_caches(config) as (caches, cache):
        assert stub.gets() == 2
        await until(lambda: cache.synced)
        for _ in range(5):
            found = await _lookup_pod(config, "default", "web", caches, "uid-web")
            assert found["metadata"]["uid"] == "uid-web"
        assert stub.gets() == 2
        # A pod the cache has not seen yet is fetched.
        stub.pods[("default", "new")] = pod("new")
        await _lookup_pod(config, "default", "new", caches)
        assert stub.gets() == 3


# --------------------------------------------------------------------------- identity


async def test_an_entry_that_is_not_the_pod_asked_for_is_a_miss(stub: WatchStub) -> None:
    stub.put(pod("a"))
    async with running(quick(stub)) as cache:
        assert cache.get("default", "a", uid="uid-a") is not None
        # Filed under a key it does not match (the cache's own invariant, checked anyway).
        cache._pods[("default", "b")] = pod("a")
        assert cache.get("default", "b") is None
        cache._pods[("other", "a")] = pod("a")
        assert cache.get("other", "a") is None
        # A stale uid, no uid while the runtime gives one, no metadata at all.
        assert cache.get("default", "a", uid="uid-recreated") is None
        no_uid = pod("c")
        del no_uid["metadata"]["uid"]
        cache._pods[("default", "c")] = no_uid
        assert cache.get("default", "c", uid="uid-c") is None
        assert cache.get("default", "c") is not None  # no uid from the runtime: name decides
        cache._pods[("default", "d")] = {"kind": "Pod", "spec": {}}
        assert cache.get("default", "d") is None


async def test_plugin_never_decides_from_a_stale_uid(stub: WatchStub, tmp_path: Path) -> None:
    stub.put(pod("web", uid="uid-old"))
    config = _config(stub, tmp_path)
    async with agent_caches(config) as (caches, cache):
        await until(lambda: cache.synced)
        gets = stub.gets()
        # The runtime starts the recreated pod; the cache (and here the API too) still has
        # the old one: a miss, then a GET whose answer is refused, so ADD fails (11).
        with pytest.raises(CNIError) as err:
            await _lookup_pod(config, "default", "web", caches, "uid-new")
        assert int(err.value.code) == 11 and "answered with another pod" in err.value.msg
        assert "uid-old" in err.value.msg and "uid-new" in err.value.msg
        assert stub.gets() == gets + 1
        # Once the API has the new pod, the GET finds it (the cache catches up later).
        stub.pods[("default", "web")] = pod("web", uid="uid-new")
        found = await _lookup_pod(config, "default", "web", caches, "uid-new")
        assert found["metadata"]["uid"] == "uid-new"


# --------------------------------------------------------------------------- backoff


async def test_reconnecting_backs_off_doubling_to_the_cap() -> None:
    slept: list[float] = []
    with anyio.CancelScope() as scope:

        async def record(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 9:
                scope.cancel()
            await anyio.lowlevel.checkpoint()

        cache = PodCache(KubeConfig(server="http://127.0.0.1:9"), "node-a", sleep=record)
        await cache.run()
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert not cache.synced


async def test_events_reset_the_backoff_and_quiet_watches_are_paced(stub: WatchStub) -> None:
    stub.watch_ends_at_once = True  # every watch ends after what is pending: no busy loop
    slept: list[tuple[float, bool]] = []  # (wait, whether pod "a" had arrived by then)
    cache = PodCache(KubeConfig(server=stub.url), "node-a", backoff=(0.5, 4.0))

    async def record(seconds: float) -> None:
        slept.append((seconds, ("default", "a") in cache._pods))
        await anyio.sleep(0.01)

    cache._sleep = record
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: len(slept) >= 5)
        assert [w for w, _ in slept[:5]] == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert cache.lists == 1  # re-watched from the version, not relisted
        stub.put(pod("a"))
        await until(lambda: sum(after for _, after in slept) >= 2)
        assert [w for w, after in slept if after][:2] == [0.5, 1.0]
        tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- hostile streams


BAD_EVENTS = {
    "not-json": b"this is not json\n",
    "array": b"[1, 2]\n",
    "string": b'"ADDED"\n',
    "null": b"null\n",
    "no-type": b'{"object": {}}\n',
    "unknown-type": b'{"type": "EXPLODED", "object": {}}\n',
    "no-object": b'{"type": "ADDED", "object": "pod"}\n',
    "no-metadata": b'{"type": "ADDED", "object": {"kind": "Pod"}}\n',
    "no-name": b'{"type": "MODIFIED", "object": {"metadata": {"namespace": "default"}}}\n',
    "deleted-no-name": b'{"type": "DELETED", "object": {"metadata": {"name": 5}}}\n',
    "deep": b'{"type": "ADDED", "object": ' + b"[" * 50_000 + b"\n",
    "oversized": b'{"type": "ADDED", "object": {"x": "' + b"a" * (5 << 20) + b'"}}\n',
    "error-500": b'{"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "X"}}\n',
}


@pytest.mark.parametrize("raw", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
async def test_a_bad_watch_event_relists_and_the_cache_recovers(
    stub: WatchStub, raw: bytes
) -> None:
    stub.put(pod("a"))
    lines: list[str] = []
    async with running(quick(stub, log=lines.append)) as cache:
        stub.inject(raw)
        stub.put(pod("b"))
        await until(lambda: cache.lists == 2 and cache.get("default", "b"), limit=10)
        assert cache.get("default", "a") is not None
        assert any("StreamError" in line for line in lines), lines


async def test_bookmarks_move_the_version_without_storing(stub: WatchStub) -> None:
    stub.put(pod("a"))
    async with running(quick(stub)) as cache:
        bookmark = {
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "metadata": {"resourceVersion": "7777"}},
        }
        stub.inject(json.dumps(bookmark).encode() + b"\n")
        await until(lambda: cache.resource_version == "7777")
        assert len(cache) == 1 and cache.lists == 1


async def test_a_watch_error_echoing_the_token_is_not_logged(stub: WatchStub) -> None:
    token = "tk-" + "a1B2" * 10
    stub.put(pod("a"))
    lines: list[str] = []
    async with running(quick(stub, token=token, log=lines.append)) as cache:
        status = {"kind": "Status", "code": 401, "reason": f"Bearer {token}", "message": token}
        stub.inject(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        await until(lambda: cache.lists == 2)
        assert any("the watch reported an error (code 401" in line for line in lines), lines
        assert not [line for line in lines if "a1B2a1B2" in line], lines


BAD_LISTS = {
    "text": b"not json",
    "array": b"[]",
    "items-object": b'{"items": {"a": 1}, "metadata": {"resourceVersion": "1"}}',
    "no-version": b'{"items": [], "metadata": {}}',
    "item-no-metadata": b'{"items": [{"kind": "Pod"}], "metadata": {"resourceVersion": "1"}}',
    "bad-continue": b'{"items": [], "metadata": {"resourceVersion": "1", "continue": 5}}',
    "deep": b"[" * 100_000,
}


@pytest.mark.parametrize("body", BAD_LISTS.values(), ids=BAD_LISTS.keys())
async def test_a_bad_list_is_retried_and_never_syncs(stub: WatchStub, body: bytes) -> None:
    stub.put(pod("a"))
    stub.list_body = body
    lines: list[str] = []
    cache = quick(stub, log=lines.append)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await until(lambda: stub.lists() >= 3)
        assert not cache.synced and cache.lists == 0 and cache.get("default", "a") is None
        assert lines and all("StreamError" in line for line in lines), lines
        stub.list_body = None
        await until(lambda: cache.synced and cache.get("default", "a"))
        tg.cancel_scope.cancel()


async def test_a_bad_list_keeps_the_agent_serving_with_gets(
    stub: WatchStub, tmp_path: Path
) -> None:
    stub.put(pod("web"))
    stub.list_body = b"not json"
    config = _config(stub, tmp_path)
    async with agent_caches(config) as (caches, cache):
        await until(lambda: stub.lists() >= 2)  # retried (backing off), never synced
        assert not cache.synced and cache.lists == 0
        for _ in range(3):
            found = await _lookup_pod(config, "default", "web", caches, "uid-web")
            assert found["metadata"]["uid"] == "uid-web"
        assert stub.gets() == 4
        stub.list_body = None  # the API is sane again: the cache syncs and answers
        await until(lambda: cache.synced, limit=20)
        await _lookup_pod(config, "default", "web", caches, "uid-web")
        assert stub.gets() == 4


async def test_garbage_on_the_watch_never_stops_the_agent(stub: WatchStub, tmp_path: Path) -> None:
    # The event kinds that once ended the cache's task (and with it the agent's requests).
    bad = [BAD_EVENTS[k] for k in ("array", "string", "null", "oversized", "error-500")]
    stub.put(pod("web"))
    config = _config(stub, tmp_path)
    async with agent_caches(config) as (caches, cache):
        for index, raw in enumerate(bad):
            await until(lambda: cache.synced, limit=20)
            stub.put(pod(f"good-{index}"))  # an event: the next reconnection waits 0.5 s
            await until(lambda index=index: cache.get("default", f"good-{index}"))
            lists = cache.lists
            stub.inject(raw)
            await until(lambda lists=lists: cache.lists > lists, limit=20)
            found = await _lookup_pod(config, "default", "web", caches, "uid-web")
            assert found["metadata"]["name"] == "web"
