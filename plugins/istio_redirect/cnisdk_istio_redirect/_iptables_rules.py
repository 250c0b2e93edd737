"""The iptables rules Istio's CNI plugin installs for a sidecar pod, as pure data and text.

Everything here is free of I/O: it turns a :class:`~cnisdk_istio_redirect._redirect.RedirectSpec`
into the ``iptables-restore`` blob istio-iptables would feed to ``iptables-restore --noflush``
(one per IP family). The rule order and the exact option spelling follow Istio's golden files
(``cni/pkg/plugin/testdata/*.golden``), so a pod redirected by this plugin is
indistinguishable from one redirected by istio-cni.

Each rule is written once. What differs between IPv4 and IPv6 comes from
:data:`ADDRESSES` (Istio's ``IPVersionSpecific`` placeholder), what exists once per proxy
owner from :func:`proxy_owners` (Istio's loops over the UID and GID lists); the nftables
rules use the same two helpers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._redirect import CAPTURE_ALL, RedirectSpec

__all__ = [
    "ADDRESSES",
    "BUILTIN_CHAINS",
    "TABLES",
    "Family",
    "FamilyAddresses",
    "IptRule",
    "build_rules",
    "chains_in_order",
    "final_chain_rules",
    "inbound_ports",
    "proxy_owners",
    "render_iptables",
    "split_cidrs",
]

Family = Literal[4, 6]
Table = Literal["mangle", "nat", "raw"]

TABLES: tuple[Table, ...] = ("mangle", "nat", "raw")
"""The tables Istio touches, in the order ``iptables-restore`` receives them (sorted by name)."""

BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

# Istio's own chain names; everything we create starts with this prefix, which is also how
# cleanup recognises our chains in iptables-save output.
CHAIN_PREFIX = "ISTIO_"
INBOUND = "ISTIO_INBOUND"
REDIRECT = "ISTIO_REDIRECT"
IN_REDIRECT = "ISTIO_IN_REDIRECT"
OUTPUT = "ISTIO_OUTPUT"
OUTPUT_DNS = "ISTIO_OUTPUT_DNS"
DIVERT = "ISTIO_DIVERT"
TPROXY = "ISTIO_TPROXY"
DROP = "ISTIO_DROP"

# Mark Envoy's outbound->inbound hairpin traffic on lo carries in TPROXY mode (Istio's
# constants.OutboundMark; not configurable).
OUTBOUND_MARK = 1338
DNS_PORT = 53
# Conntrack zones that keep agent<->upstream and app<->agent DNS flows apart.
UPSTREAM_DNS_ZONE = 1
CLIENT_DNS_ZONE = 2


@dataclass(frozen=True)
class FamilyAddresses:
    """The values a rule names that differ between IPv4 and IPv6."""

    family: Family
    nft_ip: str
    """nft's keyword for the address header: ``ip`` or ``ip6``."""
    loopback: str
    """Istio's ``HostIPv4LoopbackCidr`` default and its IPv6 twin; the CNI never changes it."""
    passthrough: str
    """Envoy binds its inbound passthrough connections to this source (127.0.0.6 / ::6)."""
    default_route: str
    """Every destination, for the TPROXY ``local`` route."""


ADDRESSES: dict[Family, FamilyAddresses] = {
    4: FamilyAddresses(4, "ip", "127.0.0.1/32", "127.0.0.6/32", "0.0.0.0/0"),
    6: FamilyAddresses(6, "ip6", "::1/128", "::6/128", "::/0"),
}


def proxy_owners(spec: RedirectSpec) -> tuple[tuple[Literal["uid", "gid"], int], ...]:
    """The proxy's owner matches, UID first: Istio adds each owner rule per UID, then per GID.

    :param spec: what to redirect.
    :returns: ``(("uid", proxy_uid), ("gid", proxy_gid))``.
    """
    return (("uid", spec.proxy_uid), ("gid", spec.proxy_gid))


@dataclass(frozen=True)
class IptRule:
    """One iptables command: ``-A chain args`` or ``-I chain position args`` in ``table``."""

    table: Table
    chain: str
    args: tuple[str, ...]
    position: int | None = None
    """1-based insert position (``-I``); ``None`` appends (``-A``)."""

    def restore_line(self) -> str:
        """The line as it appears in an ``iptables-restore`` blob.

        :returns: ``-A CHAIN ...`` or ``-I CHAIN N ...``.
        """
        if self.position is None:
            head = ["-A", self.chain]
        else:
            head = ["-I", self.chain, str(self.position)]
        return " ".join([*head, *self.args])

    @property
    def jump(self) -> str | None:
        """The ``-j`` target when it is the last word (how Istio spots jump-only chains)."""
        if len(self.args) >= 2 and self.args[-2] == "-j":
            return self.args[-1]
        return None


