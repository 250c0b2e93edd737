"""Module fixtures: the API stand-in, a ``cnisdk agent``, and two containerd nodes.

The exec node's bin dir holds the exec-mode launchers ``cnisdk install`` writes; the agent
node's holds the agent-mode shims (``--agent-socket``, ``--agent-fallback fail`` so that an
agent that is not there fails the pod instead of silently running in exec mode). Each node
has the chains of :func:`pods.chains` as runtime handlers. A missing prerequisite skips;
test modules here are marked ``netns``, which turns that into a failure under
``CNISDK_REQUIRE_NETNS=1``. After a node stops, nothing of it may be left on the host.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from containerd_node import ContainerdNode, host_state_kept, missing_tools
from cri_client import generate_stubs
from pods import NODE_NAME, chains, write_recorder
from sandbox_image import build_archive

from cnisdk.testing import require_netns


@pytest.fixture(scope="module")
def e2e_ready() -> None:
    require_netns()
    missing = missing_tools()
    if missing:
        pytest.skip(f"missing for a containerd node: {', '.join(missing)}")


@pytest.fixture(scope="module")
def e2e_dir(e2e_ready: None) -> Iterator[Path]:
    # Short: containerd's socket and the agent's go under it (sun_path holds 108 bytes).
    path = Path(f"/tmp/cnisdk-e2e-{secrets.token_hex(4)}")
    path.mkdir(mode=0o700)
    with host_state_kept():
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cri_modules(e2e_dir: Path) -> tuple[ModuleType, ModuleType]:
    return generate_stubs(e2e_dir / "cri-gen")


@pytest.fixture(scope="module")
def image_archive(e2e_dir: Path) -> Path:
    directory = e2e_dir / "image"
    directory.mkdir()
    return build_archive(directory)


@pytest.fixture(scope="module")
def kube_api(e2e_ready: None) -> Iterator[Any]:
    """The API stand-in (GET, LIST and WATCH of pods); tests ``put`` their pods into it."""
    from watch_stub import WatchStub

    with WatchStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def kubeconfig(e2e_dir: Path, kube_api: Any) -> str:
    from netns_traffic import write_kubeconfig

    return write_kubeconfig(e2e_dir, kube_api.url)


@pytest.fixture(scope="module")
def record_dir(e2e_dir: Path) -> Path:
    return e2e_dir / "records"


def _node(
    workdir: Path,
    kubeconfig: str,
    record_dir: Path,
    image_archive: Path,
    cri: tuple[ModuleType, ModuleType],
    install: list[str],
) -> ContainerdNode:
    workdir.mkdir()
    return ContainerdNode(
        workdir,
        chains(kubeconfig, record_dir),
        image_archive=image_archive,
        cri=cri,
        install=install,
    )


@pytest.fixture(scope="module")
def exec_node(
    e2e_dir: Path,
    kubeconfig: str,
    record_dir: Path,
    image_archive: Path,
    cri_modules: tuple[ModuleType, ModuleType],
) -> Iterator[ContainerdNode]:
    node = _node(e2e_dir / "exec", kubeconfig, record_dir, image_archive, cri_modules, [])
    with node:
        write_recorder(node.bin_dir, record_dir)
        yield node
    assert node.host_traces() == []


@pytest.fixture(scope="module")
def agent(e2e_dir: Path) -> Iterator[Any]:
    """``cnisdk agent`` as the DaemonSet runs it (``NODE_NAME`` feeds its pod cache)."""
    from agent_kit import AgentProcess

    process = AgentProcess(
        e2e_dir / "agent.sock",
        args=["--types", "passthrough,istio-redirect"],
        env={**os.environ, "NODE_NAME": NODE_NAME},
    )
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.log()


@pytest.fixture(scope="module")
def agent_node(
    e2e_dir: Path,
    kubeconfig: str,
    record_dir: Path,
    image_archive: Path,
    cri_modules: tuple[ModuleType, ModuleType],
    agent: Any,
) -> Iterator[ContainerdNode]:
    yield from _agent_node(
        e2e_dir / "agent", agent, ["--shim", "python"],
        kubeconfig, record_dir, image_archive, cri_modules,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compiled_shim(e2e_dir: Path) -> Path:
    """The compiled shim, built as the node image's build stage builds it."""
    from cnisdk._compiled_shim import build

    return build(e2e_dir / "shim" / "cnisdk-shim")


@pytest.fixture(scope="module")
def compiled_node(
    e2e_dir: Path,
    kubeconfig: str,
    record_dir: Path,
    image_archive: Path,
    cri_modules: tuple[ModuleType, ModuleType],
    agent: Any,
    compiled_shim: Path,
) -> Iterator[ContainerdNode]:
    """Agent mode as the default deployment runs it: compiled shims."""
    shim = ["--shim", "compiled", "--shim-binary", str(compiled_shim)]
    yield from _agent_node(
        e2e_dir / "compiled", agent, shim, kubeconfig, record_dir, image_archive, cri_modules
    )


def _agent_node(
    workdir: Path,
    agent: Any,
    shim: list[str],
    kubeconfig: str,
    record_dir: Path,
    image_archive: Path,
    cri_modules: tuple[ModuleType, ModuleType],
) -> Iterator[ContainerdNode]:
    socket = str(agent.socket_path)
    install = ["--agent-socket", socket, "--agent-fallback", "fail", *shim]
    node = _node(workdir, kubeconfig, record_dir, image_archive, cri_modules, install)
    with node:
        write_recorder(node.bin_dir, record_dir)
        yield node
    assert node.host_traces() == []
