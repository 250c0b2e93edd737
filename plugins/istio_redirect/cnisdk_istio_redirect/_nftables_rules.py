"""Istio's native-nftables redirection (``native_nftables``, istio 1.27+) as one ``nft -f`` script.

Three ``inet`` tables (``istio-proxy-nat``, ``istio-proxy-mangle``, ``istio-proxy-raw``) cover
IPv4 and IPv6 at once. Each table present is written as ``add table`` + ``flush table`` followed
by its chains and rules, so loading the script twice gives the same ruleset: it is idempotent by
construction and ``nft -f`` applies it as one transaction. The rule texts and their order follow
``tools/istio-nftables/pkg/capture/testdata/*.golden``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._iptables_rules import DNS_PORT, OUTBOUND_MARK, split_cidrs
from ._redirect import CAPTURE_ALL, RedirectSpec

__all__ = ["NFT_TABLES", "NftRule", "build_nft_rules", "nft_tables_used", "render_nftables"]

NAT = "istio-proxy-nat"
MANGLE = "istio-proxy-mangle"
RAW = "istio-proxy-raw"
NFT_TABLES = (NAT, MANGLE, RAW)
"""Our tables, in the order the script writes them."""

# Chain declarations in the order Istio declares them; a chain is written only if it gets rules.
_CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    NAT: (
        ("prerouting", "{ type nat hook prerouting priority -100 ; }"),
        ("output", "{ type nat hook output priority -100 ; }"),
        ("istio-inbound", ""),
        ("istio-redirect", ""),
        ("istio-in-redirect", ""),
        ("istio-output", ""),
        ("istio-output-dns", ""),
    ),
    MANGLE: (
        ("prerouting", "{ type filter hook prerouting priority -150 ; }"),
        # A route chain, so a changed mark re-routes locally generated packets.
        ("output", "{ type route hook output priority -150 ; }"),
        ("istio-divert", ""),
        ("istio-tproxy", ""),
        ("istio-inbound", ""),
        ("istio-drop", ""),
    ),
    RAW: (
        ("prerouting", "{ type filter hook prerouting priority -300 ; }"),
        ("output", "{ type filter hook output priority -300 ; }"),
        ("istio-inbound", ""),
        ("istio-output-dns", ""),
    ),
}


@dataclass(frozen=True)
class NftRule:
    """One rule; ``index`` set means Istio asked for an insert at that 0-based position."""

    table: str
    chain: str
    text: str
    index: int | None = None


class _Builder:
    def __init__(self, ipv6: bool) -> None:
        self.ipv6 = ipv6
        self.rules: list[NftRule] = []

    def add(self, table: str, chain: str, *parts: str | int) -> None:
        self.rules.append(NftRule(table, chain, " ".join(str(p) for p in parts)))

    def add6(self, table: str, chain: str, *parts: str | int) -> None:
        if self.ipv6:
            self.add(table, chain, *parts)

    def insert(self, table: str, chain: str, index: int, *parts: str | int) -> None:
        self.rules.append(NftRule(table, chain, " ".join(str(p) for p in parts), index))

    def insert6(self, table: str, chain: str, index: int, *parts: str | int) -> None:
        if self.ipv6:
            self.insert(table, chain, index, *parts)


def build_nft_rules(spec: RedirectSpec, ipv6: bool) -> list[NftRule]:
    """The rules Istio's nftables mode generates, in insertion order (before index fix-up).

    :param spec: what to redirect.
    :param ipv6: add the ``ip6`` twins of address-specific rules (Istio's ``EnableIPv6``).
    :returns: the rules.
    :raises ValueError: for a wildcard in ``exclude_outbound_cidrs`` or a malformed CIDR.
    """
    if CAPTURE_ALL in spec.exclude_outbound_cidrs:
        raise ValueError("'*' is not allowed in excludeOutboundIPRanges")
    tproxy = spec.mode == "TPROXY"
    uid, gid, mark = spec.proxy_uid, spec.proxy_gid, spec.tproxy_mark
    include = split_cidrs(spec.include_outbound_cidrs)
    exclude = split_cidrs(spec.exclude_outbound_cidrs)
    has_loopback = include[4].has_loopback or include[6].has_loopback
    b = _Builder(ipv6)
    c = "counter"

    for nic in spec.exclude_interfaces:
        b.add(NAT, "prerouting", "iifname", nic, c, "return")
        b.add(NAT, "output", "oifname", nic, c, "return")
    if tproxy:
        for nic in spec.exclude_interfaces:
            b.add(MANGLE, "prerouting", "iifname", nic, c, "return")
            b.add(MANGLE, "output", "oifname", nic, c, "return")
    for nic in spec.reroute_virtual_interfaces:
        b.insert(NAT, "prerouting", 0, "iifname", nic, c, "return")

    if spec.invalid_drop:
        b.add(
            MANGLE, "prerouting", "meta l4proto tcp", "ct state", "invalid", c, "jump", "istio-drop"
        )
        b.add(MANGLE, "istio-drop", c, "drop")

    b.add(
        NAT, "istio-inbound", "meta l4proto tcp", "tcp dport", spec.inbound_tunnel_port, c, "return"
    )
    b.add(NAT, "istio-redirect", "meta l4proto tcp", c, "redirect to", f":{spec.outbound_port}")
    b.add(NAT, "istio-in-redirect", "meta l4proto tcp", c, "redirect to", f":{spec.inbound_port}")

    _inbound(b, spec)

    b.add(NAT, "output", c, "jump", "istio-output")
    for port in spec.exclude_outbound_ports:
        b.add(NAT, "istio-output", "tcp dport", port, c, "return")
        b.add(NAT, "istio-output", "udp dport", port, c, "return")
    b.add(NAT, "istio-output", "oifname", "lo", "ip saddr", "127.0.0.6/32", c, "return")
    b.add6(NAT, "istio-output", "oifname", "lo", "ip6 saddr", "::6/128", c, "return")

    tunnel = spec.inbound_tunnel_port
    for key, owner in (("skuid", uid), ("skgid", gid)):
        # Same uid-only DNS asymmetry as the iptables rules.
        ports = f"{{ {DNS_PORT}, {tunnel} }}" if spec.dns_capture and key == "skuid" else tunnel
        b.add(
            NAT,
            "istio-output",
            "oifname",
            "lo",
            "meta l4proto tcp",
            "ip daddr",
            "!=",
            "127.0.0.1/32",
            "tcp dport",
            "!=",
            ports,
            key,
            owner,
            c,
            "jump",
            "istio-in-redirect",
        )
        b.add6(
            NAT,
            "istio-output",
            "oifname",
            "lo",
            "meta l4proto tcp",
            "ip6 daddr",
            "!=",
            "::1/128",
            "tcp dport",
            "!=",
            ports,
            key,
            owner,
            c,
            "jump",
            "istio-in-redirect",
        )
        if not has_loopback:
            if spec.dns_capture:
                b.add(
                    NAT,
                    "istio-output",
                    "oifname",
                    "lo",
                    "meta l4proto tcp",
                    "tcp dport",
                    "!=",
                    DNS_PORT,
                    key,
                    "!=",
                    owner,
                    c,
                    "return",
                )
            else:
                b.add(NAT, "istio-output", "oifname", "lo", key, "!=", owner, c, "return")
        b.add(NAT, "istio-output", key, owner, c, "return")

    if spec.dns_capture:
        _dns(b, spec)

    b.add(NAT, "istio-output", "ip daddr", "127.0.0.1/32", c, "return")
    b.add6(NAT, "istio-output", "ip6 daddr", "::1/128", c, "return")
    for cidr in exclude[4].cidrs:
        b.add(NAT, "istio-output", "ip daddr", cidr, c, "return")
    for cidr in exclude[6].cidrs:
        b.add6(NAT, "istio-output", "ip6 daddr", cidr, c, "return")
    for port in spec.include_outbound_ports:
        b.add(NAT, "istio-output", "tcp dport", port, c, "jump", "istio-redirect")
    if include[4].wildcard:
        b.add(NAT, "istio-output", c, "jump", "istio-redirect")
        for nic in spec.reroute_virtual_interfaces:
            b.insert(NAT, "prerouting", 0, "iifname", nic, c, "jump", "istio-redirect")
    else:
        for cidr in include[4].cidrs:
            for nic in spec.reroute_virtual_interfaces:
                b.insert(
                    NAT,
                    "prerouting",
                    0,
                    "iifname",
                    nic,
                    "ip daddr",
                    cidr,
                    c,
                    "jump",
                    "istio-redirect",
                )
            b.add(NAT, "istio-output", "ip daddr", cidr, c, "jump", "istio-redirect")
        for cidr in include[6].cidrs:
            for nic in spec.reroute_virtual_interfaces:
                b.insert6(
                    NAT,
                    "prerouting",
                    0,
                    "iifname",
                    nic,
                    "ip6 daddr",
                    cidr,
                    c,
                    "jump",
                    "istio-redirect",
                )
            b.add6(NAT, "istio-output", "ip6 daddr", cidr, c, "jump", "istio-redirect")

    if tproxy:
        b.add(MANGLE, "prerouting", "meta l4proto tcp", "mark", mark, c, "ct mark set mark")
        b.add(MANGLE, "output", "oifname", "lo", "meta l4proto tcp", "mark", mark, c, "return")
        for key, owner in (("skuid", uid), ("skgid", gid)):
            b.add(
                MANGLE,
                "output",
                "oifname",
                "lo",
                "meta l4proto tcp",
                "ip daddr",
                "!=",
                "127.0.0.1/32",
                key,
                owner,
                c,
                "meta mark set",
                OUTBOUND_MARK,
            )
            b.add6(
                MANGLE,
                "output",
                "oifname",
                "lo",
                "meta l4proto tcp",
                "ip6 daddr",
                "!=",
                "::1/128",
                key,
                owner,
                c,
                "meta mark set",
                OUTBOUND_MARK,
            )
        b.add(
            MANGLE,
            "output",
            "meta l4proto tcp",
            "ct",
            "mark",
            mark,
            c,
            "meta mark set",
            "ct",
            "mark",
        )
        b.insert(MANGLE, "istio-inbound", 0, "meta l4proto tcp", "mark", mark, c, "return")
        b.insert(
            MANGLE,
            "istio-inbound",
            1,
            "iifname",
            "lo",
            "meta l4proto tcp",
            "ip saddr",
            "127.0.0.6/32",
            c,
            "return",
        )
        b.insert6(
            MANGLE,
            "istio-inbound",
            1,
            "iifname",
            "lo",
            "meta l4proto tcp",
            "ip6 saddr",
            "::6/128",
            c,
            "return",
        )
        b.insert(
            MANGLE,
            "istio-inbound",
            2,
            "iifname",
            "lo",
            "meta l4proto tcp",
            "mark",
            "!=",
            OUTBOUND_MARK,
            c,
            "return",
        )
    return b.rules


def _inbound(b: _Builder, spec: RedirectSpec) -> None:
    include = spec.include_inbound_ports
    if not include:
        return
    c = "counter"
    if spec.mode != "TPROXY":
        b.add(NAT, "prerouting", "meta l4proto tcp", c, "jump", "istio-inbound")
        if CAPTURE_ALL in include:
            for skipped in spec.exclude_inbound_ports:
                b.add(NAT, "istio-inbound", "meta l4proto tcp", "tcp dport", skipped, c, "return")
            b.add(NAT, "istio-inbound", "meta l4proto tcp", c, "jump", "istio-in-redirect")
        else:
            for port in include:
                b.add(
                    NAT,
                    "istio-inbound",
                    "meta l4proto tcp",
                    "tcp dport",
                    port,
                    c,
                    "jump",
                    "istio-in-redirect",
                )
        return
    mark = spec.tproxy_mark
    b.add(MANGLE, "istio-divert", c, "meta mark set", mark)
    b.add(MANGLE, "istio-divert", c, "accept")
    b.add(
        MANGLE,
        "istio-tproxy",
        "meta l4proto tcp",
        "ip daddr",
        "!=",
        "127.0.0.1/32",
        "tproxy ip to",
        f":{spec.inbound_port}",
        "meta mark set",
        mark,
        c,
        "accept",
    )
    b.add6(
        MANGLE,
        "istio-tproxy",
        "meta l4proto tcp",
        "ip6 daddr",
        "!=",
        "::1/128",
        "tproxy ip6 to",
        f":{spec.inbound_port}",
        "meta mark set",
        mark,
        c,
        "accept",
    )
    b.add(MANGLE, "prerouting", "meta l4proto tcp", c, "jump", "istio-inbound")
    if CAPTURE_ALL in include:
        for skipped in spec.exclude_inbound_ports:
            b.add(MANGLE, "istio-inbound", "meta l4proto tcp", "tcp dport", skipped, c, "return")
        b.add(
            MANGLE,
            "istio-inbound",
            "meta l4proto tcp",
            "ct state",
            "related,established",
            c,
            "jump",
            "istio-divert",
        )
        b.add(MANGLE, "istio-inbound", "meta l4proto tcp", c, "jump", "istio-tproxy")
    else:
        for port in include:
            b.add(
                MANGLE,
                "istio-inbound",
                "meta l4proto tcp",
                "ct state",
                "related,established",
                "tcp dport",
                port,
                c,
                "jump",
                "istio-divert",
            )
            b.add(
                MANGLE,
                "istio-inbound",
                "meta l4proto tcp",
                "tcp dport",
                port,
                c,
                "jump",
                "istio-tproxy",
            )


def _dns(b: _Builder, spec: RedirectSpec) -> None:
    # Capture-all DNS, as the CNI always uses; the match is family-independent in an inet table.
    c = "counter"
    dns = spec.dns_port
    b.add(RAW, "output", c, "jump", "istio-output-dns")
    b.add(NAT, "istio-output", c, "jump", "istio-output-dns")
    b.add(
        NAT,
        "istio-output-dns",
        "meta l4proto tcp",
        "tcp dport",
        DNS_PORT,
        c,
        "redirect",
        "to",
        f":{dns}",
    )
    b.add(NAT, "istio-output-dns", "udp dport", DNS_PORT, c, "redirect", "to", f":{dns}")
    for key, owner in (("skuid", spec.proxy_uid), ("skgid", spec.proxy_gid)):
        b.add(
            RAW,
            "istio-output-dns",
            "udp dport",
            DNS_PORT,
            "meta",
            key,
            owner,
            c,
            "ct",
            "zone",
            "set",
            1,
        )
        b.add(
            RAW, "istio-output-dns", "udp sport", dns, "meta", key, owner, c, "ct", "zone", "set", 2
        )
    b.add(RAW, "prerouting", c, "jump", "istio-inbound")
    b.add(RAW, "istio-output-dns", "udp dport", DNS_PORT, c, "ct", "zone", "set", 2)
    b.add(RAW, "istio-inbound", "udp sport", DNS_PORT, c, "ct", "zone", "set", 1)


def nft_tables_used(spec: RedirectSpec, ipv6: bool) -> list[str]:
    """The tables :func:`render_nftables` writes for this spec.

    :param spec: what to redirect.
    :param ipv6: as for :func:`render_nftables`.
    :returns: table names in script order.
    """
    tables = {r.table for r in build_nft_rules(spec, ipv6)}
    return [t for t in NFT_TABLES if t in tables]


def render_nftables(spec: RedirectSpec, ipv6: bool) -> str:
    """The ``nft -f`` script for Istio's native-nftables mode.

    Per table with rules: ``add table`` + ``flush table`` (which makes re-loading idempotent),
    the chains that get rules (base chains carry their hook and priority), then the rules.
    Istio's 1-based-iptables-style inserts become ``insert rule ... index N`` only when the
    chain already holds more than N rules, otherwise plain ``add rule`` (nft rejects inserting
    at an index that does not exist), exactly as Istio does.

    :param spec: what to redirect.
    :param ipv6: also emit the ``ip6`` rules (Istio's ``EnableIPv6``).
    :returns: the script, newline-terminated.
    """
    rules = build_nft_rules(spec, ipv6)
    lines: list[str] = []
    for table in NFT_TABLES:
        mine = [r for r in rules if r.table == table]
        if not mine:
            continue
        used = {r.chain for r in mine}
        lines.append(f"add table inet {table}")
        lines.append(f"flush table inet {table}")
        for chain, decl in _CHAINS[table]:
            if chain in used:
                lines.append(f"add chain inet {table} {chain}" + (f" {decl}" if decl else ""))
        counts: dict[str, int] = {}
        for r in mine:
            n = counts.get(r.chain, 0)
            if r.index is not None and n > 0 and r.index < n:
                lines.append(f"insert rule inet {table} {r.chain} index {r.index} {r.text}")
            else:
                lines.append(f"add rule inet {table} {r.chain} {r.text}")
            counts[r.chain] = n + 1
    return "".join(line + "\n" for line in lines)