@dataclass(frozen=True)
class _Ranges:
    wildcard: bool
    cidrs: tuple[str, ...]
    has_loopback: bool


def split_cidrs(values: Sequence[str]) -> dict[Family, _Ranges]:
    """Split an annotation CIDR list by family, as Istio's ``SeparateV4V6`` does.

    ``*`` anywhere makes both families wildcards. Host bits are kept as written (Go's
    ``netip.Prefix.String()`` does not mask either); a bare address gets a full-length prefix.

    :param values: CIDRs from the spec.
    :returns: per family: wildcard flag, CIDR strings, and whether any is a loopback address.
    :raises ValueError: for a value that is not an address or CIDR.
    """
    if CAPTURE_ALL in values:
        every = _Ranges(wildcard=True, cidrs=(), has_loopback=False)
        return {4: every, 6: every}
    found: dict[Family, list[str]] = {4: [], 6: []}
    loop: dict[Family, bool] = {4: False, 6: False}
    for value in values:
        iface = ipaddress.ip_interface(value.strip())
        fam: Family = 4 if iface.version == 4 else 6
        found[fam].append(str(iface))
        loop[fam] = loop[fam] or iface.ip.is_loopback
    return {
        fam: _Ranges(wildcard=False, cidrs=tuple(found[fam]), has_loopback=loop[fam])
        for fam in (4, 6)
    }


def inbound_ports(spec: RedirectSpec) -> tuple[tuple[int, ...], tuple[str | None, ...]]:
    """Which inbound ports return early and which are captured, as Istio decides it.

    With ``*`` every port not excluded is captured; an explicit include list captures those
    ports and ignores the exclude list; an empty one captures nothing.

    :param spec: what to redirect.
    :returns: ``(returned, captured)``; ``None`` in ``captured`` stands for every port.
    """
    include = spec.include_inbound_ports
    if CAPTURE_ALL in include:
        return spec.exclude_inbound_ports, (None,)
    return (), tuple(include)


class _Builder:
    """Collects rules in insertion order; mirrors the shape of Istio's rule builder.

    A rule is given as its iptables words in one string; the words are what the kernel and
    ``iptables-restore`` see, so splitting on whitespace is faithful.
    """

    def __init__(self) -> None:
        self.rules: list[IptRule] = []

    def append(self, table: Table, chain: str, rule: str) -> None:
        self.rules.append(IptRule(table, chain, tuple(rule.split())))

    def insert(self, table: Table, chain: str, position: int, rule: str) -> None:
        self.rules.append(IptRule(table, chain, tuple(rule.split()), position))


