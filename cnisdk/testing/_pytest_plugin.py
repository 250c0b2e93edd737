"""The ``cnisdk`` pytest plugin (entry point ``pytest11``): the test kit's fixtures and markers."""

from __future__ import annotations

import pytest

from cnisdk.testing._netns_fixtures import netns, netns_pair  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "netns: needs root and network namespaces "
        "(fails instead of skipping under CNISDK_REQUIRE_NETNS=1)",
    )
