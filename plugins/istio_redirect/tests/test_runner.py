"""The command runner: iptables/nft run in the pod netns, without NSS, with a per-netns lock."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from cnisdk_istio_redirect._runner import NSSWITCH, NsswitchHider, netns_runner

from cnisdk import NetNS
from cnisdk.testing import require_netns, temporary_netns

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

LOG = logging.getLogger("test-istio-runner")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pod() -> Iterator[NetNS]:
    require_netns()
    with temporary_netns("cnisdk-run-") as path, NetNS.open(path) as netns:
        yield netns


async def _threads_in_other_mount_namespaces() -> list[str]:
    """Our threads whose mount namespace differs from this one's, once the dying ones are gone.

    A single-use netns thread wakes its waiter just before it ends, so it may still be listed
    for a moment; one that stays would be a leak.
    """
    own = os.stat("/proc/thread-self/ns/mnt").st_ino
    others: list[str] = []
    for _ in range(200):
        others = []
        for tid in os.listdir("/proc/self/task"):
            try:
                if os.stat(f"/proc/self/task/{tid}/ns/mnt").st_ino != own:
                    others.append(tid)
            except FileNotFoundError:
                pass  # ended meanwhile
        if not others:
            break
        await anyio.sleep(0.01)
    return others


async def test_tools_see_an_empty_nsswitch_conf_in_the_pod_netns(pod: NetNS) -> None:
    host_view = await anyio.Path(NSSWITCH).read_bytes()
    assert host_view, "the host's nsswitch.conf is expected to say something"
    run = netns_runner(pod, LOG)
    code, out, err = await run(["cat", NSSWITCH])
    assert (code, out, err) == (0, b"", b"")
    # Inside the pod's netns, with the fixed environment and the per-netns lock file.
    code, out, _ = await run(["readlink", "/proc/self/ns/net"])
    assert code == 0 and out.decode().strip() == f"net:[{os.stat(pod.path).st_ino}]"
    code, out, _ = await run(["env"])
    assert sorted(out.decode().splitlines()) == [
        "LC_ALL=C",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        f"XTABLES_LOCKFILE={pod.path}",
    ]
    # Input reaches the tool (iptables-restore and nft -f - read their rules from stdin).
    assert await run(["cat"], b"*nat\nCOMMIT\n") == (0, b"*nat\nCOMMIT\n", b"")
    # Only the single-use threads moved: the host file and every thread of ours are untouched.
    assert await anyio.Path(NSSWITCH).read_bytes() == host_view
    assert await _threads_in_other_mount_namespaces() == []


async def test_a_refused_mount_is_logged_once_and_the_tool_runs_anyway(
    pod: NetNS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # /dev/null cannot be bind-mounted over a directory: the kernel refuses, as a restrictive
    # security policy would.
    hider = NsswitchHider(LOG, path=str(tmp_path))
    caplog.set_level(logging.WARNING, LOG.name)
    for _ in range(2):
        done = await pod.run_process(["cat", NSSWITCH], prepare_thread=hider)
        assert done.returncode == 0 and done.stdout == await anyio.Path(NSSWITCH).read_bytes()
    warnings = [r.getMessage() for r in caplog.records if r.name == LOG.name]
    assert len(warnings) == 1
    assert f"bind-mounting /dev/null over {tmp_path}: Not a directory" in warnings[0]
    assert hider.refused is not None and "Not a directory" in hider.refused
