"""Reading CNI results as Go's ``pkg/types`` creators do: Go's type errors and null handling,
case-insensitive keys, the version each creator accepts, ``prevResult`` in the config's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from cnisdk.spec._errors import ConversionError
from cnisdk.spec._json import GoJSONError, fold_keys, go_json_kind, go_quote, go_sorted, loads_go
from cnisdk.spec._result import (
    _GO_INT_MAX,
    _GO_INT_MIN,
    _V040,
    _V100,
    AnyResult,
    Result,
    Result020,
    Result040,
)

__all__ = ["empty_result", "parse_prev_result", "parse_result"]

# The versions each Go creator accepts for a decoded result's own cniVersion, in Go's order
# (used verbatim in its error message).
_CREATOR_020: tuple[str, ...] = ("", "0.1.0", "0.2.0")

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
