"""ipam-delegate-example: addresses from an IPAM plugin, on the container's interface.

Shows delegation: the plugin runs another plugin (here an IPAM plugin such as Debian's
``host-local``) through ``ctx.delegate_add`` / ``delegate_check`` / ``delegate_delete``, the
way Go plugins call ``ipam.ExecAdd``. The delegate is found on ``CNI_PATH`` and inherits this
request's environment; its result comes back as a result model.

It runs after a plugin that made the interface but gave it no address, e.g.::

    {"cniVersion": "1.0.0", "name": "net", "plugins": [
      {"type": "some-interface-plugin"},
      {"type": "ipam-delegate-example",
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.0.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}]}}]}

ADD asks IPAM for addresses, configures them (and IPAM's routes) on ``CNI_IFNAME`` and merges
them into the previous result. DEL releases the addresses; CHECK asks IPAM to check its
reservation and checks that the addresses are still on the interface.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import anyio

from cnisdk import CNIError, Context, ErrorCode, IPConfig, NetConf, Plugin, Result
from cnisdk_examples._links import link_index


def ipam_type(config: NetConf) -> str:
    """The IPAM plugin's type from the config's ``ipam`` section.

    :raises CNIError: code 7 (invalid network config) when there is none.
    """
    plugin_type = (config.ipam or {}).get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise CNIError(
            ErrorCode.INVALID_NETWORK_CONFIG, "ipam-delegate-example needs an 'ipam' with a 'type'"
        )
    return plugin_type


def interface_index(result: Result, ifname: str) -> int | None:
    """The position of the container's interface ``ifname`` in ``result.interfaces``."""
    for index, iface in enumerate(result.interfaces):
        if iface.name == ifname and iface.sandbox:  # sandbox set: it is in the container
            return index
    return None


class IPAMDelegate(Plugin[NetConf]):
    """Configure ``CNI_IFNAME`` with the addresses an IPAM plugin hands out."""

    chained = True
    about = "CNI plugin ipam-delegate-example (cnisdk example): addresses from an IPAM plugin"

    async def add(self, ctx: Context[NetConf]) -> Result:
        result = ctx.require_prev_result()  # always there: `chained = True` made sure
        ipam = ipam_type(ctx.config)

        # 1. Ask IPAM. Like Go plugins, pass our own stdin on: IPAM reads its "ipam" section.
        #    The answer is in the config's cniVersion; to_current() gives a 1.1.0 Result.
        allocated = (await ctx.delegate_add(ipam, ctx.request.stdin)).to_current()
        if not allocated.ips:
            await ctx.delegate_delete(ipam, ctx.request.stdin)
            raise CNIError(ErrorCode.INTERNAL, f"IPAM plugin {ipam!r} returned no IP addresses")

        # 2. Configure them. If that fails, give the addresses back before failing: a failed
        #    ADD gets no DEL from some runtimes, and the reservation would leak.
        try:
            await self._configure(ctx, allocated)
        except BaseException:
            with anyio.CancelScope(shield=True):  # even when ADD is being cancelled
                try:
                    await ctx.delegate_delete(ipam, ctx.request.stdin)
                except Exception as exc:  # report the first failure, not this one
                    ctx.log.warning("could not release addresses after a failed ADD: %s", exc)
            raise

        # 3. Merge into the previous result: each IP points at the container's interface.
        index = interface_index(result, ctx.ifname)
        for ip in allocated.ips:
            result.ips.append(ip.model_copy(update={"interface": index}))
        result.routes.extend(allocated.routes)
        if allocated.dns.nameservers:
            result.dns = allocated.dns
        return result

    async def _configure(self, ctx: Context[NetConf], allocated: Result) -> None:
        async with ctx.require_netns().netlink() as ipr:  # ADD always has a namespace
            link = await link_index(ipr, ctx.ifname)
            for ip in allocated.ips:
                addr = ipaddress.ip_interface(ip.address)
                await ipr.addr(
                    "replace", index=link, address=str(addr.ip), prefixlen=addr.network.prefixlen
                )
                ctx.log.info("%s: address %s", ctx.ifname, addr)
            # The link must be up before routes through a gateway can be added.
            await ipr.link("set", index=link, state="up")
            for route in allocated.routes:
                args: dict[str, Any] = {"dst": route.dst, "oif": link}
                gateway = route.gw or _gateway_for(allocated.ips, route.dst)
                if gateway:
                    args["gateway"] = gateway
                await ipr.route("replace", **args)

    async def delete(self, ctx: Context[NetConf]) -> None:
        # Release the reservation. This must happen even when the namespace is gone, so it
        # does not touch ctx.netns; the addresses themselves go away with the interface.
        # host-local's DEL succeeds when there is nothing to release, as DEL must.
        await ctx.delegate_delete(ipam_type(ctx.config), ctx.request.stdin)

    async def check(self, ctx: Context[NetConf]) -> None:
        # IPAM checks its side (host-local: is the address still reserved for us?) ...
        await ctx.delegate_check(ipam_type(ctx.config), ctx.request.stdin)
        # ... and we check ours: are the addresses of our interface still on it?
        if ctx.prev_result is None:
            return
        index = interface_index(ctx.prev_result, ctx.ifname)
        wanted = {
            ipaddress.ip_interface(ip.address)
            for ip in ctx.prev_result.ips
            if ip.interface == index
        }
        async with ctx.require_netns().netlink() as ipr:  # CHECK always has a namespace
            indexes: list[int] = await ipr.link_lookup(ifname=ctx.ifname)
            present = {
                ipaddress.ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                for link in indexes
                async for msg in await ipr.addr("dump", index=link)
            }
        missing = sorted(str(a) for a in wanted - present)
        if missing:
            raise CNIError(ErrorCode.INTERNAL, f"{ctx.ifname} lacks {', '.join(missing)}")


def _gateway_for(ips: list[IPConfig], dst: str) -> str | None:
    """The gateway of the first allocated IP of the same family as ``dst``, if any."""
    family = ipaddress.ip_network(dst, strict=False).version
    for ip in ips:
        if ip.gateway and ipaddress.ip_address(ip.gateway).version == family:
            return ip.gateway
    return None
