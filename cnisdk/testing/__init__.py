"""The cnisdk test kit: real network namespaces and pytest fixtures for plugin tests."""

from cnisdk.testing._netns_fixtures import NetNSPair as NetNSPair
from cnisdk.testing._netns_fixtures import require_netns as require_netns
from cnisdk.testing._netns_fixtures import temporary_netns as temporary_netns

__all__ = ["NetNSPair", "require_netns", "temporary_netns"]
