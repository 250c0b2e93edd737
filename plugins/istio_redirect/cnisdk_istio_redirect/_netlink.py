"""TPROXY policy routing and loopback addresses in the pod namespace, through netlink.

Imported only when a pod needs them (TPROXY mode or IPv6): pyroute2 is costly to import.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Any

from cnisdk_istio_redirect._iptables_rules import LoopbackAddress, PolicyRoute, PolicyRule

__all__ = ["apply_links"]

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_SCOPE_HOST = 254


async def apply_links(
    netns: Any,
    rules: Sequence[PolicyRule],
    routes: Sequence[PolicyRoute],
    addresses: Sequence[LoopbackAddress],
) -> None:
    """Add the policy rules, routes and addresses; ones already present are left as they are.

    :param netns: a :class:`cnisdk.netns.NetNS` (its ``netlink()`` opens a socket in the pod
        namespace without moving any thread of ours).
    """
    from pyroute2.netlink.exceptions import NetlinkError

    async with netns.netlink() as ipr:

        async def add(kind: str, **fields: Any) -> None:
            try:
                await getattr(ipr, kind)("add", **fields)
            except NetlinkError as exc:
                # EEXIST: a repeated ADD finds its own earlier state, which is what we want.
                if exc.code != errno.EEXIST:
                    raise RuntimeError(f"netlink {kind} add {fields}: {exc}") from exc

        indexes: dict[str, int] = {}

        async def index_of(device: str) -> int:
            if device not in indexes:
                links = await ipr.link("get", ifname=device)
                indexes[device] = links[0]["index"]
            return indexes[device]

        for address in addresses:
            ip, _, prefix = address.address.partition("/")
            await add(
                "addr",
                index=await index_of(address.device),
                address=ip,
                prefixlen=int(prefix or (128 if address.family == 6 else 32)),
            )
        for rule in rules:
            await add("rule", fwmark=rule.fwmark, table=rule.table, family=_FAMILY[rule.family])
        for route in routes:
            await add(
                "route",
                dst=route.destination,
                type=route.route_type,
                oif=await index_of(route.device),
                table=route.table,
                scope=_SCOPE_HOST,
                family=_FAMILY[route.family],
            )
