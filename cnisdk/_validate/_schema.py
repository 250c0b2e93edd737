"""The JSON Schema (draft 2020-12) of a plugin's config, for ``cnisdk schema TYPE``.

Built from the same model validate checks entries with (a cnisdk plugin's ``config_model``,
or a reference plugin's model), then made useful to editors and CI: ``$schema`` and a title,
a plain-text description for every field (reST markup removed), ``type`` required, the
release a reference plugin field appeared in, and ``additionalProperties`` saying what the
plugin does with keys it does not declare (it accepts them, so the schema does too).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from cnisdk._validate._keys import nested_models
from cnisdk._validate._reference import (
    MODELS_RELEASE,
    REFERENCE_PLUGINS,
    ReferencePlugin,
    Since,
    release_text,
)

__all__ = ["DIALECT", "SchemaError", "plain_text", "plugin_schema", "schema_types"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Keys the spec and its conventions define (for a plugin entry, DNS settings and routes): their
# descriptions, for models that do not describe them.
_SPEC_FIELDS = {
    "cniVersion": "The CNI spec version of the config; in a conflist the runtime sets it to "
    "the list's.",
    "name": "The network name; in a conflist the runtime sets it to the list's.",
    "type": "The plugin: the name of its binary in the CNI bin directory.",
    "capabilities": "Capabilities the entry enables (name: true); the runtime passes their "
    "arguments in runtimeConfig.",
    "ipam": 'The IPAM plugin to run and its settings, e.g. {"type": "host-local", ...}.',
    "dns": "DNS settings to return in the result.",
    "args": 'Extra arguments by the CNI conventions, e.g. {"cni": {"ips": [...]}}.',
    "runtimeConfig": "Written by the runtime from the enabled capabilities; not for stored "
    "configs.",
    "prevResult": "Written by the runtime: the previous plugin's result; not for stored configs.",
    "nameservers": "Name server addresses.",
    "domain": "The local domain.",
    "search": "Search domains.",
    "options": "resolv.conf options.",
    "dst": "A route's destination, with its prefix length: 0.0.0.0/0.",
    "gw": "A route's next hop; empty: the gateway of the address's range.",
    "mtu": "The route's MTU.",
    "advmss": "The route's advertised MSS.",
    "priority": "The route's priority (metric).",
    "table": "The routing table to add the route to.",
    "scope": "The route's scope.",
}


class SchemaError(LookupError):
    """No plugin of the type is known, or its cnisdk class does not load."""


def plain_text(text: str) -> str:
    """A docstring as plain text: reST roles and literals unwrapped, one paragraph per line."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"::(\s|$)", r":\1", text)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n".join(p for p in paragraphs if p)


def schema_types() -> list[str]:
    """Every type ``cnisdk schema`` knows: installed cnisdk plugins, then reference plugins."""
    from cnisdk import _discovery

    try:
        installed = list(_discovery.find_plugins())
    except _discovery.PluginLoadError:
        installed = []
    return installed + [t for t in REFERENCE_PLUGINS if t not in installed]


def plugin_schema(plugin_type: str) -> dict[str, Any]:
    """The schema of ``plugin_type``'s config: a cnisdk plugin's, else a reference plugin's.

    :raises SchemaError: the type is unknown or its cnisdk class does not load.
    """
    from cnisdk import _discovery

    try:
        entry = _discovery.find_plugins().get(plugin_type)
    except _discovery.PluginLoadError as exc:
        raise SchemaError(str(exc)) from None
    if entry is not None:
        try:
            cls = entry.load()
        except _discovery.PluginLoadError as exc:
            raise SchemaError(str(exc)) from None
        about = plain_text(cls.about or cls.__doc__ or "")
        return _finish(
            cls.config_model,
            title=f"{plugin_type}: a plugin entry (cnisdk plugin {entry.distribution})",
            description=about,
            unknown=f"{plugin_type} keeps keys it does not declare and passes them on "
            "unchanged, but never reads them (cnisdk validate reports them: CV320).",
        )
    reference = REFERENCE_PLUGINS.get(plugin_type)
    if reference is None:
        known = ", ".join(schema_types())
        raise SchemaError(f"no plugin of type {plugin_type!r} is known (known: {known})")
    return _reference_schema(reference)


def _reference_schema(reference: ReferencePlugin) -> dict[str, Any]:
    source = f"containernetworking/plugins {release_text(MODELS_RELEASE)}"
    what = (
        "the ipam object of a main plugin's entry"
        if reference.kind == "ipam"
        else ("a plugin entry")
    )
    since = (
        f" Part of the plugins since {release_text(reference.since)}."
        if reference.since > (1, 0, 0)
        else ""
    )
    return _finish(
        reference.model,
        title=f"{reference.type}: {what} ({source})",
        description=reference.summary + since,
        unknown=f"{reference.type} ignores keys it does not know, silently: a misspelt key has "
        "no effect (cnisdk validate reports them: CV320).",
    )


def _finish(
    model: type[BaseModel], *, title: str, description: str, unknown: str
) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    for cls in nested_models(model):
        target = schema if cls is model else definitions.get(cls.__name__)
        if target is not None:
            _annotate(target, cls, unknown)
    for target in definitions.values():
        _describe(target)
    properties = schema.get("properties", {})
    if "type" in properties:
        properties["type"].pop("default", None)
        required = schema.setdefault("required", [])
        if "type" not in required:
            required.insert(0, "type")
    out: dict[str, Any] = {"$schema": DIALECT, "title": title}
    if description:
        out["description"] = description
    out.update((k, v) for k, v in schema.items() if k not in ("title", "description"))
    if definitions:
        out["$defs"] = definitions
    return out


def _annotate(target: dict[str, Any], cls: type[BaseModel], unknown: str) -> None:
    """Field descriptions (with the release that added a field) and what unknown keys do."""
    properties = target.get("properties", {})
    for name, info in cls.model_fields.items():
        prop = properties.get(info.alias or name)
        if prop is None:
            continue
        since = next((m.release for m in info.metadata if isinstance(m, Since)), None)
        if since is not None:
            text = prop.get("description", "")
            prop["description"] = (
                f"{text} (containernetworking/plugins {release_text(since)} and later)".strip()
            )
    _describe(target)
    if target.get("additionalProperties", True) is not False:
        target["additionalProperties"] = {"description": unknown}


def _describe(target: dict[str, Any]) -> None:
    if "description" in target:
        target["description"] = plain_text(target["description"])
    target.pop("title", None)
    for key, prop in target.get("properties", {}).items():
        prop.pop("title", None)
        text = prop.get("description") or _SPEC_FIELDS.get(key, "")
        if text:
            prop["description"] = plain_text(text)
