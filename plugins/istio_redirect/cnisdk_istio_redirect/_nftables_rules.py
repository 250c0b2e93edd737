"""Istio's native-nftables redirection (``native_nftables``, istio 1.27+) as one ``nft -f`` script.

Three ``inet`` tables (``istio-proxy-nat``, ``istio-proxy-mangle``, ``istio-proxy-raw``) cover
IPv4 and IPv6 at once. Each table present is written as ``add table`` + ``flush table`` followed
by its chains and rules, so loading the script twice gives the same ruleset: it is idempotent by
construction and ``nft -f`` applies it as one transaction. The rule texts and their order follow
``tools/istio-nftables/pkg/capture/testdata/*.golden``.

As in the iptables rules, each rule is written once: a rule with an address in it is a
template expanded per family in use (``_Builder.versioned``, Istio's rule plus its
``V6RuleIfSupported`` twin), owner rules loop over ``proxy_owners``. :func:`delete_tables` is
the one way our tables are removed (before an apply, on removal, for the verify scratch
tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._iptables_rules import (
    ADDRESSES,
    CLIENT_DNS_ZONE,
    DNS_PORT,
    OUTBOUND_MARK,
    UPSTREAM_DNS_ZONE,
    inbound_ports,
    proxy_owners,
    split_cidrs,
)
from ._redirect import CAPTURE_ALL, RedirectSpec

__all__ = [
    "NFT_TABLES",
    "NftRule",
    "build_nft_rules",
    "delete_tables",
    "nft_tables_used",
    "render_nftables",
]

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
    """Collects rules in insertion order, like Istio's nftables rule builder."""

    def __init__(self, ipv6: bool) -> None:
        self.families = (ADDRESSES[4], ADDRESSES[6]) if ipv6 else (ADDRESSES[4],)
        """The families whose address-specific rules are written (Istio's ``EnableIPv6``)."""
        self.rules: list[NftRule] = []

    def add(self, table: str, chain: str, rule: str) -> None:
        self.rules.append(NftRule(table, chain, rule))

    def insert(self, table: str, chain: str, index: int, rule: str) -> None:
        self.rules.append(NftRule(table, chain, rule, index))

    def versioned(
        self, table: str, chain: str, template: str, *, index: int | None = None, **values: object
    ) -> None:
        """One rule per family from ``template`` (Istio's rule + ``V6RuleIfSupported`` twin).

        ``{ip}``, ``{loopback}`` and ``{passthrough}`` take the family's values
        (:class:`~cnisdk_istio_redirect._iptables_rules.FamilyAddresses`); other fields come
        from ``values``, substituted as they are.
        """
        for addr in self.families:
            text = template.format(
                ip=addr.nft_ip, loopback=addr.loopback, passthrough=addr.passthrough, **values
            )
            self.rules.append(NftRule(table, chain, text, index))


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
    mark = spec.tproxy_mark
    include = split_cidrs(spec.include_outbound_cidrs)
    exclude = split_cidrs(spec.exclude_outbound_cidrs)
    has_loopback = include[4].has_loopback or include[6].has_loopback
    b = _Builder(ipv6)

    for table in (NAT, MANGLE) if tproxy else (NAT,):
        for nic in spec.exclude_interfaces:
            b.add(table, "prerouting", f"iifname {nic} counter return")
            b.add(table, "output", f"oifname {nic} counter return")
    for nic in spec.reroute_virtual_interfaces:
        b.insert(NAT, "prerouting", 0, f"iifname {nic} counter return")

    if spec.invalid_drop:
        b.add(MANGLE, "prerouting", "meta l4proto tcp ct state invalid counter jump istio-drop")
        b.add(MANGLE, "istio-drop", "counter drop")

    tunnel = spec.inbound_tunnel_port
    b.add(NAT, "istio-inbound", f"meta l4proto tcp tcp dport {tunnel} counter return")
    b.add(NAT, "istio-redirect", f"meta l4proto tcp counter redirect to :{spec.outbound_port}")
    b.add(NAT, "istio-in-redirect", f"meta l4proto tcp counter redirect to :{spec.inbound_port}")

    _inbound(b, spec)

    b.add(NAT, "output", "counter jump istio-output")
    for port in spec.exclude_outbound_ports:
        for proto in ("tcp", "udp"):
            b.add(NAT, "istio-output", f"{proto} dport {port} counter return")
    b.versioned(NAT, "istio-output", "oifname lo {ip} saddr {passthrough} counter return")

    for kind, owner in proxy_owners(spec):
        # Same UID-only DNS exemption as the iptables rules.
        ports = f"{{ {DNS_PORT}, {tunnel} }}" if spec.dns_capture and kind == "uid" else tunnel
        b.versioned(
            NAT,
            "istio-output",
            "oifname lo meta l4proto tcp {ip} daddr != {loopback} tcp dport != {ports}"
            " sk{kind} {owner} counter jump istio-in-redirect",
            ports=ports,
            kind=kind,
            owner=owner,
        )
        if not has_loopback:
            not_dns = f"meta l4proto tcp tcp dport != {DNS_PORT} " if spec.dns_capture else ""
            b.add(NAT, "istio-output", f"oifname lo {not_dns}sk{kind} != {owner} counter return")
        b.add(NAT, "istio-output", f"sk{kind} {owner} counter return")

    if spec.dns_capture:
        _dns(b, spec)

    b.versioned(NAT, "istio-output", "{ip} daddr {loopback} counter return")
    for addr in b.families:
        for cidr in exclude[addr.family].cidrs:
            b.add(NAT, "istio-output", f"{addr.nft_ip} daddr {cidr} counter return")
    for port in spec.include_outbound_ports:
        b.add(NAT, "istio-output", f"tcp dport {port} counter jump istio-redirect")
    if include[4].wildcard:
        b.add(NAT, "istio-output", "counter jump istio-redirect")
        for nic in spec.reroute_virtual_interfaces:
            b.insert(NAT, "prerouting", 0, f"iifname {nic} counter jump istio-redirect")
    else:
        for addr in b.families:
            for cidr in include[addr.family].cidrs:
                to_proxy = f"{addr.nft_ip} daddr {cidr} counter jump istio-redirect"
                for nic in spec.reroute_virtual_interfaces:
                    b.insert(NAT, "prerouting", 0, f"iifname {nic} {to_proxy}")
                b.add(NAT, "istio-output", to_proxy)

    if tproxy:
        b.add(MANGLE, "prerouting", f"meta l4proto tcp mark {mark} counter ct mark set mark")
        b.add(MANGLE, "output", f"oifname lo meta l4proto tcp mark {mark} counter return")
        for kind, owner in proxy_owners(spec):
            b.versioned(
                MANGLE,
                "output",
                "oifname lo meta l4proto tcp {ip} daddr != {loopback} sk{kind} {owner}"
                " counter meta mark set {outbound_mark}",
                kind=kind,
                owner=owner,
                outbound_mark=OUTBOUND_MARK,
            )
        b.add(MANGLE, "output", f"meta l4proto tcp ct mark {mark} counter meta mark set ct mark")
        b.insert(MANGLE, "istio-inbound", 0, f"meta l4proto tcp mark {mark} counter return")
        b.versioned(
            MANGLE,
            "istio-inbound",
            "iifname lo meta l4proto tcp {ip} saddr {passthrough} counter return",
            index=1,
        )
        b.insert(
            MANGLE,
            "istio-inbound",
            2,
            f"iifname lo meta l4proto tcp mark != {OUTBOUND_MARK} counter return",
        )
    return b.rules


