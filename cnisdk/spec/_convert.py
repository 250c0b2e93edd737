"""Conversion of CNI results between spec versions, exactly as Go's ``pkg/types`` converters.

Same version returns the object itself; otherwise a new object. The converters registered
are Go's (``pkg/types/internal/convert.go`` and each family's ``convert.go``), so the
conversions Go refuses are refused here with its message.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from cnisdk.spec._errors import ConversionError
from cnisdk.spec._result import (
    _V020,
    _V040,
    _V100,
    AnyResult,
    Interface,
    Interface040,
    IPConfig,
    IPConfig020,
    IPConfig040,
    Result,
    Result020,
    Result040,
    Route,
)

__all__ = ["convert_result", "to_current"]


def _route_copy(route: Route) -> Route:
    return route.model_copy(deep=True)


def _from_020_to_040(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result020)
    ips: list[IPConfig040] = []
    routes: list[Route] = []
    for block, ip_version in ((src.ip4, "4"), (src.ip6, "6")):
        if block is None:
            continue
        ips.append(IPConfig040(version=ip_version, address=block.ip, gateway=block.gateway))
        routes.extend(_route_copy(route) for route in block.routes)
    return Result040(cni_version=to, ips=ips, routes=routes, dns=src.dns.model_copy(deep=True))


def _within_040(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result040)
    copy = src.model_copy(deep=True)
    copy.cni_version = to
    return copy


def _from_040_to_020(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result040)
    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    # 0.2.0 holds one address per family: the first of each, by the version label.
    for ipc in src.ips:
        if ipc.version == "4" and ip4 is None:
            ip4 = IPConfig020(ip=ipc.address, gateway=ipc.gateway)
        elif ipc.version == "6" and ip6 is None:
            ip6 = IPConfig020(ip=ipc.address, gateway=ipc.gateway)
        if ip4 is not None and ip6 is not None:
            break
    for route in src.routes:
        target = ip4 if route.is_ipv4() else ip6
        if target is not None:
            target.routes.append(Route(dst=route.dst, gw=route.gw))
    if ip4 is None and ip6 is None:
        raise ConversionError("cannot convert: no valid IP addresses")
    return Result020(cni_version=to, ip4=ip4, ip6=ip6, dns=src.dns.model_copy(deep=True))


def _within_020(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result020)
    copy = src.model_copy(deep=True)
    copy.cni_version = to
    return copy


def _from_040_to_100(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result040)
    return Result(
        cni_version=to,
        interfaces=[Interface(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in src.interfaces],
        ips=[
            IPConfig(interface=ipc.interface, address=ipc.address, gateway=ipc.gateway)
            for ipc in src.ips
        ],
        routes=[_route_copy(route) for route in src.routes],
        dns=src.dns.model_copy(deep=True),
    )


def _from_020_to_100(src: AnyResult, to: str) -> AnyResult:
    return _from_040_to_100(_convert(src, "0.4.0"), to)


def _within_100(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result)
    copy = src.model_copy(deep=True)
    copy.cni_version = to
    return copy


def _from_100_to_040(src: AnyResult, to: str) -> AnyResult:
    assert isinstance(src, Result)
    return Result040(
        cni_version=to,
        interfaces=[
            Interface040(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in src.interfaces
        ],
        ips=[
            IPConfig040(
                version="4" if ipc.is_ipv4() else "6",
                interface=ipc.interface,
                address=ipc.address,
                gateway=ipc.gateway,
            )
            for ipc in src.ips
        ],
        routes=[_route_copy(route) for route in src.routes],
        dns=src.dns.model_copy(deep=True),
    )


def _from_100_to_020(src: AnyResult, to: str) -> AnyResult:
    return _convert(_from_100_to_040(src, "0.4.0"), to)


_Converter = Callable[[AnyResult, str], AnyResult]
_REGISTRY: list[tuple[str, tuple[str, ...], _Converter]] = [
    ("0.1.0", ("0.2.0",), _within_020),
    ("0.2.0", ("0.1.0",), _within_020),
    ("0.1.0", _V040, _from_020_to_040),
    ("0.2.0", _V040, _from_020_to_040),
    ("0.3.0", _V040, _within_040),
    ("0.3.1", _V040, _within_040),
    ("0.4.0", ("0.3.0", "0.3.1"), _within_040),
    ("0.4.0", _V020, _from_040_to_020),
    ("0.3.1", _V020, _from_040_to_020),
    ("0.3.0", _V020, _from_040_to_020),
    ("0.1.0", _V100, _from_020_to_100),
    ("0.2.0", _V100, _from_020_to_100),
    ("0.3.0", _V100, _from_040_to_100),
    ("0.3.1", _V100, _from_040_to_100),
    ("0.4.0", _V100, _from_040_to_100),
    ("1.0.0", ("1.1.0",), _within_100),
    ("1.0.0", _V040, _from_100_to_040),
    ("1.0.0", _V020, _from_100_to_020),
    ("1.1.0", _V040, _from_100_to_040),
    ("1.1.0", _V020, _from_100_to_020),
    ("1.1.0", ("1.0.0",), _within_100),
]
_CONVERTERS: dict[tuple[str, str], _Converter] = {
    (src, dst): fn for src, targets, fn in _REGISTRY for dst in targets
}
_FAMILY_VERSIONS: dict[type[BaseModel], tuple[str, ...]] = {
    Result: _V100,
    Result040: _V040,
    Result020: _V020,
}
_IMPLEMENTED: dict[type[BaseModel], str] = {Result: "1.1.0", Result040: "0.4.0", Result020: "0.2.0"}


def _convert(result: AnyResult, to: str) -> AnyResult:
    # Go's convert.Convert: no defaulting of the source version here.
    if to == "":
        to = "0.1.0"
    source = result.cni_version
    if source == to:
        return result
    converter = _CONVERTERS.get((source, to))
    if converter is None:
        raise ConversionError(f"no converter for CNI result version {source} to {to}")
    if source not in _FAMILY_VERSIONS[type(result)]:
        # Go would panic on the type assertion inside the converter.
        raise ConversionError(
            f"a {type(result).__name__} cannot carry cniVersion {source}; "
            f"no converter for CNI result version {source} to {to}"
        )
    return converter(result, to)


def convert_result(result: AnyResult, to_version: str) -> AnyResult:
    """Convert a result to another CNI version, as Go's ``Result.GetAsVersion``.

    An empty ``cni_version`` is first set, on ``result`` itself, to its type's implemented
    version (1.1.0, 0.4.0 or 0.2.0). The same version returns ``result`` itself; otherwise a
    new object. ``""`` as target means 0.1.0.

    :raises ConversionError: ``no converter for CNI result version X to Y`` or
        ``cannot convert: no valid IP addresses``.
    """
    if result.cni_version == "":
        result.cni_version = _IMPLEMENTED[type(result)]
    return _convert(result, to_version)


def to_current(result: AnyResult) -> Result:
    """Convert to a 1.1.0 :class:`Result`, the version a plugin works with.

    Unlike Go's ``NewResultFromResult``, an empty ``cni_version`` is treated as the type's
    implemented version (as :func:`convert_result` does) rather than refused.

    :raises ConversionError: when the result cannot be converted.
    """
    converted = convert_result(result, "1.1.0")
    assert isinstance(converted, Result)
    return converted
