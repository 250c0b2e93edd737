"""Netlink helpers the examples share."""

from __future__ import annotations

from typing import Any

from cnisdk import CNIError, ErrorCode


async def link_index(ipr: Any, ifname: str) -> int:
    """The index of interface ``ifname`` on a pyroute2 ``AsyncIPRoute``.

    :raises CNIError: code 7 (invalid network config) when the namespace has no such interface:
        the config names an interface a previous plugin should have made.
    """
    indexes: list[int] = await ipr.link_lookup(ifname=ifname)
    if not indexes:
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, f"no interface {ifname!r} in the netns")
    return indexes[0]
