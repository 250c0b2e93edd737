"""CNI results in every spec version, parsed, converted and printed as Go's ``pkg/types`` does.

There are three result families, each with its own model:

* :class:`Result` for 1.0.0 and 1.1.0 (the one plugin authors work with),
* :class:`Result040` for 0.3.0, 0.3.1 and 0.4.0 (``ips[].version`` exists only here),
* :class:`Result020` for 0.1.0 and 0.2.0 (``ip4``/``ip6``).

Behaviour follows the newest Go library (spec 1.1.0 supported, current version 1.1.0,
1.0.0 <-> 1.1.0 conversion only relabels, the 1.1 route fields live in the route type that
every family shares).

Choices worth knowing:

* **Unknown result keys are dropped** (``extra="ignore"``), as Go's typed parsing drops them.
  Keeping them would make our output differ from a Go plugin's for the same input.
* Keys match case-insensitively and the last duplicate wins, as with Go's decoder.
* Addresses and gateways are stored in Go's printed form (``net.IPNet.String()`` /
  ``net.IP.String()``): IPv6 is lower-cased and compressed, an IPv4-mapped IPv6 address
  prints as IPv4, host bits are kept.
* :func:`convert_result` sets an empty ``cni_version`` on its argument to the type's
  implemented version before converting, exactly like Go's ``GetAsVersion``; so the
  argument is mutated in that one case.
* A missing ``address``/``dst``/``ip`` is an error (``invalid CIDR address: ``). Go accepts it
  and prints ``"<nil>"``, which no consumer can use.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnisdk.spec._json import (
    dumps_go,
)

__all__ = [
    "DNS",
    "AnyResult",
    "IPConfig",
    "IPConfig020",
    "IPConfig040",
    "Interface",
    "Interface040",
    "Result",
    "Result020",
    "Result040",
    "Route",
    "parse_cidr",
    "parse_ip",
    "result_to_dict",
    "result_to_json",
]

_V020: tuple[str, ...] = ("0.1.0", "0.2.0")
_V040: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0")
_V100: tuple[str, ...] = ("1.0.0", "1.1.0")

_GO_INT_MIN = -(2**63)
_GO_INT_MAX = 2**63 - 1

_GoInt = Annotated[int, Field(ge=_GO_INT_MIN, le=_GO_INT_MAX)]
"""Go's ``int`` on 64-bit platforms: a value Go could not hold is refused."""


# --------------------------------------------------------------------------- addresses


