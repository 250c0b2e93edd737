"""Network configuration: one plugin's config (``NetConf``) and a conflist (``NetConfList``).

Plugin configs keep every key they do not model, so a config read and written back is
unchanged apart from what the caller set. Keys match fields case-insensitively, as Go's
decoder matches struct fields.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cnisdk.spec._json import fold_keys, go_type_name
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


class NetConf(_GoDecoded):
    """One plugin's network configuration, as a plugin receives it on stdin.

    Subclass it to declare your plugin's own fields; anything you do not declare is kept in
    ``model_extra`` and written back unchanged.
    """

    cni_version: str = Field(default="0.1.0", alias="cniVersion")
    """The spec version of this config; a missing or empty ``cniVersion`` means 0.1.0."""
    name: str = ""
    type: str = ""
    capabilities: dict[str, bool] = Field(default_factory=dict)
    ipam: dict[str, Any] | None = None
    dns: DNS | None = None
    args: dict[str, Any] | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict, alias="runtimeConfig")
    prev_result: dict[str, Any] | None = Field(default=None, alias="prevResult")

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

    @property
    def effective_version(self) -> str:
        """The version the chain runs at: the highest usable of ``cniVersions`` + ``cniVersion``.

        As libcni: entries newer than what we speak are skipped; none left means 0.1.0.
        """
        usable = [
            v
            for v in [*self.cni_versions, self.cni_version]
            if v and parse_version(v) <= parse_version(CURRENT_VERSION)
        ]
        if not usable:
            return self.cni_version or "0.1.0"
        return max(usable, key=parse_version)


def _load_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"error parsing {what}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"error parsing {what}: expected a JSON object, got {go_type_name(doc)}")
    return doc


def parse_netconf(data: bytes | str) -> dict[str, Any]:
    """Read a single plugin config file as libcni's ``ConfFromBytes`` does.

    :return: the config object, unchanged.
    :raises ValueError: ``error parsing configuration: missing 'type'`` and the like.
    """
    doc = _load_object(data, "configuration")
    plugin_type = doc.get("type", "")
    if not isinstance(plugin_type, str):
        raise ValueError(
            "error parsing configuration: json: cannot unmarshal "
            f"{go_type_name(plugin_type)} into Go struct field NetConf.type of type string"
        )
    if plugin_type == "":
        raise ValueError("error parsing configuration: missing 'type'")
    return doc


def parse_conflist(data: bytes | str) -> NetConfList:
    """Read a conflist as libcni's ``ConfListFromBytes`` does, with its error messages.

    Plugin entries are returned as raw objects; top-level keys other than the known ones are
    not passed to plugins by a runtime, but they are kept here.
    """
    where = "configuration list"
    raw = _load_object(data, where)
    if "name" not in raw:
        raise ValueError(f"error parsing {where}: no name")
    if not isinstance(raw["name"], str):
        raise ValueError(f"error parsing {where}: invalid name type {go_type_name(raw['name'])}")
    if "cniVersion" in raw and not isinstance(raw["cniVersion"], str):
        raise ValueError(
            f"error parsing {where}: invalid cniVersion type {go_type_name(raw['cniVersion'])}"
        )
    flags: dict[str, bool] = {}
    for key in ("disableCheck", "disableGC", "loadOnlyInlinedPlugins"):
        if key not in raw:
            continue
        value = raw[key]
        if key == "disableCheck" and isinstance(value, str) and value.lower() in {"true", "false"}:
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"error parsing {where}: invalid {key} type {go_type_name(value)}")
        flags[key] = value
    versions = raw.get("cniVersions", [])
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        kind = go_type_name(versions)
        raise ValueError(f"error parsing {where}: invalid cniVersions type {kind}")
    for version in versions:
        try:
            parse_version(version)
        except ValueError as exc:
            raise ValueError(f"error parsing {where}: invalid version {version}: {exc}") from exc
    if "plugins" not in raw:
        raise ValueError(f"error parsing {where}: no 'plugins' key")
    plugins = raw["plugins"]
    if not isinstance(plugins, list):
        raise ValueError(f"error parsing {where}: invalid 'plugins' type {go_type_name(plugins)}")
    if not plugins:
        raise ValueError(f"error parsing {where}: no plugins in list")
    for index, plugin in enumerate(plugins):
        try:
            if not isinstance(plugin, dict):
                raise ValueError(
                    "error parsing configuration: json: cannot unmarshal "
                    f"{go_type_name(plugin)} into Go value of type types.NetConf"
                )
            parse_netconf(json.dumps(plugin))
        except ValueError as exc:
            raise ValueError(f"failed to parse plugin config {index}: {exc}") from exc
    return NetConfList.model_validate({**raw, **flags})
