"""tuning-example: sysctls and MTU land in the container's namespace, not the host's."""

from __future__ import annotations

from pathlib import Path

import pytest
from cnisdk_examples.tuning import Tuning, sysctl_path
from example_kit import host_sysctl, ip, prev_result

from cnisdk import CNIError, ErrorCode
from cnisdk.testing import invoke, require_netns, temporary_netns

pytestmark = pytest.mark.anyio


def test_sysctl_names_are_confined_to_net() -> None:
    assert sysctl_path("net.ipv4.conf.{ifname}.rp_filter", "eth0.100") == Path(
        "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
    )
    for bad in ("kernel.hostname", "net..x", "net.ipv4/../../kernel", "net"):
        with pytest.raises(CNIError) as info:
            sysctl_path(bad, "eth0")
        assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG


@pytest.mark.netns
async def test_add_sets_sysctl_and_mtu_in_the_namespace() -> None:
    require_netns()
    host_rp_filter = host_sysctl("net/ipv4/conf/all/rp_filter")
    with temporary_netns(with_veth=True) as pair:
        config = {
            "cniVersion": "1.0.0",
            "name": "tune",
            "type": "tuning-example",
            "mtu": 1280,
            "sysctl": {"net.ipv4.conf.{ifname}.rp_filter": "2"},
            "prevResult": prev_result(pair.path),
        }
        added = await invoke(Tuning, "ADD", config, netns=pair.path)
        assert added.ok, added.stdout

        # The effect, seen from inside the namespace.
        rp = ip("netns", "exec", pair.name, "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter")
        assert rp.strip() == "2"
        assert " mtu 1280 " in ip("-n", pair.name, "link", "show", "eth0")
        # The result reports the new MTU; the host's own sysctl is untouched.
        assert added.json()["interfaces"][0]["mtu"] == 1280
        assert host_sysctl("net/ipv4/conf/all/rp_filter") == host_rp_filter

        check_config = {**config, "prevResult": added.json()}
        assert (await invoke(Tuning, "CHECK", check_config, netns=pair.path)).ok
        ip("-n", pair.name, "link", "set", "eth0", "mtu", "1400")
        checked = await invoke(Tuning, "CHECK", check_config, netns=pair.path)
        assert not checked.ok
        assert "MTU of eth0 is 1400" in checked.error.msg


@pytest.mark.netns
async def test_missing_interface_is_a_config_error() -> None:
    require_netns()
    with temporary_netns() as path:
        config = {
            "cniVersion": "1.1.0",
            "name": "tune",
            "type": "tuning-example",
            "mtu": 1280,
            "prevResult": prev_result(path),
        }
        outcome = await invoke(Tuning, "ADD", config, netns=path)
        assert outcome.error.code == ErrorCode.INVALID_NETWORK_CONFIG
