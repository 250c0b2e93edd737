"""Fixtures for the istio-redirect rule tests: throw-away network namespaces and a runner.

Self-contained on purpose (a shared version is planned for ``cnisdk.testing``); the fixture is
called ``pod_netns`` so it cannot collide with that plugin's ``netns``. Tests needing it are
marked ``@pytest.mark.netns``: they skip without root or ``ip netns``, but fail instead when
``CNISDK_REQUIRE_NETNS=1`` so CI cannot silently skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from istio_netns_kit import NetnsRunner, delete_netns, new_netns, require_netns


@pytest.fixture
def pod_netns() -> Iterator[str]:
    """A fresh, empty network namespace, deleted after the test whatever happens."""
    require_netns()
    name = new_netns()
    try:
        yield name
    finally:
        delete_netns(name)


@pytest.fixture
def runner(pod_netns: str) -> Iterator[NetnsRunner]:
    """A :class:`NetnsRunner` bound to a fresh ``pod_netns``."""
    r = NetnsRunner(pod_netns)
    try:
        yield r
    finally:
        Path(r.env["XTABLES_LOCKFILE"]).unlink(missing_ok=True)
