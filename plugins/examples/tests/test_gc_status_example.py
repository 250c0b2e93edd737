"""gc-status-example: state files per attachment, GC of stale ones, STATUS code 50."""

from __future__ import annotations

from pathlib import Path

import pytest
from cnisdk_examples.gc_status import GCStatus
from example_kit import prev_result

from cnisdk import ErrorCode
from cnisdk.testing import invoke, require_netns, temporary_netns

pytestmark = pytest.mark.anyio


def config(state_dir: Path, netns_path: str = "", **extra: object) -> dict[str, object]:
    return {
        "cniVersion": "1.1.0",
        "name": "gcnet",
        "type": "gc-status-example",
        "stateDir": str(state_dir),
        "prevResult": prev_result(netns_path),
        **extra,
    }


@pytest.mark.netns
async def test_gc_removes_state_of_attachments_the_runtime_no_longer_has(tmp_path: Path) -> None:
    require_netns()
    state = tmp_path / "state"
    with temporary_netns() as path:
        for container in ("alive", "gone"):
            added = await invoke(
                GCStatus, "ADD", config(state, path), netns=path, container_id=container
            )
            assert added.ok, added.stdout
    files = state / "gcnet"
    assert sorted(p.name for p in files.iterdir()) == ["alive.eth0.json", "gone.eth0.json"]

    # GC: the runtime still uses only "alive"; GC has no container ID, netns or ifname.
    valid = [{"containerID": "alive", "ifname": "eth0"}]
    gc_config = {**config(state), "cni.dev/valid-attachments": valid}
    del gc_config["prevResult"]
    collected = await invoke(GCStatus, "GC", gc_config, container_id="", ifname="")
    assert collected.ok, collected.stdout
    assert [p.name for p in files.iterdir()] == ["alive.eth0.json"]

    # DEL removes the rest, and may be repeated.
    for _ in range(2):
        assert (await invoke(GCStatus, "DEL", config(state), container_id="alive")).ok
    assert list(files.iterdir()) == []


async def test_gc_needs_spec_1_1_0(tmp_path: Path) -> None:
    outcome = await invoke(GCStatus, "GC", config(tmp_path, cniVersion="1.0.0"))
    assert outcome.error.code == ErrorCode.INCOMPATIBLE_CNI_VERSION


async def test_status_reports_50_when_the_state_dir_is_not_writable(tmp_path: Path) -> None:
    assert (await invoke(GCStatus, "STATUS", config(tmp_path / "state"))).ok

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    outcome = await invoke(GCStatus, "STATUS", config(blocker / "state"))
    assert outcome.error.code == ErrorCode.PLUGIN_NOT_AVAILABLE  # 50
    assert "is not writable" in outcome.error.msg
