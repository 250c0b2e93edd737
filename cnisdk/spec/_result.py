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
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnisdk.spec._errors import ConversionError
from cnisdk.spec._json import (
    GoJSONError,
    dumps_go,
    fold_keys,
    go_json_kind,
    go_quote,
    go_sorted,
    loads_go,
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
    "empty_result",
    "parse_cidr",
    "parse_ip",
    "parse_prev_result",
    "parse_result",
    "result_to_dict",
    "result_to_json",
]

_V020: tuple[str, ...] = ("0.1.0", "0.2.0")
_V040: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0")
_V100: tuple[str, ...] = ("1.0.0", "1.1.0")

# The versions each Go creator accepts for a decoded result's own cniVersion, in Go's order
# (used verbatim in its error message).
_CREATOR_020: tuple[str, ...] = ("", "0.1.0", "0.2.0")

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


# --------------------------------------------------------------------------- decoding
#
# Raw JSON is first checked against a schema of Go kinds, so type errors read like Go's and
# JSON null behaves as in Go (a no-op for value fields, "absent" for pointers and slices),
# then folded to the canonical key names and handed to pydantic for the value checks.

_Kind = str | tuple[str, "_Schema"]
_Schema = dict[str, tuple[str, _Kind]]  # canonical key -> (Go type name, kind)

_DNS_SCHEMA: _Schema = {
    "nameservers": ("[]string", "strlist"),
    "domain": ("string", "str"),
    "search": ("[]string", "strlist"),
    "options": ("[]string", "strlist"),
}
_ROUTE_SCHEMA: _Schema = {
    "dst": ("types.IPNet", "ipnet"),
    "gw": ("net.IP", "ip"),
    "mtu": ("int", "int"),
    "advmss": ("int", "int"),
    "priority": ("int", "int"),
    "table": ("*int", "pint"),
    "scope": ("*int", "pint"),
}
_IP100_SCHEMA: _Schema = {
    "interface": ("*int", "pint"),
    "address": ("types.IPNet", "ipnet"),
    "gateway": ("net.IP", "ip"),
}
_IP040_SCHEMA: _Schema = {"version": ("string", "str"), **_IP100_SCHEMA}
_IF100_SCHEMA: _Schema = {
    "name": ("string", "str"),
    "mac": ("string", "str"),
    "mtu": ("int", "int"),
    "sandbox": ("string", "str"),
    "socketPath": ("string", "str"),
    "pciID": ("string", "str"),
}
_IF040_SCHEMA: _Schema = {
    "name": ("string", "str"),
    "mac": ("string", "str"),
    "sandbox": ("string", "str"),
}
_IP020_SCHEMA: _Schema = {
    "ip": ("types.IPNet", "ipnet"),
    "gateway": ("net.IP", "ip"),
    "routes": ("[]types.Route", ("list", _ROUTE_SCHEMA)),
}
_RESULT100_SCHEMA: _Schema = {
    "cniVersion": ("string", "str"),
    "interfaces": ("[]*Interface", ("list", _IF100_SCHEMA)),
    "ips": ("[]*IPConfig", ("list", _IP100_SCHEMA)),
    "routes": ("[]*types.Route", ("list", _ROUTE_SCHEMA)),
    "dns": ("types.DNS", ("obj", _DNS_SCHEMA)),
}
_RESULT040_SCHEMA: _Schema = {
    **_RESULT100_SCHEMA,
    "interfaces": ("[]*Interface", ("list", _IF040_SCHEMA)),
    "ips": ("[]*IPConfig", ("list", _IP040_SCHEMA)),
}
_RESULT020_SCHEMA: _Schema = {
    "cniVersion": ("string", "str"),
    "ip4": ("*IPConfig", ("pobj", _IP020_SCHEMA)),
    "ip6": ("*IPConfig", ("pobj", _IP020_SCHEMA)),
    "dns": ("types.DNS", ("obj", _DNS_SCHEMA)),
}

# Kinds for which JSON null leaves the Go value untouched (so an earlier duplicate survives).
_NULL_IS_NOOP = {"str", "int", "obj"}


def _type_error(value: Any, path: str, go_type: str) -> ConversionError:
    what = go_json_kind(value)
    if what == "number" and go_type.endswith("int"):
        what = f"number {value}"
    return ConversionError(
        f"json: cannot unmarshal {what} into Go struct field {path} of type {go_type}"
    )


_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean_str(value: str) -> str:
    # Go replaces lone surrogates (and invalid UTF-8) with U+FFFD while decoding.
    return _SURROGATES.sub("\ufffd", value)


