"""Network configuration: one plugin's config (``NetConf``) and a conflist (``NetConfList``).

Plugin configs keep every key they do not model, so a config read and written back is
unchanged apart from what the caller set. Keys match fields case-insensitively, as Go's
decoder matches struct fields.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from cnisdk.spec._json import (
    GoJSONError,
    fold_keys,
    go_json_kind,
    go_quote,
    go_type_name,
    loads_go,
)
from cnisdk.spec._result import DNS
from cnisdk.spec._versions import CURRENT_VERSION, parse_version

__all__ = ["NetConf", "NetConfList", "parse_conflist", "parse_netconf"]


class _GoDecoded(BaseModel):
    """A model decoded like Go's ``encoding/json``: keys match fields case-insensitively."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = [info.alias or name for name, info in cls.model_fields.items()]
        return fold_keys(data, known)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the keys that were given (or set) and every unknown key, unchanged."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# NetConf's string fields (plain strings in Go's types.NetConf): a JSON null leaves them unset.
_NULL_IS_ABSENT = frozenset({"cniversion", "name", "type"})


class NetConf(_GoDecoded):
    """One plugin's network configuration, as a plugin receives it on stdin.

    Subclass it to declare your plugin's own fields; anything you do not declare is kept in
    ``model_extra`` and written back unchanged.
    """

    cni_version: str = Field(default="0.1.0", alias="cniVersion")
    """The spec version of this config; a missing or empty ``cniVersion`` means 0.1.0."""
    name: str = ""
    type: str = ""
    capabilities: dict[str, StrictBool] = Field(default_factory=dict)
    """Go's ``map[string]bool``: a value that is not a JSON boolean is a config error."""
    ipam: dict[str, Any] | None = None
    dns: DNS | None = None
    args: dict[str, Any] | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict, alias="runtimeConfig")
    prev_result: dict[str, Any] | None = Field(default=None, alias="prevResult")

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # Go's decoder leaves a string field alone when the document holds null for it, so
        # "cniVersion": null reads as absent (0.1.0), and an earlier spelling of the key
        # keeps its value. Runs before the keys are folded, so that earlier value survives.
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None or key.lower() not in _NULL_IS_ABSENT
        }

    @field_validator("capabilities", "runtime_config", mode="before")
    @classmethod
    def _null_map_is_empty(cls, value: Any) -> Any:
        # Go sets a map to nil for null (and plugins declare runtimeConfig as a struct or a map).
        return {} if value is None else value

    @field_validator("capabilities", mode="before")
    @classmethod
    def _null_capability_is_false(cls, value: Any) -> Any:
        # A null element of Go's map[string]bool decodes as false.
        if isinstance(value, dict):
            return {key: False if item is None else item for key, item in value.items()}
        return value

    @model_validator(mode="after")
    def _empty_version_is_010(self) -> Self:
        if self.cni_version == "":
            self.cni_version = "0.1.0"
        return self


class NetConfList(_GoDecoded):
    """A network configuration list (``.conflist``): the chain a runtime runs for one network."""

    cni_version: str = Field(default="", alias="cniVersion")
    cni_versions: list[str] = Field(default_factory=list, alias="cniVersions")
    name: str
    disable_check: bool = Field(default=False, alias="disableCheck")
    disable_gc: bool = Field(default=False, alias="disableGC")
    load_only_inlined_plugins: bool = Field(default=False, alias="loadOnlyInlinedPlugins")
    plugins: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fold_known_keys(cls, data: Any) -> Any:
        # libcni reads a conflist into a map, so its keys match exactly: unlike a plugin's
        # config (a Go struct), "Name" is not "name".
        return data

    @property
    def effective_version(self) -> str:
        """The version the chain runs at: the highest usable of ``cniVersions`` + ``cniVersion``.

        As libcni: entries newer than what we speak are skipped; none left means 0.1.0.
        Without ``cniVersions`` the list's ``cniVersion`` is taken as it is, parsable or not
        (libcni loads such a list; its plugins then refuse the version).
        """
        if not self.cni_versions:
            return self.cni_version or "0.1.0"
        usable = [
            v
            for v in [*self.cni_versions, self.cni_version]
            if v and parse_version(v) <= parse_version(CURRENT_VERSION)
        ]
        if not usable:
            return self.cni_version or "0.1.0"
        return max(usable, key=parse_version)