def _inbound(b: _Builder, spec: RedirectSpec) -> None:
    returned, captured = inbound_ports(spec)
    if not captured:
        return  # "" = no inbound capture at all, not even the PREROUTING jump
    tproxy = spec.mode == "TPROXY"
    table = MANGLE if tproxy else NAT
    if tproxy:
        mark = spec.tproxy_mark
        b.add(MANGLE, "istio-divert", f"counter meta mark set {mark}")
        b.add(MANGLE, "istio-divert", "counter accept")
        b.versioned(
            MANGLE,
            "istio-tproxy",
            "meta l4proto tcp {ip} daddr != {loopback} tproxy {ip} to :{port}"
            " meta mark set {mark} counter accept",
            port=spec.inbound_port,
            mark=mark,
        )
    b.add(table, "prerouting", "meta l4proto tcp counter jump istio-inbound")
    for skipped in returned:
        b.add(table, "istio-inbound", f"meta l4proto tcp tcp dport {skipped} counter return")
    for port in captured:
        ports = "" if port is None else f"tcp dport {port} "
        if tproxy:
            established = "ct state related,established"
            b.add(
                MANGLE,
                "istio-inbound",
                f"meta l4proto tcp {established} {ports}counter jump istio-divert",
            )
            b.add(MANGLE, "istio-inbound", f"meta l4proto tcp {ports}counter jump istio-tproxy")
        else:
            b.add(NAT, "istio-inbound", f"meta l4proto tcp {ports}counter jump istio-in-redirect")


def _dns(b: _Builder, spec: RedirectSpec) -> None:
    # Capture-all DNS, as the CNI always uses; the match is family-independent in an inet table.
    to_agent = f"counter redirect to :{spec.dns_port}"
    b.add(RAW, "output", "counter jump istio-output-dns")
    b.add(NAT, "istio-output", "counter jump istio-output-dns")
    b.add(NAT, "istio-output-dns", f"meta l4proto tcp tcp dport {DNS_PORT} {to_agent}")
    b.add(NAT, "istio-output-dns", f"udp dport {DNS_PORT} {to_agent}")
    for kind, owner in proxy_owners(spec):
        match = f"meta sk{kind} {owner} counter ct zone set"
        b.add(RAW, "istio-output-dns", f"udp dport {DNS_PORT} {match} {UPSTREAM_DNS_ZONE}")
        b.add(RAW, "istio-output-dns", f"udp sport {spec.dns_port} {match} {CLIENT_DNS_ZONE}")
    b.add(RAW, "prerouting", "counter jump istio-inbound")
    b.add(RAW, "istio-output-dns", f"udp dport {DNS_PORT} counter ct zone set {CLIENT_DNS_ZONE}")
    b.add(RAW, "istio-inbound", f"udp sport {DNS_PORT} counter ct zone set {UPSTREAM_DNS_ZONE}")


def delete_tables(tables: Iterable[str]) -> str:
    """``nft -f`` lines that delete the ``inet`` tables named, whether or not they exist.

    ``add table`` comes first so ``delete table`` never fails on an absent table; inside one
    ``nft -f`` transaction the pair leaves the table gone either way.

    :param tables: table names.
    :returns: the lines, newline-terminated.
    """
    return "".join(f"add table inet {t}\ndelete table inet {t}\n" for t in tables)


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