def _go_ip_string(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # Go prints any address whose To4() is non-nil (IPv4 or IPv4-mapped IPv6) as dotted quad.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def _parse_go_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Python accepts an IPv6 scope ("%eth0") that Go's ParseIP/ParseCIDR refuse.
    if "%" in text or not text.isascii():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_cidr(text: str) -> str:
    """Validate a CIDR string as Go's ``types.ParseCIDR`` and return Go's printed form.

    Host bits are kept (``10.0.0.2/24`` stays as is). An IPv4-mapped IPv6 prefix prints as
    IPv4 with the prefix shortened by 96 bits (floored at 0), as Go does.

    :raises ValueError: ``invalid CIDR address: <text>``.
    """
    addr, sep, prefix = text.partition("/")
    ip = _parse_go_ip(addr) if sep else None
    # Go's dtoi: ASCII digits only, leading zeros allowed.
    if ip is None or not re.fullmatch(r"[0-9]{1,8}", prefix):
        raise ValueError(f"invalid CIDR address: {text}")
    length = int(prefix)
    if length > ip.max_prefixlen:
        raise ValueError(f"invalid CIDR address: {text}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        length = max(length - 96, 0)
    return f"{_go_ip_string(ip)}/{length}"


def parse_ip(text: str) -> str | None:
    """Validate an IP as Go's ``net.IP`` text decoding and return Go's printed form.

    ``""`` means absent (``None``), as Go decodes it to a nil IP.

    :raises ValueError: ``invalid IP address: <text>``.
    """
    if text == "":
        return None
    ip = _parse_go_ip(text)
    if ip is None:
        raise ValueError(f"invalid IP address: {text}")
    return _go_ip_string(ip)


def _is_v4_cidr(cidr: str) -> bool:
    # Stored CIDRs are in Go's printed form, where To4() != nil exactly when there is no ":".
    return ":" not in cidr


# --------------------------------------------------------------------------- models

_MODEL_CONFIG = ConfigDict(
    populate_by_name=True, extra="ignore", validate_assignment=True, defer_build=True
)


class DNS(BaseModel):
    """DNS settings of a result (``types.DNS``); every field may be empty."""

    model_config = _MODEL_CONFIG

    nameservers: list[str] = Field(default_factory=list)
    domain: str = ""
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)

    def is_empty(self) -> bool:
        """True when nothing is set (Go's ``DNS.IsEmpty``)."""
        return not (self.nameservers or self.domain or self.search or self.options)


class Route(BaseModel):
    """A route (``types.Route``), shared by every result family as in the newest Go library.

    ``mtu``, ``advmss`` and ``priority`` are omitted from output when 0; ``table`` and
    ``scope`` are pointers in Go, so an explicit 0 is kept and only ``None`` is omitted.
    """

    model_config = _MODEL_CONFIG

    dst: str
    gw: str | None = None
    mtu: _GoInt = 0
    advmss: _GoInt = 0
    priority: _GoInt = 0
    table: _GoInt | None = None
    scope: _GoInt | None = None

    @field_validator("dst")
    @classmethod
    def _check_dst(cls, value: str) -> str:
        return parse_cidr(value)

    @field_validator("gw")
    @classmethod
    def _check_gw(cls, value: str | None) -> str | None:
        return None if value is None else parse_ip(value)

    def is_ipv4(self) -> bool:
        """Whether ``dst`` is an IPv4 (or IPv4-mapped) prefix, Go's ``Dst.IP.To4() != nil``."""
        return _is_v4_cidr(self.dst)


class _IPBase(BaseModel):
    model_config = _MODEL_CONFIG

    interface: _GoInt | None = None
    address: str
    gateway: str | None = None

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return parse_cidr(value)

    @field_validator("gateway")
    @classmethod
    def _check_gateway(cls, value: str | None) -> str | None:
        return None if value is None else parse_ip(value)

    def is_ipv4(self) -> bool:
        """Whether ``address`` is IPv4 (or IPv4-mapped), Go's ``Address.IP.To4() != nil``."""
        return _is_v4_cidr(self.address)


class IPConfig(_IPBase):
    """An address of a 1.0.0/1.1.0 result; ``interface`` indexes ``Result.interfaces``."""


class IPConfig040(_IPBase):
    """An address of a 0.3.x/0.4.0 result; ``version`` is ``"4"`` or ``"6"`` (not checked,
    as in Go) and is always printed, even when empty."""

    version: str = ""


class Interface(BaseModel):
    """An interface of a 1.0.0/1.1.0 result (``mtu``, ``socketPath``, ``pciID`` are 1.1.0)."""

    model_config = _MODEL_CONFIG

    name: str = ""
    mac: str = ""
    mtu: _GoInt = 0
    sandbox: str = ""
    socket_path: str = Field(default="", alias="socketPath")
    pci_id: str = Field(default="", alias="pciID")


class Interface040(BaseModel):
    """An interface of a 0.3.x/0.4.0 result."""

    model_config = _MODEL_CONFIG

    name: str = ""
    mac: str = ""
    sandbox: str = ""


class IPConfig020(BaseModel):
    """The ``ip4``/``ip6`` block of a 0.1.0/0.2.0 result.

    Its routes are the shared :class:`Route`, as in the newest Go library.
    """

    model_config = _MODEL_CONFIG

    ip: str
    gateway: str | None = None
    routes: list[Route] = Field(default_factory=list)

    @field_validator("ip")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        return parse_cidr(value)

    @field_validator("gateway")
    @classmethod
    def _check_gateway(cls, value: str | None) -> str | None:
        return None if value is None else parse_ip(value)


class _ResultMixin:
    def convert_to(self, version: str) -> AnyResult:
        """This result in ``version``; see :func:`convert_result`."""
        from cnisdk.spec._convert import convert_result

        return convert_result(self._self(), version)

    def to_current(self) -> Result:
        """This result as a 1.1.0 :class:`Result`; see :func:`to_current`."""
        from cnisdk.spec._convert import to_current

        return to_current(self._self())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document Go prints for this result; see :func:`result_to_dict`."""
        return result_to_dict(self._self())

    def to_json(self) -> bytes:
        """The bytes Go prints for this result; see :func:`result_to_json`."""
        return result_to_json(self._self())

    def _self(self) -> AnyResult:
        assert isinstance(self, Result | Result040 | Result020)
        return self


class Result(_ResultMixin, BaseModel):
    """A 1.0.0/1.1.0 result: the result type plugin authors build and receive."""

    model_config = _MODEL_CONFIG

    cni_version: str = Field(default="", alias="cniVersion")
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)


class Result040(_ResultMixin, BaseModel):
    """A 0.3.0/0.3.1/0.4.0 result."""

    model_config = _MODEL_CONFIG

    cni_version: str = Field(default="", alias="cniVersion")
    interfaces: list[Interface040] = Field(default_factory=list)
    ips: list[IPConfig040] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)


class Result020(_ResultMixin, BaseModel):
    """A 0.1.0/0.2.0 result."""

    model_config = _MODEL_CONFIG

    cni_version: str = Field(default="", alias="cniVersion")
    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    dns: DNS = Field(default_factory=DNS)


AnyResult: TypeAlias = Result | Result040 | Result020
"""A result of any CNI version."""


# --------------------------------------------------------------------------- output


def _go_map_number(value: int) -> int:
    # 1.x results are re-marshalled through map[string]interface{}, so numbers become float64
    # and precision beyond 2**53 is lost. (Go's exponent form starts at 1e21, beyond int64.)
    return int(float(value))


def _dns_dict(dns: DNS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out


def _route_dict(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": route.dst}
    if route.gw:
        out["gw"] = route.gw
    if route.mtu:
        out["mtu"] = route.mtu
    if route.advmss:
        out["advmss"] = route.advmss
    if route.priority:
        out["priority"] = route.priority
    if route.table is not None:
        out["table"] = route.table
    if route.scope is not None:
        out["scope"] = route.scope
    return out


def _ip_dict(ipc: IPConfig | IPConfig040) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(ipc, IPConfig040):
        out["version"] = ipc.version
    if ipc.interface is not None:
        out["interface"] = ipc.interface
    out["address"] = ipc.address
    if ipc.gateway:
        out["gateway"] = ipc.gateway
    return out


def _interface_dict(iface: Interface | Interface040) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if isinstance(iface, Interface) and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if isinstance(iface, Interface):
        if iface.socket_path:
            out["socketPath"] = iface.socket_path
        if iface.pci_id:
            out["pciID"] = iface.pci_id
    return out


def _ip020_dict(block: IPConfig020) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": block.ip}
    if block.gateway:
        out["gateway"] = block.gateway
    if block.routes:
        out["routes"] = [_route_dict(route) for route in block.routes]
    return out


def _as_go_map(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_go_map(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_as_go_map(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return _go_map_number(value)
    return value


def result_to_dict(result: AnyResult) -> dict[str, Any]:
    """The JSON document Go prints for ``result`` as it is (no conversion).

    1.0.0/1.1.0 (:class:`Result`): keys alphabetical at every level, ``dns`` omitted when
    empty. 0.x: Go struct field order, ``"dns": {}`` always present. Empty optional fields
    are omitted; ``interfaces[].name`` and 0.4 ``ips[].version`` are always present.
    """
    out: dict[str, Any] = {}
    if result.cni_version:
        out["cniVersion"] = result.cni_version
    if isinstance(result, Result020):
        if result.ip4 is not None:
            out["ip4"] = _ip020_dict(result.ip4)
        if result.ip6 is not None:
            out["ip6"] = _ip020_dict(result.ip6)
        out["dns"] = _dns_dict(result.dns)
        return out
    if result.interfaces:
        out["interfaces"] = [_interface_dict(iface) for iface in result.interfaces]
    if result.ips:
        out["ips"] = [_ip_dict(ipc) for ipc in result.ips]
    if result.routes:
        out["routes"] = [_route_dict(route) for route in result.routes]
    if isinstance(result, Result040):
        out["dns"] = _dns_dict(result.dns)
        return out
    if not result.dns.is_empty():
        out["dns"] = _dns_dict(result.dns)
    converted: dict[str, Any] = _as_go_map(out)
    return converted


def result_to_json(result: AnyResult) -> bytes:
    """The bytes Go's ``Result.Print`` writes: 4-space indented, no trailing newline."""
    return dumps_go(result_to_dict(result))