def _decode_obj(raw: Any, schema: _Schema, path: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _type_error(raw, path, "struct")
    # Drop nulls that Go ignores before folding, so an earlier duplicate key keeps its value.
    canonical = {name.lower(): name for name in schema}
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        name = canonical.get(key.lower()) if isinstance(key, str) else None
        if name is None:
            continue
        kind = schema[name][1]
        if value is None and (kind if isinstance(kind, str) else kind[0]) in _NULL_IS_NOOP:
            continue
        kept.pop(key, None)
        kept[key] = value
    out: dict[str, Any] = {}
    for name, value in fold_keys(kept, schema).items():
        go_type, kind = schema[name]
        decoded = _decode_value(value, go_type, kind, f"{path}.{name}")
        if decoded is not None:
            out[name] = decoded
    for name, (_, kind) in schema.items():
        # Go leaves a missing CIDR as a nil IPNet and prints "<nil>"; we refuse it instead.
        if kind == "ipnet" and name not in out:
            out[name] = ""
    return out


def _decode_value(value: Any, go_type: str, kind: _Kind, path: str) -> Any:
    if isinstance(kind, tuple):
        shape, sub = kind
        if value is None:
            return None
        if shape in ("obj", "pobj"):
            return _decode_obj(value, sub, path)
        if not isinstance(value, list):
            raise _type_error(value, path, go_type)
        items: list[Any] = []
        for item in value:
            if item is None:
                raise ConversionError(f"json: null entry in {path} is not supported")
            items.append(_decode_obj(item, sub, path))
        return items
    if kind in ("str", "ipnet", "ip"):
        if value is None:
            # A null CIDR reaches Go's IPNet.UnmarshalJSON as "", which fails to parse.
            return "" if kind == "ipnet" else None
        if not isinstance(value, str):
            raise _type_error(value, path, go_type)
        return _clean_str(value)
    if kind in ("int", "pint"):
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not _GO_INT_MIN <= value <= _GO_INT_MAX
        ):
            raise _type_error(value, path, "int")
        return value
    if kind == "strlist":
        if value is None:
            return None
        if not isinstance(value, list):
            raise _type_error(value, path, go_type)
        strings: list[str] = []
        for item in value:
            if item is None:
                strings.append("")  # null into a Go string is a no-op: the zero value stays
            elif not isinstance(item, str):
                raise _type_error(item, path, "string")
            else:
                strings.append(_clean_str(item))
        return strings
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover


def _load_json(data: bytes | str) -> Any:
    try:
        return loads_go(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    except GoJSONError as exc:
        raise ConversionError(str(exc)) from None


def _go_list(items: tuple[str, ...]) -> str:
    # Go's %v of a []string: space separated inside brackets, no quoting.
    return "[" + " ".join(items) + "]"


_ModelT = type[Result] | type[Result040] | type[Result020]


def _validate(model: _ModelT, doc: dict[str, Any]) -> AnyResult:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ValueError):
            raise ConversionError(str(cause)) from None
        where = ".".join(str(part) for part in error["loc"])
        raise ConversionError(f"json: invalid value for {where}: {error['msg']}") from None


def _creator(
    model: _ModelT, schema: _Schema, versions: tuple[str, ...]
) -> Callable[[Any], AnyResult]:
    def create(doc: Any) -> AnyResult:
        fields = _decode_obj({} if doc is None else doc, schema, "Result")
        version = fields.get("cniVersion", "")
        # Go checks the version only after the whole document decoded successfully.
        result = _validate(model, fields)
        if version not in versions:
            raise ConversionError(
                f"result type supports {_go_list(versions)} but unmarshalled CNIVersion "
                f"is {go_quote(version)}"
            )
        return result

    return create


def _create_020_checked(doc: Any) -> AnyResult:
    fields = _decode_obj({} if doc is None else doc, _RESULT020_SCHEMA, "Result")
    result = _validate(Result020, fields)
    version = fields.get("cniVersion", "")
    if version not in _CREATOR_020:
        raise ConversionError(
            f"result type supports {_go_list(_CREATOR_020)} but unmarshalled CNIVersion "
            f"is {go_quote(version)}"
        )
    if version == "":
        result.cni_version = "0.1.0"
    return result


_CREATORS: dict[str, Callable[[Any], AnyResult]] = {}
for _v in _CREATOR_020:
    _CREATORS[_v] = _create_020_checked
for _v in _V040:
    _CREATORS[_v] = _creator(Result040, _RESULT040_SCHEMA, _V040)
for _v in _V100:
    _CREATORS[_v] = _creator(Result, _RESULT100_SCHEMA, _V100)


def parse_result(data: bytes | str | Mapping[str, Any], version: str) -> AnyResult:
    """Parse a result as Go's ``create.Create(version, data)``.

    ``version`` picks the result family; the decoded result's own ``cniVersion`` must then be
    one that family accepts (``""`` becomes 0.1.0 in the 0.1.0/0.2.0 family).

    :param data: the JSON document, as bytes, text or already decoded.
    :param version: the version whose creator parses it (usually the config's).
    :raises ConversionError: with Go's message, e.g. ``unsupported CNI result version "9"``,
        ``result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.4.0"``,
        ``invalid CIDR address: 10.0.0.2``.
    """
    create = _CREATORS.get(version)
    if create is None:
        raise ConversionError(f"unsupported CNI result version {go_quote(version)}")
    doc = _load_json(data) if isinstance(data, bytes | str) else data
    if not isinstance(doc, Mapping) and doc is not None:
        raise ConversionError(
            f"json: cannot unmarshal {go_json_kind(doc)} into Go value of type Result"
        )
    return create(doc)


def parse_prev_result(prev: Mapping[str, Any], config_version: str) -> AnyResult:
    """Parse a config's ``prevResult`` as Go's ``version.ParsePrevResult``.

    A prevResult without ``cniVersion`` inherits ``config_version``; an explicit ``""`` does
    not (Go injects the config version under the key ``CNIVersion``, which sorts before
    ``cniVersion`` and so loses to it). The result is parsed by the config version's creator,
    so config 0.4.0 accepts a 0.3.1 prevResult but config 1.0.0 refuses a 0.4.0 one.

    :raises ConversionError: ``could not parse prevResult: <reason>``.
    """
    raw = dict(prev)
    if "CNIVersion" not in raw or raw["CNIVersion"] == "":
        raw["CNIVersion"] = config_version
    try:
        return parse_result(go_sorted(raw), config_version)
    except ConversionError as exc:
        raise ConversionError(f"could not parse prevResult: {exc}") from None


def empty_result(version: str) -> AnyResult:
    """A result of ``version`` with nothing in it (``""`` gives a 0.1.0 result).

    :raises ConversionError: ``unsupported CNI result version "x"`` for unknown versions.
    """
    return parse_result({"cniVersion": version}, version)


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
