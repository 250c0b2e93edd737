"""Go's view of a plugin config, as pydantic types: what ``encoding/json`` decodes into a
plugin's struct, and the parsers Go plugins run on its strings.

- Keys match struct fields case-insensitively; ``null`` leaves a field unset; a key the
  struct does not have is ignored (kept here in ``model_extra`` so validate can name it).
- Numbers go into ``int``/``uint32``/``uint64`` fields only as integers in range (Go refuses
  ``1.0``, ``1e3``, ``-1`` into a uint); strings, bools, arrays and objects only into fields of
  that kind (strict mode).
- ``net.IP``, ``types.IPNet`` and MAC strings are parsed as Go's ``net.ParseIP``,
  ``net.ParseCIDR`` and ``net.ParseMAC`` parse them, with their error messages.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from cnisdk.spec._config import NetConf, _GoDecoded
from cnisdk.spec._errors import CNIError
from cnisdk.spec._names import validate_interface_name

__all__ = [
    "MTU",
    "CheckContext",
    "GoCIDR",
    "GoIP",
    "GoInt",
    "GoMAC",
    "GoPluginConf",
    "GoStruct",
    "GoUint32",
    "GoUint64",
    "IPAddress",
    "IfName",
    "Problem",
    "Release",
    "Since",
    "go_parse_cidr",
    "go_parse_ip",
    "release_text",
]

Release = tuple[int, int, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def release_text(release: Release) -> str:
    """``v1.6.0`` for ``(1, 6, 0)``."""
    return "v" + ".".join(map(str, release))


@dataclass(frozen=True)
class Since:
    """Field metadata: the containernetworking/plugins release that added the field."""

    release: Release


@dataclass(frozen=True)
class Problem:
    """A rule of the Go plugin that the config breaks.

    :ivar code: ``CV311`` (the plugin refuses the ADD), ``CV312`` (it ignores or replaces the
        setting) or ``CV313`` (the judged release does not have it).
    :ivar path: where, relative to the object checked (``()`` for the object itself).
    """

    code: str
    path: tuple[str | int, ...]
    message: str


@dataclass(frozen=True)
class CheckContext:
    """What a plugin's rules may depend on besides its own config."""

    release: Release
    """The containernetworking/plugins release judged against."""
    version: str
    """The chain's effective cniVersion."""
    capabilities: frozenset[str] = frozenset()
    """The capabilities the entry enables (their arguments come in ``runtimeConfig``)."""
    position: int = 0
    """The entry's index in the chain."""
    duplicated: frozenset[tuple[str | int, ...]] = frozenset()
    """Paths (relative to the object checked) of keys the file gives more than once."""


def _drop_nulls(data: Any) -> Any:
    # Go leaves a field as it is when its JSON value is null.
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


class GoStruct(_GoDecoded):
    """A Go struct that ``encoding/json`` decodes; subclasses declare its fields."""

    model_config = ConfigDict(strict=True)
    missing: ClassVar[dict[str, str]] = {}
    """For a required field: the plugin's message when it is missing."""

    @model_validator(mode="before")
    @classmethod
    def _go_nulls(cls, data: Any) -> Any:
        return _drop_nulls(data)

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        """The plugin's rules across fields (the types are checked by the model)."""
        return iter(())


class GoPluginConf(NetConf):
    """A plugin's whole config entry: Go's ``types.NetConf`` embedded in the plugin's struct."""

    model_config = ConfigDict(strict=True)
    missing: ClassVar[dict[str, str]] = {}
    """For a required field: the plugin's message when it is missing."""
    needs_ipam: ClassVar[str | None] = None
    """When the plugin cannot work without an IPAM plugin: the text saying so."""

    @model_validator(mode="before")
    @classmethod
    def _go_nulls(cls, data: Any) -> Any:
        return _drop_nulls(data)

    def problems(self, ctx: CheckContext) -> Iterator[Problem]:
        """The plugin's rules across fields (the types are checked by the model)."""
        if self.needs_ipam and not (self.ipam or {}).get("type"):
            yield Problem("CV311", ("ipam", "type"), self.needs_ipam)


