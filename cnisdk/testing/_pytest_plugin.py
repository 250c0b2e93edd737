"""The ``cnisdk`` pytest plugin (entry point ``pytest11``): the test kit's fixtures and markers.

Under ``CNISDK_REQUIRE_NETNS=1`` a test marked ``netns`` that skips is reported as failed, so
CI can never pass with its namespace tests silently skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import pytest

from cnisdk.testing._bin_dir import make_cni_bin_dir
from cnisdk.testing._netns_fixtures import netns, netns_pair

__all__ = ["cni_bin_dir", "netns", "netns_pair"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "netns: needs root and network namespaces "
        "(fails instead of skipping under CNISDK_REQUIRE_NETNS=1)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and os.environ.get("CNISDK_REQUIRE_NETNS") == "1"
        and item.get_closest_marker("netns") is not None
    ):
        report.outcome = "failed"
        report.longrepr = f"netns test skipped under CNISDK_REQUIRE_NETNS=1: {report.longrepr}"
    return report


@pytest.fixture
def cni_bin_dir(tmp_path: Path) -> Callable[..., list[str]]:
    """A factory: ``cni_bin_dir("my-plugin", ...)`` writes launchers into a temporary bin dir
    and returns the CNI path to use (that dir, then the system plugin dirs)."""

    def make(*plugin_types: str) -> list[str]:
        types: Sequence[str] = plugin_types
        return make_cni_bin_dir(tmp_path / "cni-bin", types)

    return make
