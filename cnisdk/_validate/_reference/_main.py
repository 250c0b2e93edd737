"""The main (interface-creating) plugins of containernetworking/plugins, as config models.

Each model lists the fields the Go plugin's ``NetConf`` struct decodes, with the types Go
decodes them into, and ``problems`` lists what the plugin refuses at ADD before (or instead
of) touching the node. The checks that need the node (does the master interface exist, its
MTU) are not made here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from cnisdk._validate._reference._gotypes import (
    MTU,
    CheckContext,
    GoInt,
    GoMAC,
    GoPluginConf,
    GoStruct,
    GoUint32,
    IfName,
    Problem,
    Since,
)

__all__ = [
    "Bridge",
    "Dummy",
    "HostDevice",
    "IPvlan",
    "Loopback",
    "Macvlan",
    "Ptp",
    "Tap",
    "Vlan",
]


_MASTER_DOC = (
    "The host interface to create the link on; empty means the interface of the default route."
)
_LINK_IN_CONTAINER_DOC = (
    "Whether the master interface is in the container's network namespace instead of the host's."
)
_MTU_DOC = "The MTU of the interface; 0 leaves the kernel's default."


def _ip_masq() -> Any:
    return Field(
        default=False,
        alias="ipMasq",
        description="Masquerade traffic from this network that leaves it (on the host).",
    )


def _ip_masq_backend() -> Any:
    return Field(
        default=None,
        alias="ipMasqBackend",
        description="How ipMasq is done: iptables or nftables (default: iptables, unless only "
        "nftables is available).",
    )


def _masq_backend_problems(conf: Ptp | Bridge) -> Iterator[Problem]:
    backend = conf.ip_masq_backend
    if backend is None:
        return
    if not conf.ip_masq:
        yield Problem(
            "CV312",
            ("ipMasqBackend",),
            "ipMasqBackend has no effect while ipMasq is false; remove it or set ipMasq",
        )
    elif backend not in ("iptables", "nftables"):
        yield Problem(
            "CV311",
            ("ipMasqBackend",),
            f"unknown ipmasq backend {backend!r}: write iptables or nftables",
        )


class VlanTrunk(GoStruct):
    """One entry of bridge's vlanTrunk: a single VLAN id, or a range from minID to maxID."""

    min_id: GoInt | None = Field(
        default=None, alias="minID", description="First VLAN id of a range."
    )
    max_id: GoInt | None = Field(
        default=None, alias="maxID", description="Last VLAN id of a range."
    )
    id: GoInt | None = Field(default=None, description="A single VLAN id.")

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        for key, value in (("minID", self.min_id), ("maxID", self.max_id), ("id", self.id)):
            if value is not None and not 0 < value <= 4094:
                yield Problem("CV311", (key,), f"incorrect trunk {key} parameter: use 1 to 4094")
        if (self.min_id is None) != (self.max_id is None):
            missing = "minID" if self.min_id is None else "maxID"
            yield Problem(
                "CV311",
                (missing,),
                f"minID and maxID should be configured simultaneously, {missing} is missing",
            )
        elif self.min_id is not None and self.max_id is not None and self.max_id < self.min_id:
            yield Problem("CV311", ("minID",), "minID is greater than maxID in trunk parameter")


