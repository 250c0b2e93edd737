"""The README's set-up commands and its "write your first plugin" example stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnisdk import Plugin
from cnisdk.testing import invoke

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines()]
    assert commands == ["./dev demo", "./dev test"]


@pytest.mark.anyio
async def test_first_plugin_example_runs_chained() -> None:
    source = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert source is not None
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(source.group(1), "README.md", "exec"), namespace)
    plugin = namespace["MtuLogger"]
    assert isinstance(plugin, type) and issubclass(plugin, Plugin)
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:05"}],
        "ips": [{"address": "10.244.0.5/24", "interface": 0}],
    }
    config = {"cniVersion": "1.0.0", "name": "n", "type": "mtu-logger", "prevResult": prev}
    outcome = await invoke(plugin, "ADD", config, netns="/x")
    assert outcome.ok, outcome.stdout
    assert outcome.json() == prev
    unchained = {k: v for k, v in config.items() if k != "prevResult"}
    refused = await invoke(plugin, "ADD", unchained, netns="/x")
    assert refused.error.msg == "must be called as chained plugin"
