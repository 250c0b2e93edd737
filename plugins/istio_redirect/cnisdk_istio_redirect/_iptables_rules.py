"""The iptables rules Istio's CNI plugin installs for a sidecar pod, as pure data and text.

Everything here is free of I/O: it turns a :class:`~cnisdk_istio_redirect._redirect.RedirectSpec`
into the ``iptables-restore`` blob istio-iptables would feed to ``iptables-restore --noflush``
(one per IP family), plus the netlink objects TPROXY and IPv6 need. The rule order and the exact
option spelling follow Istio's golden files (``cni/pkg/plugin/testdata/*.golden``), so a pod
redirected by this plugin is indistinguishable from one redirected by istio-cni.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._redirect import CAPTURE_ALL, RedirectSpec

__all__ = [
    "BUILTIN_CHAINS",
    "TABLES",
    "Family",
    "IptRule",
    "LoopbackAddress",
    "PolicyRoute",
    "PolicyRule",
    "build_rules",
    "chains_in_order",
    "expected_chains",
    "final_chain_rules",
    "loopback_addresses",
    "policy_routes",
    "policy_rules",
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
class PolicyRule:
    """``ip [-6] rule add fwmark MARK lookup TABLE`` (TPROXY)."""

    family: Family
    fwmark: int
    table: int


@dataclass(frozen=True)
class PolicyRoute:
    """``ip [-6] route add local DST dev DEV table TABLE`` (TPROXY)."""

    family: Family
    destination: str
    device: str
    table: int
    route_type: Literal["local"] = "local"


@dataclass(frozen=True)
class LoopbackAddress:
    """``ip -6 addr add ADDRESS dev lo``: Envoy's IPv6 inbound-passthrough source (``::6``)."""

    family: Family
    address: str
    device: str = "lo"


def _loopback(family: Family) -> str:
    # Istio's HostIPv4LoopbackCidr default; the CNI never changes it.
    return "127.0.0.1/32" if family == 4 else "::1/128"


def _passthrough_source(family: Family) -> str:
    # Envoy binds its inbound passthrough connections to 127.0.0.6 / ::6.
    return "127.0.0.6/32" if family == 4 else "::6/128"


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