_ListT = TypeVar("_ListT", bound=NetConfList)


def _load_object(data: bytes | str, what: str, go_type: str) -> dict[str, Any]:
    """``json.Unmarshal(data, &<go_type>)`` as libcni does it, with Go's messages.

    Go reads bytes: invalid UTF-8 is accepted (as U+FFFD), so a config holding a latin-1
    byte loads on a node and must load here too. ``null`` leaves the target empty.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        doc = loads_go(raw)
    except GoJSONError as exc:
        raise ValueError(f"error parsing {what}: {exc}") from None
    return _as_object(doc, what, go_type)


def _as_object(doc: Any, what: str, go_type: str) -> dict[str, Any]:
    """A decoded JSON value unmarshalled into a Go struct or map: ``null`` is empty."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(
            f"error parsing {what}: json: cannot unmarshal {go_json_kind(doc)} into Go value "
            f"of type {go_type}"
        )
    return doc


# libcni decodes every plugin entry into a Go types.PluginConf: a value of the wrong JSON type
# in one of its fields makes the whole file fail to load. Keys match case-insensitively.
_PLUGIN_CONF_FIELDS = {
    "cniversion": ("cniVersion", "string"),
    "name": ("name", "string"),
    "type": ("type", "string"),
    "capabilities": ("capabilities", "map[string]bool"),
    "ipam": ("ipam", "types.IPAM"),
    "dns": ("dns", "types.DNS"),
    "prevresult": ("prevResult", "map[string]interface {}"),
}
_DNS_FIELDS = {
    "nameservers": ("nameservers", "[]string"),
    "domain": ("domain", "string"),
    "search": ("search", "[]string"),
    "options": ("options", "[]string"),
}


def _go_field_error(value: Any, path: str, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {go_json_kind(value)} into Go struct field {path} "
        f"of type {go_type}"
    )


def _plugin_conf_type_error(doc: dict[str, Any]) -> str | None:
    """The first error Go's decoder reports for ``doc`` as a ``types.PluginConf``, or None."""
    for key, value in doc.items():
        field = _PLUGIN_CONF_FIELDS.get(key.lower())
        if field is None or value is None:
            continue  # unknown keys are kept; null leaves a Go field as it is
        name, go_type = field
        path = f"PluginConf.{name}"
        if go_type == "string":
            if not isinstance(value, str):
                return _go_field_error(value, path, go_type)
        elif go_type == "map[string]bool":
            if not isinstance(value, dict):
                return _go_field_error(value, path, go_type)
            for item in value.values():
                if item is not None and not isinstance(item, bool):
                    return _go_field_error(item, path, "bool")
        elif go_type == "map[string]interface {}":
            if not isinstance(value, dict):
                return _go_field_error(value, path, go_type)
        elif not isinstance(value, dict):
            return _go_field_error(value, path, go_type)
        elif go_type == "types.IPAM":
            for sub_key, sub in value.items():
                if sub_key.lower() == "type" and sub is not None and not isinstance(sub, str):
                    return _go_field_error(sub, f"{path}.type", "string")
        else:
            error = _dns_type_error(value, path)
            if error is not None:
                return error
    return None


def _dns_type_error(dns: dict[str, Any], path: str) -> str | None:
    for key, value in dns.items():
        field = _DNS_FIELDS.get(key.lower())
        if field is None or value is None:
            continue
        name, go_type = field
        if go_type == "string":
            if not isinstance(value, str):
                return _go_field_error(value, f"{path}.{name}", go_type)
        elif not isinstance(value, list):
            return _go_field_error(value, f"{path}.{name}", go_type)
        else:
            for item in value:
                if not isinstance(item, str):
                    return _go_field_error(item, f"{path}.{name}", "string")
    return None


def parse_netconf(data: bytes | str) -> dict[str, Any]:
    """Read a single plugin config as libcni's ``ConfFromBytes`` does (into a Go
    ``types.PluginConf``), with its error messages.

    :return: the config object, unchanged.
    :raises ValueError: ``error parsing configuration: missing 'type'`` and the like.
    """
    return _check_plugin_conf(_load_object(data, "configuration", "types.PluginConf"))


