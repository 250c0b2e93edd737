"""The meta (chained) plugins of containernetworking/plugins, as config models: portmap,
bandwidth, tuning, firewall, sbr and vrf."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from cnisdk._validate._reference._gotypes import (
    MTU,
    CheckContext,
    GoInt,
    GoMAC,
    GoPluginConf,
    GoUint32,
    GoUint64,
    IfName,
    Problem,
    Since,
)

__all__ = ["Bandwidth", "Firewall", "Portmap", "Sbr", "Tuning", "Vrf"]


class Portmap(GoPluginConf):
    """Forward host ports to the container (the runtime passes the mappings as capability
    arguments, "portMappings")."""

    backend: Annotated[Literal["iptables", "nftables"] | None, Since((1, 6, 0))] = Field(
        default=None,
        description="The rule backend, iptables or nftables; default: iptables, unless only "
        "nftables is available.",
    )
    snat: bool = Field(
        default=True, description="Masquerade hairpin and localhost traffic to mapped ports."
    )
    conditions_v4: list[str] | None = Field(
        default=None,
        alias="conditionsV4",
        description="Extra match conditions for IPv4 rules, in the backend's own syntax.",
    )
    conditions_v6: list[str] | None = Field(
        default=None,
        alias="conditionsV6",
        description="Extra match conditions for IPv6 rules, in the backend's own syntax.",
    )
    masq_all: Annotated[bool, Since((1, 2, 0))] = Field(
        default=False,
        alias="masqAll",
        description="With snat: masquerade all traffic to mapped ports, not only hairpin and "
        "localhost traffic.",
    )
    mark_masq_bit: Annotated[int, Field(ge=0, le=31)] | None = Field(
        default=None,
        alias="markMasqBit",
        description="The mark bit for masquerading (0-31; default 13; iptables backend only).",
    )
    external_set_mark_chain: str | None = Field(
        default=None,
        alias="externalSetMarkChain",
        description="An existing chain that sets the masquerade mark (Kubernetes' "
        "KUBE-MARK-MASQ); not with markMasqBit; iptables backend only.",
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        if "portMappings" not in ctx.capabilities:
            yield Problem(
                "CV312",
                ("capabilities",),
                'portmap maps nothing without "capabilities": {"portMappings": true}: the '
                "runtime passes the mappings only to entries that enable the capability",
            )
        if self.mark_masq_bit is not None and self.external_set_mark_chain is not None:
            yield Problem(
                "CV311",
                ("markMasqBit",),
                "Cannot specify externalSetMarkChain and markMasqBit: keep one of them",
            )
        if ctx.release < (1, 6, 0):
            return
        options: dict[str, list[str]] = {"iptables": [], "nftables": []}
        if self.external_set_mark_chain is not None:
            options["iptables"].append("externalSetMarkChain")
        for key, conditions in (("conditionsV4", self.conditions_v4), ("conditionsV6",
                                self.conditions_v6)):  # fmt: skip
            if conditions and conditions[0]:
                family = "iptables" if conditions[0][0] in "-!" else "nftables"
                options[family].append(key)
        chosen = self.backend
        if chosen is None and options["iptables"] and options["nftables"]:
            chosen = "iptables"
        elif chosen is None and options["nftables"]:
            yield Problem(
                "CV311",
                (options["nftables"][0],),
                "with no backend set, portmap uses iptables wherever it exists and then refuses "
                f'nftables-specific options {options["nftables"]}: set "backend": "nftables"',
            )
            return
        if chosen is not None:
            wrong = "nftables" if chosen == "iptables" else "iptables"
            if options[wrong]:
                yield Problem(
                    "CV311",
                    (options[wrong][0],),
                    f"{chosen} backend was requested but configuration contains {wrong}-specific "
                    f"options {options[wrong]}",
                )
        if chosen == "nftables" and self.mark_masq_bit is not None:
            yield Problem(
                "CV312",
                ("markMasqBit",),
                "the nftables backend ignores markMasqBit (it is for iptables only)",
            )


class Bandwidth(GoPluginConf):
    """Limit the container's traffic with a token bucket filter (rates in bits per second)."""

    ingress_rate: GoUint64 = Field(
        default=0, alias="ingressRate", description="Rate limit of traffic into the container."
    )
    ingress_burst: GoUint64 = Field(
        default=0, alias="ingressBurst", description="Burst size (bits) of traffic into it."
    )
    egress_rate: GoUint64 = Field(
        default=0, alias="egressRate", description="Rate limit of traffic from the container."
    )
    egress_burst: GoUint64 = Field(
        default=0, alias="egressBurst", description="Burst size (bits) of traffic from it."
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        rates = ("ingress_rate", "ingress_burst", "egress_rate", "egress_burst")
        static = any(key in self.model_fields_set for key in rates)
        if static and "bandwidth" in ctx.capabilities:
            yield Problem(
                "CV312",
                ("capabilities", "bandwidth"),
                "bandwidth uses the rates written here and ignores the runtime's (the pod's "
                "bandwidth annotations): remove the rates or the capability",
            )
        if not static and "bandwidth" not in ctx.capabilities:
            yield Problem(
                "CV312",
                ("capabilities",),
                'bandwidth limits nothing without rates or "capabilities": {"bandwidth": true}',
            )
        for direction in ("ingress", "egress"):
            rate = getattr(self, f"{direction}_rate")
            burst = getattr(self, f"{direction}_burst")
            if burst == 0 and rate != 0:
                yield Problem(
                    "CV311", (f"{direction}Burst",), "if rate is set, burst must also be set"
                )
            elif rate == 0 and burst != 0:
                yield Problem(
                    "CV311", (f"{direction}Rate",), "if burst is set, rate must also be set"
                )
            elif burst // 8 >= (1 << 32) - 1:
                yield Problem("CV311", (f"{direction}Burst",), "burst cannot be more than 4GB")


def _sysctl_file(key: str) -> str:
    """Where tuning writes a sysctl key (Go's ``getSysctlFilename``, for interface eth0)."""
    path = key.replace(".", "/").replace("IFNAME", "eth0", 1)
    return posixpath.normpath(posixpath.join("/proc/sys", path))


class Tuning(GoPluginConf):
    """Change sysctls and link settings of the container's interface."""

    data_dir: str = Field(
        default="",
        alias="dataDir",
        description="Where the settings to restore at DEL are kept; default /run/cni/tuning.",
    )
    sysctl: dict[str, str] | None = Field(
        default=None,
        description="Sysctls to set in the container (net.* only; IFNAME stands for the "
        "interface name), values as strings.",
    )
    mac: GoMAC = Field(default="", description="The MAC address to give the interface.")
    promisc: bool = Field(default=False, description="Turn promiscuous mode on.")
    mtu: MTU = Field(default=0, description="The MTU to give the interface; 0 leaves it.")
    tx_q_len: Annotated[GoInt | None, Since((1, 4, 0))] = Field(
        default=None, alias="txQLen", description="The transmit queue length of the interface."
    )
    allmulti: bool | None = Field(default=None, description="Turn all-multicast mode on or off.")

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        for key in self.sysctl or {}:
            if not _sysctl_file(key).startswith("/proc/sys/net/"):
                yield Problem(
                    "CV311",
                    ("sysctl", key),
                    f"invalid net sysctl key: {key!r}: tuning sets net.* sysctls only",
                )
            if ("sysctl", key) in ctx.duplicated and ctx.release >= (1, 2, 0):
                yield Problem(
                    "CV311",
                    ("sysctl", key),
                    "duplicated sysctl keys are not allowed: keep one",
                )


class Firewall(GoPluginConf):
    """Allow the container's traffic through the host's firewall (iptables or firewalld)."""

    backend: str = Field(
        default="",
        description="iptables or firewalld; default: firewalld when it runs, else iptables.",
    )
    iptables_admin_chain_name: str = Field(
        default="",
        alias="iptablesAdminChainName",
        description="The chain for the administrator's own rules; default CNI-ADMIN.",
    )
    firewalld_zone: str = Field(
        default="trusted",
        alias="firewalldZone",
        description="The firewalld zone for the container's addresses.",
    )
    ingress_policy: str = Field(
        default="open",
        alias="ingressPolicy",
        description="open (accept all), same-bridge (only from the same bridge) or isolated "
        "(from nowhere).",
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        if self.backend not in ("", "iptables", "firewalld"):
            yield Problem(
                "CV312",
                ("backend",),
                f"unknown backend {self.backend!r}: firewall silently uses firewalld when it "
                "runs and iptables otherwise; write iptables or firewalld",
            )
        if len(self.iptables_admin_chain_name) > 28:
            yield Problem(
                "CV311",
                ("iptablesAdminChainName",),
                "iptables refuses chain names longer than 28 characters",
            )
        policies = ["", "open", "same-bridge"]
        if ctx.release >= (1, 7, 0):
            policies.append("isolated")
        if self.ingress_policy not in policies:
            later = " (isolated needs v1.7.0)" if self.ingress_policy == "isolated" else ""
            yield Problem(
                "CV311" if later == "" else "CV313",
                ("ingressPolicy",),
                f"unknown ingress policy: {self.ingress_policy!r}{later}; use open, "
                "same-bridge or isolated",
            )


class Sbr(GoPluginConf):
    """Source-based routing: a routing table per interface, chosen by source address."""

    table: Annotated[GoInt | None, Since((1, 6, 0))] = Field(
        default=None,
        description="Use this routing table for all the interface's routes instead of a new one.",
    )


class Vrf(GoPluginConf):
    """Put the container's interface into a VRF in the container."""

    missing = {"vrfname": "configuration is expected to have a valid vrf name"}
    vrfname: IfName = Field(description="The name of the VRF to create or join (required).")
    table: GoUint32 = Field(
        default=0, description="The routing table of the VRF; 0 picks a free one."
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        if not self.vrfname:
            yield Problem("CV311", ("vrfname",), self.missing["vrfname"])
