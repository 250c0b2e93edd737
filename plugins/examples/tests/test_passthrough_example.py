"""Tests for passthrough, the smallest chained plugin: in-process, through the SDK's pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from cnisdk_examples.passthrough import Passthrough

from cnisdk import ErrorCode
from cnisdk.testing import invoke

pytestmark = pytest.mark.anyio  # async tests run on anyio (the `anyio_backend` fixture)

PREV: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/test"}],
    "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
}


# --8<-- [start:versions]
async def test_add_returns_the_previous_result() -> None:
    config = {"cniVersion": "1.0.0", "name": "net", "type": "passthrough", "prevResult": PREV}
    outcome = await invoke(Passthrough, "ADD", config, netns="/var/run/netns/test")
    assert outcome.ok
    assert outcome.json() == PREV  # unchanged, in the config's version


async def test_add_speaks_an_older_config_version() -> None:
    # prevResult is in the config's version (0.3.x results name each IP's version); the
    # plugin sees it as a current Result, and the SDK prints it back as 0.3.1.
    prev_031 = {**PREV, "cniVersion": "0.3.1", "ips": [{**PREV["ips"][0], "version": "4"}]}
    config = {"cniVersion": "0.3.1", "name": "net", "type": "passthrough", "prevResult": prev_031}
    outcome = await invoke(Passthrough, "ADD", config, netns="/var/run/netns/test")
    assert outcome.json()["cniVersion"] == "0.3.1"
    assert outcome.json()["ips"][0]["version"] == "4"


# --8<-- [end:versions]


async def test_add_without_a_previous_plugin_is_refused() -> None:
    config = {"cniVersion": "1.0.0", "name": "net", "type": "passthrough"}
    outcome = await invoke(Passthrough, "ADD", config, netns="/var/run/netns/test")
    assert outcome.error.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert outcome.error.msg == "must be called as chained plugin"
