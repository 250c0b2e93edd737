"""Config models of the reference plugins (containernetworking/plugins), as their Go code reads
them.

The models follow release :data:`MODELS_RELEASE`. Fields and values added after the oldest
release covered carry the release that added them (:class:`~._gotypes.Since`), so a config
can be judged against an older release (Debian 12 ships 1.1.1): there, such a field is
ignored by the plugin.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from cnisdk._validate._reference._gotypes import (
    CheckContext,
    GoPluginConf,
    GoStruct,
    Problem,
    Release,
    Since,
    release_text,
)
from cnisdk._validate._reference._ipam import DHCP, HostLocal, Static
from cnisdk._validate._reference._main import (
    Bridge,
    Dummy,
    HostDevice,
    IPvlan,
    Loopback,
    Macvlan,
    Ptp,
    Tap,
    Vlan,
)
from cnisdk._validate._reference._meta import Bandwidth, Firewall, Portmap, Sbr, Tuning, Vrf
from cnisdk.spec._versions import ALL_VERSIONS, parse_version

__all__ = [
    "MODELS_RELEASE",
    "OLDEST_RELEASE",
    "REFERENCE_PLUGINS",
    "CheckContext",
    "GoPluginConf",
    "GoStruct",
    "Problem",
    "ReferencePlugin",
    "Release",
    "Since",
    "parse_release",
    "release_text",
    "spec_versions",
]

MODELS_RELEASE: Release = (1, 9, 1)
"""The containernetworking/plugins release the models follow."""
OLDEST_RELEASE: Release = (1, 0, 0)
"""The oldest release a config can be judged against."""


@dataclass(frozen=True)
class ReferencePlugin:
    """One plugin of containernetworking/plugins."""

    type: str
    kind: Literal["main", "ipam", "meta"]
    """``main`` creates the interface; ``ipam`` allocates addresses (its model is the ``ipam``
    object of a main plugin's entry); ``meta`` works on the previous plugin's result."""
    model: builtins.type[BaseModel]
    since: Release = OLDEST_RELEASE
    """The release that added the plugin."""

    @property
    def summary(self) -> str:
        """What the plugin does, in one line."""
        return (self.model.__doc__ or "").strip().split("\n\n", 1)[0].replace("\n", " ")

    @property
    def reads_ipam(self) -> bool:
        """Whether the plugin runs the IPAM plugin its entry names."""
        return self.kind == "main" and self.type != "loopback"


REFERENCE_PLUGINS: dict[str, ReferencePlugin] = {
    plugin.type: plugin
    for plugin in (
        ReferencePlugin("bridge", "main", Bridge),
        ReferencePlugin("ptp", "main", Ptp),
        ReferencePlugin("macvlan", "main", Macvlan),
        ReferencePlugin("ipvlan", "main", IPvlan),
        ReferencePlugin("vlan", "main", Vlan),
        ReferencePlugin("host-device", "main", HostDevice),
        ReferencePlugin("loopback", "main", Loopback),
        ReferencePlugin("dummy", "main", Dummy, since=(1, 2, 0)),
        ReferencePlugin("tap", "main", Tap, since=(1, 3, 0)),
        ReferencePlugin("host-local", "ipam", HostLocal),
        ReferencePlugin("static", "ipam", Static),
        ReferencePlugin("dhcp", "ipam", DHCP),
        ReferencePlugin("portmap", "meta", Portmap),
        ReferencePlugin("bandwidth", "meta", Bandwidth),
        ReferencePlugin("tuning", "meta", Tuning),
        ReferencePlugin("firewall", "meta", Firewall),
        ReferencePlugin("sbr", "meta", Sbr),
        ReferencePlugin("vrf", "meta", Vrf),
    )
}
"""Every reference plugin with a model, by type."""


def spec_versions(release: Release) -> tuple[str, ...]:
    """The config versions the plugins of ``release`` accept: 1.1.0 from v1.6.0 on (their cni
    library gained it then), up to 1.0.0 before."""
    newest = "1.1.0" if release >= (1, 6, 0) else "1.0.0"
    return tuple(v for v in ALL_VERSIONS if parse_version(v) <= parse_version(newest))


def parse_release(text: str) -> Release:
    """``1.1.1`` or ``v1.1.1`` as a release the models can judge against.

    :raises ValueError: not ``X.Y.Z``, or older than :data:`OLDEST_RELEASE`.
    """
    parts = text.removeprefix("v").split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"not a release number like 1.1.1: {text!r}")
    release = (int(parts[0]), int(parts[1]), int(parts[2]))
    if release < OLDEST_RELEASE:
        raise ValueError(f"the models cover {release_text(OLDEST_RELEASE)} and later, not {text!r}")
    return release