def build_rules(spec: RedirectSpec, family: Family) -> list[IptRule]:
    """The rules istio-iptables generates for ``family``, in insertion order.

    :param spec: what to redirect.
    :param family: 4 or 6; 6 swaps the loopback/passthrough addresses and keeps only IPv6 CIDRs.
    :returns: the rules, in the order Istio adds them.
    :raises ValueError: for a wildcard in ``exclude_outbound_cidrs`` or a malformed CIDR.
    """
    if CAPTURE_ALL in spec.exclude_outbound_cidrs:
        raise ValueError("'*' is not allowed in excludeOutboundIPRanges")
    tproxy = spec.mode == "TPROXY"
    addr = ADDRESSES[family]
    mark = spec.tproxy_mark
    include = split_cidrs(spec.include_outbound_cidrs)
    exclude = split_cidrs(spec.exclude_outbound_cidrs)[family]
    # Istio checks both families here, so a v4 loopback include also changes the v6 rules.
    include_has_loopback = include[4].has_loopback or include[6].has_loopback
    b = _Builder()

    for table in ("nat", "mangle") if tproxy else ("nat",):
        for nic in spec.exclude_interfaces:
            b.append(table, "PREROUTING", f"-i {nic} -j RETURN")
            b.append(table, "OUTPUT", f"-o {nic} -j RETURN")
    for nic in spec.reroute_virtual_interfaces:
        b.insert("nat", "PREROUTING", 1, f"-i {nic} -j RETURN")

    if spec.invalid_drop:
        b.append("mangle", "PREROUTING", f"-m conntrack --ctstate INVALID -j {DROP}")
        b.append("mangle", DROP, "-j DROP")

    b.append("nat", INBOUND, f"-p tcp --dport {spec.inbound_tunnel_port} -j RETURN")
    b.append("nat", REDIRECT, f"-p tcp -j REDIRECT --to-ports {spec.outbound_port}")
    b.append("nat", IN_REDIRECT, f"-p tcp -j REDIRECT --to-ports {spec.inbound_port}")

    _inbound(b, spec, addr)

    b.append("nat", "OUTPUT", f"-j {OUTPUT}")
    for port in spec.exclude_outbound_ports:
        for proto in ("tcp", "udp"):
            b.append("nat", OUTPUT, f"-p {proto} --dport {port} -j RETURN")
    b.append("nat", OUTPUT, f"-o lo -s {addr.passthrough} -j RETURN")

    tunnel = spec.inbound_tunnel_port
    for kind, owner in proxy_owners(spec):
        match = f"--{kind}-owner {owner}"
        # Proxy traffic to its own pod IP via lo (app -> VIP -> Envoy -> same pod) goes
        # inbound. Istio exempts DNS on the UID rule only; the GID rule keeps the plain form.
        if spec.dns_capture and kind == "uid":
            ports = f"-m multiport ! --dports {DNS_PORT},{tunnel}"
        else:
            ports = f"! --dport {tunnel}"
        b.append(
            "nat",
            OUTPUT,
            f"-o lo ! -d {addr.loopback} -p tcp {ports} -m owner {match} -j {IN_REDIRECT}",
        )
        if not include_has_loopback:
            not_dns = f"-p tcp ! --dport {DNS_PORT} " if spec.dns_capture else ""
            b.append("nat", OUTPUT, f"-o lo {not_dns}-m owner ! {match} -j RETURN")
        b.append("nat", OUTPUT, f"-m owner {match} -j RETURN")

    if spec.dns_capture:
        _dns(b, spec)

    b.append("nat", OUTPUT, f"-d {addr.loopback} -j RETURN")
    for cidr in exclude.cidrs:
        b.append("nat", OUTPUT, f"-d {cidr} -j RETURN")
    for port in spec.include_outbound_ports:
        b.append("nat", OUTPUT, f"-p tcp --dport {port} -j {REDIRECT}")
    ranges = include[family]
    if ranges.wildcard:
        b.append("nat", OUTPUT, f"-j {REDIRECT}")
        for nic in spec.reroute_virtual_interfaces:
            b.insert("nat", "PREROUTING", 1, f"-i {nic} -j {REDIRECT}")
    else:
        for cidr in ranges.cidrs:
            for nic in spec.reroute_virtual_interfaces:
                b.insert("nat", "PREROUTING", 1, f"-i {nic} -d {cidr} -j {REDIRECT}")
            b.append("nat", OUTPUT, f"-d {cidr} -j {REDIRECT}")

    if tproxy:
        b.append("mangle", "PREROUTING", f"-p tcp -m mark --mark {mark} -j CONNMARK --save-mark")
        b.append("mangle", "OUTPUT", f"-p tcp -o lo -m mark --mark {mark} -j RETURN")
        for kind, owner in proxy_owners(spec):
            b.append(
                "mangle",
                "OUTPUT",
                f"! -d {addr.loopback} -p tcp -o lo -m owner --{kind}-owner {owner}"
                f" -j MARK --set-mark {OUTBOUND_MARK}",
            )
        b.append("mangle", "OUTPUT", f"-p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark")
        b.insert("mangle", INBOUND, 1, f"-p tcp -m mark --mark {mark} -j RETURN")
        b.insert("mangle", INBOUND, 2, f"-p tcp -s {addr.passthrough} -i lo -j RETURN")
        b.insert("mangle", INBOUND, 3, f"-p tcp -i lo -m mark ! --mark {OUTBOUND_MARK} -j RETURN")
    return b.rules


def _inbound(b: _Builder, spec: RedirectSpec, addr: FamilyAddresses) -> None:
    returned, captured = inbound_ports(spec)
    if not captured:
        return  # "" = no inbound capture at all, not even the PREROUTING jump
    tproxy = spec.mode == "TPROXY"
    table: Table = "mangle" if tproxy else "nat"
    if tproxy:
        mark = spec.tproxy_mark
        b.append("mangle", DIVERT, f"-j MARK --set-mark {mark}")
        b.append("mangle", DIVERT, "-j ACCEPT")
        b.append(
            "mangle",
            TPROXY,
            f"! -d {addr.loopback} -p tcp"
            f" -j TPROXY --tproxy-mark {mark}/0xffffffff --on-port {spec.inbound_port}",
        )
    b.append(table, "PREROUTING", f"-p tcp -j {INBOUND}")
    for skipped in returned:
        b.append(table, INBOUND, f"-p tcp --dport {skipped} -j RETURN")
    for port in captured:
        ports = "" if port is None else f"--dport {port} "
        if tproxy:
            established = "-m conntrack --ctstate RELATED,ESTABLISHED"
            b.append("mangle", INBOUND, f"-p tcp {ports}{established} -j {DIVERT}")
            b.append("mangle", INBOUND, f"-p tcp {ports}-j {TPROXY}")
        else:
            b.append("nat", INBOUND, f"-p tcp {ports}-j {IN_REDIRECT}")