class _Builder:
    """Collects rules in insertion order; mirrors the shape of Istio's rule builder."""

    def __init__(self) -> None:
        self.rules: list[IptRule] = []

    def append(self, table: Table, chain: str, *args: str | int) -> None:
        self.rules.append(IptRule(table, chain, tuple(str(a) for a in args)))

    def insert(self, table: Table, chain: str, position: int, *args: str | int) -> None:
        self.rules.append(IptRule(table, chain, tuple(str(a) for a in args), position))


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
    loopback = _loopback(family)
    uid, gid = spec.proxy_uid, spec.proxy_gid
    mark = spec.tproxy_mark
    include = split_cidrs(spec.include_outbound_cidrs)
    exclude = split_cidrs(spec.exclude_outbound_cidrs)[family]
    # Istio checks both families here, so a v4 loopback include also changes the v6 rules.
    include_has_loopback = include[4].has_loopback or include[6].has_loopback
    b = _Builder()

    for nic in spec.exclude_interfaces:
        b.append("nat", "PREROUTING", "-i", nic, "-j", "RETURN")
        b.append("nat", "OUTPUT", "-o", nic, "-j", "RETURN")
    if tproxy:
        for nic in spec.exclude_interfaces:
            b.append("mangle", "PREROUTING", "-i", nic, "-j", "RETURN")
            b.append("mangle", "OUTPUT", "-o", nic, "-j", "RETURN")
    for nic in spec.reroute_virtual_interfaces:
        b.insert("nat", "PREROUTING", 1, "-i", nic, "-j", "RETURN")

    if spec.invalid_drop:
        b.append("mangle", "PREROUTING", "-m", "conntrack", "--ctstate", "INVALID", "-j", DROP)
        b.append("mangle", DROP, "-j", "DROP")

    b.append("nat", INBOUND, "-p", "tcp", "--dport", spec.inbound_tunnel_port, "-j", "RETURN")
    b.append("nat", REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", spec.outbound_port)
    b.append("nat", IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", spec.inbound_port)

    _inbound(b, spec, loopback)

    b.append("nat", "OUTPUT", "-j", OUTPUT)
    for port in spec.exclude_outbound_ports:
        b.append("nat", OUTPUT, "-p", "tcp", "--dport", port, "-j", "RETURN")
        b.append("nat", OUTPUT, "-p", "udp", "--dport", port, "-j", "RETURN")
    b.append("nat", OUTPUT, "-o", "lo", "-s", _passthrough_source(family), "-j", "RETURN")

    tunnel = spec.inbound_tunnel_port
    for kind, owner in (("--uid-owner", uid), ("--gid-owner", gid)):
        # Proxy traffic to its own pod IP via lo (app -> VIP -> Envoy -> same pod) goes inbound.
        if spec.dns_capture and kind == "--uid-owner":
            # Istio only exempts port 53 on the uid rule; the gid rule keeps the plain form.
            port_match: tuple[str, ...] = (
                "-m",
                "multiport",
                "!",
                "--dports",
                f"{DNS_PORT},{tunnel}",
            )
        else:
            port_match = ("!", "--dport", str(tunnel))
        b.append(
            "nat",
            OUTPUT,
            "-o",
            "lo",
            "!",
            "-d",
            loopback,
            "-p",
            "tcp",
            *port_match,
            "-m",
            "owner",
            kind,
            owner,
            "-j",
            IN_REDIRECT,
        )
        if not include_has_loopback:
            if spec.dns_capture:
                b.append(
                    "nat",
                    OUTPUT,
                    "-o",
                    "lo",
                    "-p",
                    "tcp",
                    "!",
                    "--dport",
                    DNS_PORT,
                    "-m",
                    "owner",
                    "!",
                    kind,
                    owner,
                    "-j",
                    "RETURN",
                )
            else:
                b.append("nat", OUTPUT, "-o", "lo", "-m", "owner", "!", kind, owner, "-j", "RETURN")
        b.append("nat", OUTPUT, "-m", "owner", kind, owner, "-j", "RETURN")

    if spec.dns_capture:
        _dns(b, spec)

    b.append("nat", OUTPUT, "-d", loopback, "-j", "RETURN")
    for cidr in exclude.cidrs:
        b.append("nat", OUTPUT, "-d", cidr, "-j", "RETURN")
    for port in spec.include_outbound_ports:
        b.append("nat", OUTPUT, "-p", "tcp", "--dport", port, "-j", REDIRECT)
    rng = include[family]
    if rng.wildcard:
        b.append("nat", OUTPUT, "-j", REDIRECT)
        for nic in spec.reroute_virtual_interfaces:
            b.insert("nat", "PREROUTING", 1, "-i", nic, "-j", REDIRECT)
    else:
        for cidr in rng.cidrs:
            for nic in spec.reroute_virtual_interfaces:
                b.insert("nat", "PREROUTING", 1, "-i", nic, "-d", cidr, "-j", REDIRECT)
            b.append("nat", OUTPUT, "-d", cidr, "-j", REDIRECT)

    if tproxy:
        b.append(
            "mangle",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "mark",
            "--mark",
            mark,
            "-j",
            "CONNMARK",
            "--save-mark",
        )
        b.append(
            "mangle",
            "OUTPUT",
            "-p",
            "tcp",
            "-o",
            "lo",
            "-m",
            "mark",
            "--mark",
            mark,
            "-j",
            "RETURN",
        )
        for kind, owner in (("--uid-owner", uid), ("--gid-owner", gid)):
            b.append(
                "mangle",
                "OUTPUT",
                "!",
                "-d",
                loopback,
                "-p",
                "tcp",
                "-o",
                "lo",
                "-m",
                "owner",
                kind,
                owner,
                "-j",
                "MARK",
                "--set-mark",
                OUTBOUND_MARK,
            )
        b.append(
            "mangle",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "connmark",
            "--mark",
            mark,
            "-j",
            "CONNMARK",
            "--restore-mark",
        )
        b.insert("mangle", INBOUND, 1, "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "RETURN")
        b.insert(
            "mangle",
            INBOUND,
            2,
            "-p",
            "tcp",
            "-s",
            _passthrough_source(family),
            "-i",
            "lo",
            "-j",
            "RETURN",
        )
        b.insert(
            "mangle",
            INBOUND,
            3,
            "-p",
            "tcp",
            "-i",
            "lo",
            "-m",
            "mark",
            "!",
            "--mark",
            OUTBOUND_MARK,
            "-j",
            "RETURN",
        )
    return b.rules


def _inbound(b: _Builder, spec: RedirectSpec, loopback: str) -> None:
    include = spec.include_inbound_ports
    if not include:
        return  # "" = no inbound capture at all, not even the PREROUTING jump
    tproxy = spec.mode == "TPROXY"
    table: Table = "mangle" if tproxy else "nat"
    if tproxy:
        b.append("mangle", DIVERT, "-j", "MARK", "--set-mark", spec.tproxy_mark)
        b.append("mangle", DIVERT, "-j", "ACCEPT")
        b.append(
            "mangle",
            TPROXY,
            "!",
            "-d",
            loopback,
            "-p",
            "tcp",
            "-j",
            "TPROXY",
            "--tproxy-mark",
            f"{spec.tproxy_mark}/0xffffffff",
            "--on-port",
            spec.inbound_port,
        )
    b.append(table, "PREROUTING", "-p", "tcp", "-j", INBOUND)
    if CAPTURE_ALL in include:
        for skipped in spec.exclude_inbound_ports:
            b.append(table, INBOUND, "-p", "tcp", "--dport", skipped, "-j", "RETURN")
        if tproxy:
            b.append(
                "mangle",
                INBOUND,
                "-p",
                "tcp",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                DIVERT,
            )
            b.append("mangle", INBOUND, "-p", "tcp", "-j", TPROXY)
        else:
            b.append("nat", INBOUND, "-p", "tcp", "-j", IN_REDIRECT)
        return
    # An explicit include list ignores the exclude list, as in Istio.
    for port in include:
        if tproxy:
            b.append(
                "mangle",
                INBOUND,
                "-p",
                "tcp",
                "--dport",
                port,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                DIVERT,
            )
            b.append("mangle", INBOUND, "-p", "tcp", "--dport", port, "-j", TPROXY)
        else:
            b.append("nat", INBOUND, "-p", "tcp", "--dport", port, "-j", IN_REDIRECT)


def _dns(b: _Builder, spec: RedirectSpec) -> None:
    # The CNI always captures all DNS (no resolv.conf server list), so both families get the
    # same rules. --to-ports rather than Istio's --to-port on UDP: older iptables-nft rejects
    # the singular spelling (istio#23279) and both mean the same.
    b.append("raw", "OUTPUT", "-j", OUTPUT_DNS)
    b.append("nat", OUTPUT, "-j", OUTPUT_DNS)
    b.append(
        "nat",
        OUTPUT_DNS,
        "-p",
        "tcp",
        "--dport",
        DNS_PORT,
        "-j",
        "REDIRECT",
        "--to-ports",
        spec.dns_port,
    )
    b.append(
        "nat",
        OUTPUT_DNS,
        "-p",
        "udp",
        "--dport",
        DNS_PORT,
        "-j",
        "REDIRECT",
        "--to-ports",
        spec.dns_port,
    )
    # Separate conntrack zones for agent<->upstream (1) and app<->agent (2) UDP flows.
    for kind, owner in (("--uid-owner", spec.proxy_uid), ("--gid-owner", spec.proxy_gid)):
        b.append(
            "raw",
            OUTPUT_DNS,
            "-p",
            "udp",
            "--dport",
            DNS_PORT,
            "-m",
            "owner",
            kind,
            owner,
            "-j",
            "CT",
            "--zone",
            1,
        )
        b.append(
            "raw",
            OUTPUT_DNS,
            "-p",
            "udp",
            "--sport",
            spec.dns_port,
            "-m",
            "owner",
            kind,
            owner,
            "-j",
            "CT",
            "--zone",
            2,
        )
    b.append("raw", "PREROUTING", "-j", INBOUND)
    b.append("raw", OUTPUT_DNS, "-p", "udp", "--dport", DNS_PORT, "-j", "CT", "--zone", 2)
    b.append("raw", INBOUND, "-p", "udp", "--sport", DNS_PORT, "-j", "CT", "--zone", 1)


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


def render_rules(rules: Sequence[IptRule]) -> str:
    """Render rules as an ``iptables-restore --noflush`` blob, in Istio's layout.

    :param rules: rules in insertion order.
    :returns: ``* table`` / ``-N`` lines / rules / ``COMMIT`` per non-empty table.
    """
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
    return render_rules(build_rules(spec, family))


def expected_chains(spec: RedirectSpec, family: Family) -> dict[str, set[str]]:
    """The ``ISTIO_*`` chains each table should hold after :func:`render_iptables` is applied.

    :param spec: what to redirect.
    :param family: 4 or 6.
    :returns: table name -> chain names; tables without chains are left out.
    """
    chains = chains_in_order(build_rules(spec, family))
    return {t: set(c) for t, c in chains.items() if c}


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


def policy_rules(spec: RedirectSpec, family: Family) -> list[PolicyRule]:
    """The ``ip rule`` entries TPROXY needs (none for REDIRECT or without inbound capture).

    :param spec: what to redirect.
    :param family: 4 or 6.
    :returns: ``fwmark <tproxy_mark> lookup <tproxy_route_table>`` for TPROXY, else ``[]``.
    """
    if spec.mode != "TPROXY" or not spec.include_inbound_ports:
        return []
    return [PolicyRule(family, spec.tproxy_mark, spec.tproxy_route_table)]


def policy_routes(spec: RedirectSpec, family: Family) -> list[PolicyRoute]:
    """The routes TPROXY needs: everything marked is delivered locally via ``lo``.

    :param spec: what to redirect.
    :param family: 4 or 6.
    :returns: ``local 0.0.0.0/0 dev lo table 133`` (``::/0`` for 6) for TPROXY, else ``[]``.
    """
    if spec.mode != "TPROXY" or not spec.include_inbound_ports:
        return []
    dst = "0.0.0.0/0" if family == 4 else "::/0"
    return [PolicyRoute(family, dst, "lo", spec.tproxy_route_table)]


def loopback_addresses(spec: RedirectSpec, family: Family) -> list[LoopbackAddress]:
    """Addresses to add to ``lo``: ``::6/128`` whenever IPv6 rules are installed.

    IPv4 needs nothing because 127.0.0.0/8 is already routable on ``lo``; IPv6 only has ``::1``.

    :param spec: what to redirect (unused today; kept for symmetry with the other helpers).
    :param family: 4 or 6.
    :returns: the address list.
    """
    del spec
    return [LoopbackAddress(6, "::6/128")] if family == 6 else []
