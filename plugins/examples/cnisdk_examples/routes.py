"""routes-example: add routes from the config to the container's interface, and remove them on DEL.

Shows netlink through pyroute2 (:meth:`ctx.netns.netlink()`), a result that grows (the
routes are added to the previous plugin's result), and a DEL that succeeds when there is
nothing left to remove, including when the namespace itself is gone.

Config::

    {"type": "routes-example",
     "routes": [{"dst": "198.51.100.0/24", "gw": "10.22.0.1"}, {"dst": "203.0.113.0/24"}]}

A route without ``gw`` is on-link: its destination is reached directly on ``CNI_IFNAME``.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from pydantic import Field

from cnisdk import CNIError, Context, ErrorCode, NetConf, Plugin, Result, Route
from cnisdk_examples._links import link_index


class RoutesConfig(NetConf):
    """The plugin's entry in a conflist."""

    routes: list[Route] = Field(
        default_factory=list,
        description="Routes in the CNI result format: ``dst`` (a CIDR), optional ``gw``, "
        "``priority``.",
    )


def _netlink_args(route: Route, index: int) -> dict[str, Any]:
    """pyroute2 keyword arguments for one route on the interface with ``index``.

    :raises CNIError: code 7 if ``dst`` or ``gw`` is not an address.
    """
    try:
        dst = ipaddress.ip_network(route.dst, strict=False)
        gw = ipaddress.ip_address(route.gw) if route.gw else None
    except ValueError as exc:
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, f"invalid route: {exc}") from None
    args: dict[str, Any] = {"dst": str(dst), "oif": index}
    if gw is not None:
        args["gateway"] = str(gw)
    if route.priority:
        args["priority"] = route.priority
    return args


class Routes(Plugin[RoutesConfig]):
    """Add the configured routes via ``CNI_IFNAME`` on ADD; remove them on DEL."""

    chained = True
    about = "CNI plugin routes-example (cnisdk example): static routes in the container"

    async def add(self, ctx: Context[RoutesConfig]) -> Result:
        prev = ctx.require_prev_result()  # always there: `chained = True` made sure
        async with ctx.require_netns().netlink() as ipr:  # ADD always has a namespace
            index = await link_index(ipr, ctx.ifname)
            for route in ctx.config.routes:
                # "replace" rather than "add": a retried ADD must not fail on its own routes.
                await ipr.route("replace", **_netlink_args(route, index))
                ctx.log.info("route %s via %s dev %s", route.dst, route.gw, ctx.ifname)
        # Report the routes in the result, so the runtime (and later plugins) know of them.
        prev.routes.extend(r.model_copy() for r in ctx.config.routes)
        return prev

    async def delete(self, ctx: Context[RoutesConfig]) -> None:
        # DEL must succeed when there is nothing to do: the runtime may call it twice, or
        # after the container's namespace is already gone (then ctx.netns is None).
        netns = ctx.netns
        if netns is None:
            ctx.log.info("DEL: the namespace is gone, and the routes with it")
            return
        # pyroute2 is imported only by requests that use it (import time is latency).
        from pyroute2.netlink.exceptions import NetlinkError

        async with netns.netlink() as ipr:
            indexes: list[int] = await ipr.link_lookup(ifname=ctx.ifname)
            if not indexes:
                return  # the interface is gone, and its routes with it
            for route in ctx.config.routes:
                try:
                    await ipr.route("del", **_netlink_args(route, indexes[0]))
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:  # ESRCH: no such route (already removed)
                        raise

    async def check(self, ctx: Context[RoutesConfig]) -> None:
        async with ctx.require_netns().netlink() as ipr:  # CHECK always has a namespace
            index = await link_index(ipr, ctx.ifname)
            present = {
                (msg.get("RTA_DST"), msg["dst_len"])
                async for msg in await ipr.route("dump", oif=index)
            }
        for route in ctx.config.routes:
            dst = ipaddress.ip_network(route.dst, strict=False)
            if (str(dst.network_address), dst.prefixlen) not in present:
                raise CNIError(ErrorCode.INTERNAL, f"route to {dst} via {ctx.ifname} is missing")