def _dns(b: _Builder, spec: RedirectSpec) -> None:
    # The CNI always captures all DNS (no resolv.conf server list), so both families get the
    # same rules. --to-ports rather than Istio's --to-port on UDP: older iptables-nft rejects
    # the singular spelling (istio#23279) and both mean the same.
    b.append("raw", "OUTPUT", f"-j {OUTPUT_DNS}")
    b.append("nat", OUTPUT, f"-j {OUTPUT_DNS}")
    for proto in ("tcp", "udp"):
        b.append(
            "nat",
            OUTPUT_DNS,
            f"-p {proto} --dport {DNS_PORT} -j REDIRECT --to-ports {spec.dns_port}",
        )
    for kind, owner in proxy_owners(spec):
        match = f"-m owner --{kind}-owner {owner} -j CT --zone"
        b.append("raw", OUTPUT_DNS, f"-p udp --dport {DNS_PORT} {match} {UPSTREAM_DNS_ZONE}")
        b.append("raw", OUTPUT_DNS, f"-p udp --sport {spec.dns_port} {match} {CLIENT_DNS_ZONE}")
    b.append("raw", "PREROUTING", f"-j {INBOUND}")
    b.append("raw", OUTPUT_DNS, f"-p udp --dport {DNS_PORT} -j CT --zone {CLIENT_DNS_ZONE}")
    b.append("raw", INBOUND, f"-p udp --sport {DNS_PORT} -j CT --zone {UPSTREAM_DNS_ZONE}")


def _is_custom(chain: str) -> bool:
    return chain not in BUILTIN_CHAINS and chain.startswith(CHAIN_PREFIX)


def chains_in_order(rules: Iterable[IptRule]) -> dict[Table, list[str]]:
    """Non-builtin chains per table in Istio's ``-N`` order.

    :param rules: rules in insertion order.
    :returns: per table, chains in first-use order followed by jump-only targets.
    """
    rules = list(rules)
    out: dict[Table, list[str]] = {t: [] for t in TABLES}
    for r in rules:
        if _is_custom(r.chain) and r.chain not in out[r.table]:
            out[r.table].append(r.chain)
    for r in rules:
        target = r.jump
        if target is not None and _is_custom(target) and target not in out[r.table]:
            out[r.table].append(target)
    return out


def render_iptables(spec: RedirectSpec, family: Family) -> str:
    """The ``iptables-restore`` text Istio generates for one IP family.

    Tables come sorted (mangle, nat, raw) and empty ones are dropped; each has ``-N`` for every
    non-builtin chain in first-use order (jump-only targets last), the rules in insertion order,
    then ``COMMIT``. There are no ``:CHAIN`` lines, so under ``--noflush`` the blob fails if a
    chain already exists: callers must clean up first (see ``_apply``).

    :param spec: what to redirect.
    :param family: 4 for ``iptables-restore``, 6 for ``ip6tables-restore``.
    :returns: the restore text, newline-terminated.
    """
    rules = build_rules(spec, family)
    chains = chains_in_order(rules)
    lines: list[str] = []
    for table in TABLES:
        body = [r.restore_line() for r in rules if r.table == table]
        if not body:
            continue
        lines.append(f"* {table}")
        lines.extend(f"-N {c}" for c in chains[table])
        lines.extend(body)
        lines.append("COMMIT")
    return "".join(line + "\n" for line in lines)


def final_chain_rules(rules: Sequence[IptRule]) -> dict[tuple[str, str], list[IptRule]]:
    """Simulate ``-A``/``-I`` to get each chain's final rule order.

    Builtin chains only get the rules we add (other rules in them are not ours to judge).

    :param rules: rules in insertion order.
    :returns: ``(table, chain)`` -> rules in the order the kernel will hold them.
    """
    out: dict[tuple[str, str], list[IptRule]] = {}
    for table, chains in chains_in_order(rules).items():
        for c in chains:
            out[(table, c)] = []
    for r in rules:
        chain = out.setdefault((r.table, r.chain), [])
        if r.position is None:
            chain.append(r)
        else:
            chain.insert(r.position - 1, r)
    return out
