"""routes-example: routes appear on ADD via the container's interface, and go on DEL."""

from __future__ import annotations

import pytest
from cnisdk_examples.routes import Routes
from example_kit import ip, prev_result

from cnisdk import ErrorCode
from cnisdk.testing import invoke, require_netns, temporary_netns

pytestmark = pytest.mark.anyio

ROUTES = [{"dst": "198.51.100.0/24", "gw": "192.0.2.1"}, {"dst": "203.0.113.0/25"}]


def config(netns_path: str, routes: list[dict[str, str]] = ROUTES) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "routed",
        "type": "routes-example",
        "routes": routes,
        "prevResult": prev_result(netns_path, ips=[{"address": "192.0.2.7/24", "interface": 0}]),
    }


@pytest.mark.netns
async def test_add_check_del() -> None:
    require_netns()
    with temporary_netns(with_veth=True) as pair:
        # What the interface-creating plugin would have done: an address on eth0.
        ip("-n", pair.name, "addr", "add", "192.0.2.7/24", "dev", "eth0")
        conf = config(pair.path)

        added = await invoke(Routes, "ADD", conf, netns=pair.path)
        assert added.ok, added.stdout
        table = ip("-n", pair.name, "route", "show")
        assert "198.51.100.0/24 via 192.0.2.1 dev eth0" in table
        assert "203.0.113.0/25 dev eth0" in table
        assert added.json()["routes"] == ROUTES

        # A repeated ADD (a runtime retry) finds its own routes and still succeeds.
        assert (await invoke(Routes, "ADD", conf, netns=pair.path)).ok
        assert (await invoke(Routes, "CHECK", conf, netns=pair.path)).ok

        deleted = await invoke(Routes, "DEL", conf, netns=pair.path)
        assert deleted.ok, deleted.stdout
        table = ip("-n", pair.name, "route", "show")
        assert "198.51.100.0" not in table and "203.0.113.0" not in table
        assert "192.0.2.0/24 dev eth0" in table  # the interface's own route stays

        # DEL is idempotent; CHECK now notices the missing routes.
        assert (await invoke(Routes, "DEL", conf, netns=pair.path)).ok
        checked = await invoke(Routes, "CHECK", conf, netns=pair.path)
        assert "is missing" in checked.error.msg


@pytest.mark.netns
async def test_del_succeeds_when_the_namespace_is_gone() -> None:
    require_netns()
    with temporary_netns() as path:
        pass  # deleted on leaving the block
    outcome = await invoke(Routes, "DEL", config(path), netns=path)
    assert outcome.ok, outcome.stdout


@pytest.mark.netns
async def test_bad_route_is_a_config_error() -> None:
    require_netns()
    with temporary_netns(with_veth=True) as pair:
        outcome = await invoke(Routes, "ADD", config(pair.path, [{"dst": "nope"}]), netns=pair.path)
        assert outcome.error.code == ErrorCode.INVALID_NETWORK_CONFIG
