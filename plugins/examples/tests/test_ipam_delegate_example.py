"""ipam-delegate-example with Debian's Go ``host-local``: a real reservation, a real address."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cnisdk_examples.ipam_delegate import IPAMDelegate
from example_kit import ip, prev_result

from cnisdk import CNIError
from cnisdk.testing import FakeExec, invoke, require_netns, temporary_netns

pytestmark = pytest.mark.anyio

GO_PLUGINS = "/usr/lib/cni"


def config(netns_path: str, data_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "ipamnet",
        "type": "ipam-delegate-example",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(data_dir),
        },
        "prevResult": prev_result(netns_path),
    }


@pytest.mark.netns
async def test_add_check_del_with_host_local(tmp_path: Path) -> None:
    require_netns()
    if not os.access(f"{GO_PLUGINS}/host-local", os.X_OK):
        pytest.skip("Debian's containernetworking-plugins (host-local) are not installed")
    reservations = tmp_path / "ipam" / "ipamnet"
    with temporary_netns(with_veth=True) as pair:
        conf = config(pair.path, tmp_path / "ipam")
        options: dict[str, Any] = {
            "netns": pair.path,
            "container_id": "ctr1",
            "cni_path": [GO_PLUGINS],
        }

        added = await invoke(IPAMDelegate, "ADD", conf, **options)
        assert added.ok, added.stdout
        doc = added.json()
        assert doc["ips"] == [{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0}]
        assert doc["routes"] == [{"dst": "0.0.0.0/0"}]
        # host-local's reservation file names the container; the address is on eth0.
        assert (reservations / "10.77.0.2").read_text().splitlines()[0] == "ctr1"
        assert "inet 10.77.0.2/24" in ip("-n", pair.name, "addr", "show", "eth0")
        assert "default via 10.77.0.1 dev eth0" in ip("-n", pair.name, "route", "show")

        check = await invoke(IPAMDelegate, "CHECK", {**conf, "prevResult": doc}, **options)
        assert check.ok, check.stdout

        deleted = await invoke(IPAMDelegate, "DEL", {**conf, "prevResult": doc}, **options)
        assert deleted.ok, deleted.stdout
        assert not (reservations / "10.77.0.2").exists()


@pytest.mark.netns
async def test_failed_add_releases_the_addresses(tmp_path: Path) -> None:
    require_netns()
    fake = FakeExec()
    fake.respond("ADD", "host-local", {"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.9/24"}]})
    with temporary_netns() as path:  # no eth0 in this namespace
        outcome = await invoke(IPAMDelegate, "ADD", config(path, tmp_path), netns=path, exec=fake)
        assert isinstance(outcome.error, CNIError)
        assert "no interface 'eth0'" in outcome.error.msg
    assert [(call.command, call.plugin_type) for call in fake.calls] == [
        ("ADD", "host-local"),
        ("DEL", "host-local"),
    ]
    assert fake.calls[1].config["ipam"]["type"] == "host-local"