def _int_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


GoInt = Annotated[int, _int_range(-(1 << 63), (1 << 63) - 1)]
"""Go's ``int`` (64-bit)."""
GoUint32 = Annotated[int, Field(ge=0, le=(1 << 32) - 1)]
GoUint64 = Annotated[int, Field(ge=0, le=(1 << 64) - 1)]


def _check_mtu(value: int) -> int:
    if 0 < value < 68:
        raise ValueError("must be 0 (the kernel's choice) or at least 68: the kernel refuses less")
    return value


MTU = Annotated[int, Field(ge=0, le=65535), AfterValidator(_check_mtu)]
"""An MTU the plugin sets on a link: 0 leaves the kernel's default (or the link's MTU)."""


def go_parse_ip(text: str) -> IPAddress | None:
    """``net.ParseIP``: dotted IPv4 (no leading zeros), IPv6 (no zone); ``None`` if invalid.

    An IPv4-mapped IPv6 address is returned as IPv4, as Go's ``To4`` sees it.
    """
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def go_parse_cidr(text: str) -> tuple[IPAddress, int, bool]:
    """``types.ParseCIDR``: the address as written, the prefix length, and whether the
    prefix counts IPv6 bits (``::ffff:a.b.c.d/n`` does, although the address is IPv4).

    :raises ValueError: ``invalid CIDR address: <text>`` (Go's message).
    """
    address_text, slash, prefix = text.partition("/")
    address = go_parse_ip(address_text) if slash else None
    if address is None or not prefix.isdigit() or not prefix.isascii():
        raise ValueError(f"invalid CIDR address: {text}")
    v6_bits = ":" in address_text
    length = int(prefix)
    if length > (128 if v6_bits else 32):
        raise ValueError(f"invalid CIDR address: {text}")
    return address, length, v6_bits


def _check_ip(text: str) -> str:
    # An empty string is a nil net.IP: the same as leaving the field out.
    if text and go_parse_ip(text) is None:
        raise ValueError(f"invalid IP address: {text}")
    return text


def _check_cidr(text: str) -> str:
    go_parse_cidr(text)
    return text


_MAC = re.compile(
    r"(?:[0-9A-Fa-f]{2}(?P<sep>[:-]))(?:[0-9A-Fa-f]{2}(?P=sep))*[0-9A-Fa-f]{2}\Z"
    r"|(?:[0-9A-Fa-f]{4}\.)+[0-9A-Fa-f]{4}\Z"
)


def _check_mac(text: str) -> str:
    """``net.ParseMAC``: 6, 8 or 20 bytes, as ``aa:bb:..``, ``aa-bb-..`` or ``aabb.ccdd...``.

    An empty string leaves the address unset.
    """
    if not text:
        return text
    match = _MAC.match(text)
    size = len(re.findall(r"[0-9A-Fa-f]{2}", text)) if match else 0
    if size not in (6, 8, 20):
        raise ValueError(f"address {text}: invalid MAC address")
    return text


def _check_ifname(text: str) -> str:
    if not text:
        return text  # not given: the plugin's default (or its own "is required" check)
    try:
        validate_interface_name(text)
    except CNIError as exc:
        raise ValueError(
            f"{text!r} is not an interface name the kernel accepts: {exc.msg}"
        ) from None
    return text


GoIP = Annotated[str, AfterValidator(_check_ip)]
"""A ``net.IP`` field: an IPv4 or IPv6 address as a string."""
GoCIDR = Annotated[str, AfterValidator(_check_cidr)]
"""A ``types.IPNet`` field: an address with a prefix length, ``10.1.0.0/16``."""
GoMAC = Annotated[str, AfterValidator(_check_mac)]
"""A MAC address string that the plugin parses with ``net.ParseMAC`` (empty: unset)."""
IfName = Annotated[str, AfterValidator(_check_ifname)]
"""An interface name the plugin creates or looks up (at most 15 bytes, no '/', ':', space)."""
