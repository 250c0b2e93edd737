"""Fixtures for the istio-redirect tests: the async backend, a Kubernetes API stand-in
serving the injected pod, a throw-away pod namespace and a runner in it.

The namespace comes from the cnisdk test kit; ``pod_netns`` yields its name (the runner uses
``ip netns exec NAME``). Tests using it are marked ``@pytest.mark.netns``: they skip without
root, and fail instead under ``CNISDK_REQUIRE_NETNS=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from istio_netns_kit import NetnsRunner
from kube_stub import KubeStub, injected_pod

from cnisdk.testing import require_netns, temporary_netns


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stub() -> Iterator[KubeStub]:
    """A :class:`KubeStub` (token ``good-token``) serving :func:`injected_pod`."""
    with KubeStub() as server:
        server.add_pod(injected_pod())
        yield server


@pytest.fixture
def pod_netns() -> Iterator[str]:
    """A fresh, empty network namespace, deleted after the test whatever happens."""
    require_netns()
    with temporary_netns("cnisdk-t-") as path:
        yield Path(path).name


@pytest.fixture
def runner(pod_netns: str) -> Iterator[NetnsRunner]:
    """A :class:`NetnsRunner` bound to a fresh ``pod_netns``."""
    r = NetnsRunner(pod_netns)
    try:
        yield r
    finally:
        Path(r.env["XTABLES_LOCKFILE"]).unlink(missing_ok=True)