def _check_plugin_conf(doc: dict[str, Any]) -> dict[str, Any]:
    error = _plugin_conf_type_error(doc)
    if error is not None:
        raise ValueError(f"error parsing configuration: {error}")
    if fold_keys(doc, ("type",)).get("type") in (None, ""):
        raise ValueError("error parsing configuration: missing 'type'")
    return doc


def _read_bool(value: Any, key: str, where: str) -> bool:
    """libcni's ``readBool``: a JSON bool, or the string "true"/"false" in any case."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"error parsing {where}: invalid type {go_type_name(value)} for {key}")
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"error parsing {where}: invalid value {go_quote(lowered)} for {key}")
    return lowered == "true"


def _check_cni_versions(raw: dict[str, Any], where: str) -> None:
    """libcni's checks of ``cniVersions`` (and then of ``cniVersion``), with its messages."""
    if "cniVersions" not in raw:
        return
    versions = raw["cniVersions"]
    if not isinstance(versions, list):
        # Go prints the type of the failed assertion's zero value, whatever the JSON held.
        raise ValueError(f"error parsing {where}: invalid type for cniVersions: []interface {{}}")
    for index, version in enumerate(versions):
        if not isinstance(version, str):
            raise ValueError(
                f"error parsing {where}: invalid type for cniVersions index {index}: "
                f"{go_type_name(version)}"
            )
        try:
            parse_version(version)
        except ValueError as exc:
            raise ValueError(
                f"error parsing {where}: invalid cniVersions entry {version} at index {index}: "
                f"{exc}"
            ) from None
    version = raw.get("cniVersion") or ""
    if version:
        try:
            parse_version(version)
        except ValueError as exc:
            raise ValueError(
                f"error parsing {where}: invalid cniVersion {version}: {exc}"
            ) from None


def parse_conflist(data: bytes | str, model: type[_ListT] = NetConfList) -> _ListT:  # type: ignore[assignment]
    """Read a conflist as libcni's ``ConfListFromBytes`` does, with its error messages.

    Plugin entries are returned as raw objects; top-level keys other than the known ones are
    not passed to plugins by a runtime, but they are kept here.

    :param model: the class to build (a :class:`NetConfList` subclass), straight from the
        decoded document.
    """
    where = "configuration list"
    raw = _load_object(data, where, "map[string]interface {}")
    if "name" not in raw:
        raise ValueError(f"error parsing {where}: no name")
    if not isinstance(raw["name"], str):
        raise ValueError(f"error parsing {where}: invalid name type {go_type_name(raw['name'])}")
    if "cniVersion" in raw and not isinstance(raw["cniVersion"], str):
        raise ValueError(
            f"error parsing {where}: invalid cniVersion type {go_type_name(raw['cniVersion'])}"
        )
    _check_cni_versions(raw, where)
    flags: dict[str, bool] = {}
    for key in ("disableCheck", "disableGC", "loadOnlyInlinedPlugins"):
        if key in raw:
            flags[key] = _read_bool(raw[key], key, where)
    if "plugins" not in raw:
        if flags.get("loadOnlyInlinedPlugins"):
            raise ValueError(
                f"error parsing {where}: `loadOnlyInlinedPlugins` is true, and no 'plugins' key"
            )
        # Plugins may come from <dir>/<name>/*.conf when the list is read from a file.
        return model.model_validate({**raw, **flags})
    plugins = raw["plugins"]
    if not isinstance(plugins, list):
        raise ValueError(f"error parsing {where}: invalid 'plugins' type {go_type_name(plugins)}")
    if not plugins:
        raise ValueError(f"error parsing {where}: no plugins in list")
    for index, plugin in enumerate(plugins):
        # libcni marshals each entry and reads it back with ConfFromBytes; a decoded value
        # reads back as itself, so the entry is checked as it is (no re-encoding, which
        # would also recurse once per level of nesting that Go allows).
        try:
            _check_plugin_conf(_as_object(plugin, "configuration", "types.PluginConf"))
        except ValueError as exc:
            raise ValueError(f"failed to parse plugin config {index}: {exc}") from exc
    return model.model_validate({**raw, **flags})