class Bridge(GoPluginConf):
    """Create a Linux bridge on the host and connect the container to it with a veth pair."""

    bridge: IfName = Field(default="cni0", description="The name of the bridge to use or create.")
    is_gateway: bool = Field(
        default=False,
        alias="isGateway",
        description="Assign the gateway address of each IPAM result to the bridge.",
    )
    is_default_gateway: bool = Field(
        default=False,
        alias="isDefaultGateway",
        description="Like isGateway, and make the gateway the container's default route.",
    )
    force_address: bool = Field(
        default=False,
        alias="forceAddress",
        description="Replace the bridge's address when the network's gateway has changed.",
    )
    ip_masq: bool = _ip_masq()
    ip_masq_backend: Annotated[str | None, Since((1, 6, 0))] = _ip_masq_backend()
    mtu: MTU = Field(default=0, description="The MTU of the bridge and the veth pair; 0 leaves "
                     "the kernel's default.")  # fmt: skip
    hairpin_mode: bool = Field(
        default=False,
        alias="hairpinMode",
        description="Hairpin mode on the host end of the veth: a container can reach itself "
        "through a service address.",
    )
    promisc_mode: bool = Field(
        default=False, alias="promiscMode", description="Promiscuous mode on the bridge."
    )
    vlan: GoInt = Field(
        default=0, ge=0, le=4094, description="The VLAN tag of the container's port; 0 is none."
    )
    vlan_trunk: Annotated[list[VlanTrunk] | None, Since((1, 3, 0))] = Field(
        default=None, alias="vlanTrunk", description="VLANs allowed on the container's port."
    )
    preserve_default_vlan: Annotated[bool, Since((1, 3, 0))] = Field(
        default=False,
        alias="preserveDefaultVlan",
        description="Keep the default VLAN on the host end of the veth.",
    )
    macspoofchk: bool = Field(
        default=False,
        description="Drop traffic from the container whose source MAC is not its interface's.",
    )
    enabledad: bool = Field(
        default=False,
        description="Duplicate address detection on the container's end of the veth.",
    )
    disable_container_interface: Annotated[bool, Since((1, 4, 1))] = Field(
        default=False,
        alias="disableContainerInterface",
        description="Leave the container's interface down; IPAM cannot be used then.",
    )
    port_isolation: Annotated[bool, Since((1, 7, 0))] = Field(
        default=False,
        alias="portIsolation",
        description="Isolate the host end of the veth: containers reach only the host and the "
        "gateway.",
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        yield from _masq_backend_problems(self)
        if self.hairpin_mode and self.promisc_mode:
            yield Problem(
                "CV311",
                ("promiscMode",),
                "cannot set hairpin mode and promiscuous mode at the same time: drop one",
            )
        if (
            self.disable_container_interface
            and (self.ipam or {}).get("type")
            and ctx.release >= (1, 4, 1)
        ):
            yield Problem(
                "CV311",
                ("disableContainerInterface",),
                "cannot use IPAM when DisableContainerInterface flag is set: remove ipam.type "
                "or this flag",
            )


class Ptp(GoPluginConf):
    """Create a veth pair with a point-to-point link between the container and the host."""

    needs_ipam = "ptp needs an IPAM plugin for its addresses: set ipam.type (e.g. host-local)"
    ip_masq: bool = _ip_masq()
    ip_masq_backend: Annotated[str | None, Since((1, 6, 0))] = _ip_masq_backend()
    mtu: MTU = Field(default=0, description=_MTU_DOC)

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        yield from super().problems(ctx)
        yield from _masq_backend_problems(self)


class Macvlan(GoPluginConf):
    """Create a macvlan interface on a host interface and move it into the container."""

    master: IfName = Field(default="", description=_MASTER_DOC)
    mode: Literal["", "bridge", "private", "vepa", "passthru"] = Field(
        default="bridge", description="The macvlan mode: bridge, private, vepa or passthru."
    )
    mtu: MTU = Field(
        default=0, description="The MTU of the interface, at most the master's; 0 leaves the "
        "kernel's default.",
    )  # fmt: skip
    mac: GoMAC = Field(default="", description="The MAC address of the interface.")
    link_in_container: Annotated[bool, Since((1, 3, 0))] = Field(
        default=False, alias="linkInContainer", description=_LINK_IN_CONTAINER_DOC
    )
    bcqueuelen: Annotated[GoUint32, Since((1, 6, 0))] = Field(
        default=0, description="The broadcast queue length of the interface; 0 is the default."
    )


class IPvlan(GoPluginConf):
    """Create an ipvlan interface on a host interface and move it into the container."""

    master: IfName = Field(
        default="",
        description=_MASTER_DOC + " Chained after another plugin: the single interface of "
        "its result.",
    )
    mode: Literal["", "l2", "l3", "l3s"] = Field(
        default="l2", description="The ipvlan mode: l2, l3 or l3s."
    )
    mtu: MTU = Field(default=0, description=_MTU_DOC)
    link_in_container: Annotated[bool, Since((1, 3, 0))] = Field(
        default=False, alias="linkInContainer", description=_LINK_IN_CONTAINER_DOC
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        if ctx.position == 0 and not (self.ipam or {}).get("type"):
            yield Problem(
                "CV311",
                ("ipam", "type"),
                "ipvlan first in a chain needs an IPAM plugin for its addresses (only a chained "
                "ipvlan takes them from the previous result): set ipam.type",
            )


class Vlan(GoPluginConf):
    """Create a VLAN interface on a host interface and move it into the container."""

    needs_ipam = "vlan needs an IPAM plugin for its addresses: set ipam.type (e.g. host-local)"
    missing = {
        "master": '"master" field is required. It specifies the host interface name to '
        "create the VLAN for"
    }
    master: IfName = Field(description="The host interface to create the VLAN on (required).")
    vlan_id: GoInt = Field(
        default=0, ge=0, le=4094, alias="vlanId", description="The VLAN id (0 to 4094)."
    )
    mtu: MTU = Field(
        default=0, description="The MTU of the interface, at most the master's; 0 leaves the "
        "kernel's default.",
    )  # fmt: skip
    link_in_container: Annotated[bool, Since((1, 3, 0))] = Field(
        default=False, alias="linkInContainer", description=_LINK_IN_CONTAINER_DOC
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        yield from super().problems(ctx)
        if not self.master:
            yield Problem("CV311", ("master",), self.missing["master"])


class HostDevice(GoPluginConf):
    """Move an existing host interface into the container."""

    device: IfName = Field(default="", description="The name of the host interface to move.")
    hwaddr: GoMAC = Field(default="", description="The MAC address of the host interface to move.")
    kernelpath: str = Field(
        default="",
        description="The kernel device of the interface, a path under /sys/devices/.",
    )
    pci_bus_id: str = Field(
        default="", alias="pciBusID", description="The PCI address of the device, 0000:00:1f.6."
    )
    dpdk_mode: bool = Field(
        default=False,
        alias="DPDKMode",
        description="Set by the plugin itself from the device's driver; a value here is "
        "replaced when pciBusID is given.",
    )

    _SELECTORS: ClassVar[tuple[str, ...]] = ("device", "hwaddr", "kernelpath", "pciBusID")

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        given = [
            key
            for key, value in zip(
                self._SELECTORS,
                (self.device, self.hwaddr, self.kernelpath, self.pci_bus_id),
                strict=True,
            )
            if value
        ]
        if not given and "deviceID" not in ctx.capabilities:
            yield Problem(
                "CV311",
                ("device",),
                'specify either "device", "hwaddr", "kernelpath" or "pciBusID" (or enable the '
                '"deviceID" capability)',
            )
        for ignored in given[1:]:
            yield Problem(
                "CV312",
                (ignored,),
                f"host-device uses {given[0]} and ignores {ignored}: keep only one of them",
            )
        if self.kernelpath and not self.kernelpath.startswith("/sys/devices/"):
            yield Problem(
                "CV311",
                ("kernelpath",),
                f"kernel device path {self.kernelpath!r} must be absolute and begin with "
                "/sys/devices/",
            )


class Loopback(GoPluginConf):
    """Bring up the loopback interface of the container."""


class Dummy(GoPluginConf):
    """Create a dummy interface in the container."""

    needs_ipam = "dummy interface requires an IPAM configuration: set ipam.type"


class Tap(GoPluginConf):
    """Create a tap device in the container, optionally attached to a bridge there."""

    multi_queue: bool = Field(
        default=False, alias="multiQueue", description="Create a multiqueue tap device."
    )
    mtu: MTU = Field(default=0, description=_MTU_DOC)
    mac: GoMAC = Field(default="", description="The MAC address of the device.")
    owner: GoUint32 | None = Field(default=None, description="The user id owning the device.")
    group: GoUint32 | None = Field(default=None, description="The group id owning the device.")
    selinux_context: str = Field(
        default="",
        alias="selinuxContext",
        description="The SELinux context to create the device under.",
    )
    bridge: Annotated[IfName, Since((1, 4, 0))] = Field(
        default="",
        description="An existing bridge in the container to attach the device to.",
    )
