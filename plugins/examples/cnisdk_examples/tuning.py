"""tuning-example: set sysctls and the MTU of the container's interface (like Go's ``tuning``).

Shows the two ways into a container's network namespace:

- :meth:`NetNS.run <cnisdk._netns.NetNS.run>` runs a plain function on a single-use thread
  inside the namespace. ``/proc/sys/net`` shows the namespace of the thread that opens it,
  so sysctls are written there.
- :meth:`NetNS.netlink <cnisdk._netns.NetNS.netlink>` gives a pyroute2 ``AsyncIPRoute``
  bound to the namespace, for links, addresses and routes.

Config::

    {"type": "tuning-example", "mtu": 1400,
     "sysctl": {"net.ipv4.conf.{ifname}.rp_filter": "2", "net.core.somaxconn": "1024"}}

``{ifname}`` in a sysctl name stands for ``CNI_IFNAME``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from cnisdk import CNIError, Context, ErrorCode, NetConf, Plugin, Result
from cnisdk_examples._links import link_index

# Only network sysctls: they are the ones that belong to a network namespace. Anything else
# (kernel.*, vm.*) would change the whole host. Each part is a plain name, never "..".
_PART = re.compile(r"[A-Za-z0-9_\-]+\Z")


class TuningConfig(NetConf):
    """The plugin's entry in a conflist; unknown keys are kept and ignored."""

    mtu: int | None = Field(
        default=None,
        ge=68,
        le=65535,
        description="The MTU for the container's interface; unset leaves it alone.",
    )
    sysctl: dict[str, str] = Field(
        default_factory=dict,
        description="``net.*`` sysctls to write in the container's namespace.",
    )


def sysctl_path(name: str, ifname: str) -> Path:
    """``/proc/sys/...`` for a sysctl name such as ``net.ipv4.conf.{ifname}.forwarding``.

    The name is split on dots *before* ``{ifname}`` is replaced, so an interface name with
    a dot in it (``eth0.100``) stays one path part. ``ifname`` was validated by the SDK (no
    ``/``, not ``.`` or ``..``), so the path cannot leave ``/proc/sys/net``.

    :raises CNIError: code 7 (invalid network config) for a name outside ``net.*``.
    """
    parts = name.split(".")
    if parts[0] != "net" or len(parts) < 2:
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, f"not a network sysctl: {name!r}")
    for part in parts:
        if part != "{ifname}" and not _PART.match(part):
            raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, f"bad sysctl name: {name!r}")
    return Path("/proc/sys", *(ifname if part == "{ifname}" else part for part in parts))


def write_sysctls(values: dict[Path, str]) -> None:
    """Write each value. Runs *inside* the container's namespace (see ``add``)."""
    for path, value in values.items():
        path.write_text(value)


def read_sysctls(paths: list[Path]) -> dict[Path, str]:
    """Read each value. Runs inside the container's namespace (see ``check``)."""
    return {path: path.read_text().strip() for path in paths}


class Tuning(Plugin[TuningConfig]):
    """Set sysctls and the MTU of ``CNI_IFNAME`` inside the container's namespace."""

    chained = True  # it tunes an interface a previous plugin made
    about = "CNI plugin tuning-example (cnisdk example): sysctls and MTU"

    async def add(self, ctx: Context[TuningConfig]) -> Result:
        prev = ctx.require_prev_result()  # always there: `chained = True` made sure
        netns = ctx.require_netns()  # ADD always has a namespace (the skel checks CNI_NETNS)

        # Build (and validate) every path before changing anything.
        values = {sysctl_path(k, ctx.ifname): v for k, v in ctx.config.sysctl.items()}
        if values:
            # A plain function, run on a fresh thread that enters the namespace and leaves.
            await netns.run(write_sysctls, values)
            ctx.log.info("set %d sysctl(s) in %s", len(values), ctx.netns_path)

        if ctx.config.mtu is not None:
            async with netns.netlink() as ipr:
                index = await link_index(ipr, ctx.ifname)
                await ipr.link("set", index=index, mtu=ctx.config.mtu)
            # Keep the result truthful: the interface entry now has the new MTU.
            for iface in prev.interfaces:
                if iface.name == ctx.ifname and iface.sandbox:
                    iface.mtu = ctx.config.mtu
            ctx.log.info("set MTU of %s to %d", ctx.ifname, ctx.config.mtu)

        return prev  # converted back to the config's cniVersion by the SDK

    async def check(self, ctx: Context[TuningConfig]) -> None:
        netns = ctx.require_netns()  # CHECK always has a namespace
        wanted = {sysctl_path(k, ctx.ifname): v for k, v in ctx.config.sysctl.items()}
        actual = await netns.run(read_sysctls, list(wanted))
        for path, value in wanted.items():
            if actual[path] != value.strip():
                raise CNIError(
                    ErrorCode.INTERNAL, f"{path} is {actual[path]!r}, expected {value!r}"
                )
        if ctx.config.mtu is not None:
            async with netns.netlink() as ipr:
                index = await link_index(ipr, ctx.ifname)
                (link,) = await ipr.link("get", index=index)
                mtu = link.get("IFLA_MTU")
            if mtu != ctx.config.mtu:
                raise CNIError(
                    ErrorCode.INTERNAL, f"MTU of {ctx.ifname} is {mtu}, expected {ctx.config.mtu}"
                )

    # DEL: nothing to undo. The sysctls and the MTU belong to the container's namespace and
    # go away with it. (Go's tuning also restores values on DEL, for interfaces that outlive
    # the container; that needs state, see gc_status.py for a plugin that keeps some.)
