"""The IPAM plugins of containernetworking/plugins (host-local, static, dhcp), as models of the
``ipam`` object of a main plugin's entry.

host-local's rules are those of its ``LoadIPAMConfig`` and ``Range``/``RangeSet``
``Canonicalize``/``Overlaps`` (plugins/ipam/host-local/backend/allocator), with Go's messages.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from cnisdk._validate._reference._gotypes import (
    CheckContext,
    GoCIDR,
    GoInt,
    GoIP,
    GoStruct,
    IPAddress,
    Problem,
    Since,
    go_parse_cidr,
    go_parse_ip,
)
from cnisdk.spec._versions import parse_version

__all__ = ["DHCP", "HostLocal", "Route", "Static"]

_SINCE_ROUTE_FIELDS = Since((1, 6, 0))  # the plugins vendor a cni library with them from 1.6.0


class Route(GoStruct):
    """A route the IPAM result gives the container (Go's ``types.Route``)."""

    dst: GoCIDR = Field(description="The destination, with its prefix length: 0.0.0.0/0.")
    gw: GoIP = Field(
        default="", description="The next hop; empty: the gateway of the address's range."
    )
    mtu: Annotated[GoInt, _SINCE_ROUTE_FIELDS] = Field(default=0, description="The route's MTU.")
    advmss: Annotated[GoInt, _SINCE_ROUTE_FIELDS] = Field(
        default=0, description="The route's advertised MSS."
    )
    priority: Annotated[GoInt, _SINCE_ROUTE_FIELDS] = Field(
        default=0, description="The route's priority (metric)."
    )
    table: Annotated[GoInt | None, _SINCE_ROUTE_FIELDS] = Field(
        default=None, description="The routing table to add the route to."
    )
    scope: Annotated[GoInt | None, _SINCE_ROUTE_FIELDS] = Field(
        default=None, description="The route's scope."
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        if not self.gw:
            return
        gateway = go_parse_ip(self.gw)
        destination = go_parse_cidr(self.dst)[0]
        if gateway is not None and gateway.version != destination.version:
            yield Problem(
                "CV311",
                ("gw",),
                f"gateway {self.gw} is IPv{gateway.version} but the destination {self.dst} is "
                f"IPv{destination.version}: the kernel refuses the route",
            )


def _families_problem(counts: dict[int, int], ctx: CheckContext, path: str) -> Iterator[Problem]:
    try:
        old = parse_version(ctx.version) < parse_version("0.3.0")
    except ValueError:
        return
    if old and max(counts.values(), default=0) > 1:
        yield Problem(
            "CV311",
            (path,),
            f"CNI version {ctx.version} does not support more than 1 address per family: raise "
            "cniVersion to 0.3.0 or later",
        )


# --------------------------------------------------------------------------- host-local


@dataclass(frozen=True)
class _Span:
    """A range after Go's ``Canonicalize``: defaults filled in."""

    version: int
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    start: IPAddress
    end: IPAddress

    def contains(self, address: IPAddress) -> bool:
        return (
            address.version == self.version
            and address in self.subnet
            and int(self.start) <= int(address) <= int(self.end)
        )

    def overlaps(self, other: _Span) -> bool:
        if self.version != other.version:
            return False
        return (
            self.contains(other.start)
            or self.contains(other.end)
            or other.contains(self.start)
            or other.contains(self.end)
        )

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class Range(GoStruct):
    """One range of addresses: a subnet and, optionally, where in it to allocate."""

    subnet: GoCIDR = Field(description="The subnet to allocate from: 10.22.0.0/16.")
    range_start: GoIP = Field(
        default="",
        alias="rangeStart",
        description="The first address to allocate, inside the subnet; default: the second.",
    )
    range_end: GoIP = Field(
        default="",
        alias="rangeEnd",
        description="The last address to allocate, inside the subnet; default: the last but "
        "one (IPv4) or the last (IPv6).",
    )
    gateway: GoIP = Field(
        default="",
        description="The gateway given to containers, inside the subnet; default: the first "
        "address.",
    )

    def span(self, where: tuple[str | int, ...]) -> _Span | Problem:
        """Go's ``Range.Canonicalize``: the range with its defaults, or why it is refused."""
        address, ones, v6_bits = go_parse_cidr(self.subnet)
        bits = 128 if v6_bits else 32
        if ones > bits - 2:
            return Problem(
                "CV311",
                (*where, "subnet"),
                f"Network {address}/{ones} too small to allocate from: use a shorter prefix",
            )
        if v6_bits and address.version == 4:
            return Problem(
                "CV311", (*where, "subnet"), "IPNet IP and Mask version mismatch: write IPv4 "
                "subnets in dotted form",
            )  # fmt: skip
        subnet = ipaddress.ip_network(f"{address}/{ones}", strict=False)
        if subnet.network_address != address:
            return Problem(
                "CV311",
                (*where, "subnet"),
                f"Network has host bits set. For a subnet mask of length {ones} the network "
                f"address is {subnet.network_address}: write {subnet}",
            )
        first = subnet.network_address + 1
        last = subnet.broadcast_address - (1 if subnet.version == 4 else 0)
        start = go_parse_ip(self.range_start) if self.range_start else None
        end = go_parse_ip(self.range_end) if self.range_end else None
        # Go checks rangeStart against the rangeEnd as given, then rangeEnd against the start.
        for key, value, low, high in (
            ("rangeStart", start, start, end),
            ("rangeEnd", end, start or first, end),
        ):
            if value is None:
                continue
            probe = _Span(subnet.version, subnet, low or value, high or value)
            if not probe.contains(value):
                inside = value.version == subnet.version and value in subnet
                hint = "rangeStart must not be after rangeEnd" if inside else "move it inside"
                return Problem(
                    "CV311",
                    (*where, key),
                    f"{'RangeStart' if key == 'rangeStart' else 'RangeEnd'} {value} not in "
                    f"network {subnet}: {hint}",
                )
        return _Span(subnet.version, subnet, start or first, end or last)

    def gateway_problem(self, span: _Span, where: tuple[str | int, ...]) -> Iterator[Problem]:
        gateway = go_parse_ip(self.gateway) if self.gateway else None
        if gateway is not None and (gateway.version != span.version or gateway not in span.subnet):
            yield Problem(
                "CV312",
                (*where, "gateway"),
                f"gateway {gateway} is not in subnet {span.subnet}: host-local hands it to "
                "containers as it is, but they cannot reach it (a default route via it fails)",
            )


class _TopLevelRange(GoStruct):
    """The old single-range form: ``subnet`` and its companions directly in ``ipam``."""

    subnet: GoCIDR | None = Field(
        default=None,
        description="The old single-range form: the subnet to allocate from (prefer ranges).",
    )
    range_start: GoIP = Field(
        default="", alias="rangeStart", description="With subnet: the first address to allocate."
    )
    range_end: GoIP = Field(
        default="", alias="rangeEnd", description="With subnet: the last address to allocate."
    )
    gateway: GoIP = Field(default="", description="With subnet: the gateway given to containers.")


class HostLocal(_TopLevelRange):
    """Allocate addresses from ranges, recording them in files on the host."""

    type: str = Field(description='"host-local".')
    ranges: list[list[Range]] | None = Field(
        default=None,
        description="Range sets: one address is allocated from each set, from the first of its "
        "ranges with a free address.",
    )
    routes: list[Route] | None = Field(default=None, description="Routes given to containers.")
    data_dir: str = Field(
        default="",
        alias="dataDir",
        description="Where allocations are recorded; default /var/lib/cni/networks.",
    )
    resolv_conf: str = Field(
        default="",
        alias="resolvConf",
        description="A resolv.conf on the host whose settings are returned as the DNS result.",
    )

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        sets: list[tuple[tuple[str | int, ...], list[tuple[tuple[str | int, ...], Range]]]] = []
        if self.subnet is not None:
            top = Range.model_validate(
                {
                    "subnet": self.subnet,
                    "rangeStart": self.range_start,
                    "rangeEnd": self.range_end,
                    "gateway": self.gateway,
                }
            )
            sets.append(((), [((), top)]))
        else:
            for key, value in (
                ("rangeStart", self.range_start),
                ("rangeEnd", self.range_end),
                ("gateway", self.gateway),
            ):
                if value:
                    yield Problem(
                        "CV312",
                        (key,),
                        f"{key} is ignored without a subnet next to it: move it into a ranges "
                        "entry with its subnet",
                    )
        for i, range_set in enumerate(self.ranges or []):
            sets.append((("ranges", i), [(("ranges", i, j), r) for j, r in enumerate(range_set)]))
        if not sets and "ipRanges" not in ctx.capabilities:
            yield Problem(
                "CV311",
                ("ranges",),
                'no IP ranges specified: add "ranges": [[{"subnet": ...}]] (or enable the '
                '"ipRanges" capability on the plugin entry)',
            )
        canonical: list[tuple[int, tuple[str | int, ...], list[_Span]]] = []
        for index, (set_path, members) in enumerate(sets):
            spans = yield from _range_set(set_path, members, index)
            if spans:
                canonical.append((index, set_path, spans))
        counts = {4: 0, 6: 0}
        for *_, spans in canonical:
            counts[spans[0].version] += 1
        yield from _families_problem(counts, ctx, "ranges")
        for position, (i, _, first) in enumerate(canonical):
            for j, path, second in canonical[position + 1 :]:
                if any(a.overlaps(b) for a in first for b in second):
                    yield Problem(
                        "CV311", path, f"range set {i} overlaps with {j}: make them disjoint"
                    )
                    break
        for key, value in (("dataDir", self.data_dir), ("resolvConf", self.resolv_conf)):
            if value and not posixpath.isabs(value):
                yield Problem(
                    "CV312",
                    (key,),
                    f"{key} {value!r} is relative: host-local resolves it from the runtime's "
                    "working directory; use an absolute path",
                )


def _range_set(
    set_path: tuple[str | int, ...],
    members: list[tuple[tuple[str | int, ...], Range]],
    index: int,
) -> Generator[Problem, None, list[_Span]]:
    """Go's ``RangeSet.Canonicalize`` for one set; returns its spans (empty when refused)."""
    if not members:
        yield Problem("CV311", set_path, f"invalid range set {index}: empty range set: add a range")
        return []
    spans: list[_Span] = []
    for path, member in members:
        span = member.span(path)
        if isinstance(span, Problem):
            yield Problem(span.code, span.path, f"invalid range set {index}: {span.message}")
            return []
        yield from member.gateway_problem(span, path)
        if spans and span.version != spans[0].version:
            yield Problem(
                "CV311",
                path,
                f"invalid range set {index}: mixed address families: put IPv4 and IPv6 ranges "
                "in separate range sets",
            )
            return []
        spans.append(span)
    for i, first in enumerate(spans):
        for j in range(i + 1, len(spans)):
            if first.overlaps(spans[j]):
                yield Problem(
                    "CV311",
                    members[j][0],
                    f"invalid range set {index}: subnets {first} and {spans[j]} overlap: "
                    "make the ranges of a set disjoint",
                )
                return []
    return spans


# --------------------------------------------------------------------------- static


def _check_static_address(text: str) -> str:
    try:
        go_parse_cidr(text)
    except ValueError:
        raise ValueError(
            f"the 'address' field is expected to be in CIDR notation, got: '{text}'"
        ) from None
    return text


class StaticAddress(GoStruct):
    """One address static gives the container."""

    address: Annotated[str, AfterValidator(_check_static_address)] = Field(
        description="The address with its prefix length: 10.10.0.1/24."
    )
    gateway: GoIP = Field(default="", description="The gateway, inside the address's subnet.")


class DNSSettings(GoStruct):
    """DNS settings returned in the result (Go's ``types.DNS``)."""

    nameservers: list[str] | None = Field(default=None, description="Name server addresses.")
    domain: str = Field(default="", description="The local domain.")
    search: list[str] | None = Field(default=None, description="Search domains.")
    options: list[str] | None = Field(default=None, description="resolv.conf options.")


class Static(GoStruct):
    """Give the container fixed addresses, routes and DNS settings."""

    type: str = Field(description='"static".')
    addresses: list[StaticAddress] | None = Field(
        default=None, description="The addresses to give, at most one per family before 0.3.0."
    )
    routes: list[Route] | None = Field(default=None, description="Routes given to containers.")
    dns: DNSSettings | None = Field(default=None, description="DNS settings to return.")

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        counts = {4: 0, 6: 0}
        for i, entry in enumerate(self.addresses or []):
            address, ones, _ = go_parse_cidr(entry.address)
            counts[address.version] += 1
            network = ipaddress.ip_network(f"{address}/{ones}", strict=False)
            gateway = go_parse_ip(entry.gateway) if entry.gateway else None
            if gateway is not None and (
                gateway.version != address.version or gateway not in network
            ):
                yield Problem(
                    "CV312",
                    ("addresses", i, "gateway"),
                    f"gateway {gateway} is not in {network}: static returns it as it is, but "
                    "the container cannot reach it",
                )
        if not self.addresses and "ips" not in ctx.capabilities:
            yield Problem(
                "CV311",
                ("addresses",),
                "static has no addresses to give, so the main plugin fails (IPAM plugin "
                'returned missing IP config): add "addresses" (or enable the "ips" capability)',
            )
        yield from _families_problem(counts, ctx, "addresses")


# --------------------------------------------------------------------------- dhcp

_DHCP_OPTION_NAMES = (
    "dhcp-client-identifier", "subnet-mask", "routers", "host-name", "user-class",
    "vendor-class-identifier",
)  # fmt: skip


def _check_dhcp_option(text: str) -> str:
    """Go's ``parseOptionName``: a known name or a number that fits a byte."""
    if text in _DHCP_OPTION_NAMES or (text.isascii() and text.isdigit() and int(text) <= 255):
        return text
    raise ValueError(
        f"Can not parse option {text!r}: use an option number (0 to 255) or one of "
        f"{', '.join(_DHCP_OPTION_NAMES)}"
    )


DHCPOption = Annotated[str, AfterValidator(_check_dhcp_option)]


def _check_requested_option(text: str) -> str:
    return text and _check_dhcp_option(text)  # an empty option only sets skipDefault


class ProvideOption(GoStruct):
    """A DHCP option sent to the server."""

    option: DHCPOption = Field(description="The option: a number (0-255) or its name.")
    value: str = Field(default="", max_length=255, description="The value to send.")
    from_arg: str = Field(
        default="", alias="fromArg", description="Send the value of this CNI_ARGS key instead."
    )


class RequestOption(GoStruct):
    """A DHCP option asked from the server."""

    skip_default: bool = Field(
        default=False,
        alias="skipDefault",
        description="Do not ask for the default options (routers, subnet-mask).",
    )
    option: Annotated[str, AfterValidator(_check_requested_option)] = Field(
        default="", description="The option: a number (0-255) or its name."
    )


class DHCP(GoStruct):
    """Get addresses from a DHCP server through the dhcp daemon running on the host."""

    type: str = Field(description='"dhcp".')
    daemon_socket_path: str = Field(
        default="",
        alias="daemonSocketPath",
        description="The dhcp daemon's socket; default /run/cni/dhcp.sock.",
    )
    provide: list[ProvideOption] | None = Field(
        default=None, description="Options to send to the DHCP server."
    )
    request: list[RequestOption] | None = Field(
        default=None, description="Options to ask the DHCP server for."
    )
    priority: Annotated[GoInt, Since((1, 6, 0))] = Field(
        default=0, description="The metric of the routes the lease gives."
    )
