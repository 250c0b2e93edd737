"""The plugins validate knows, and the checks of an entry against its plugin's model.

A type is known when a cnisdk plugin is registered for it (entry point group
``cnisdk.plugins``: its class and config model) or when it is a reference plugin
(:mod:`cnisdk._validate._reference`). An entry of a known plugin is checked against the model
(CV300 / CV310), against the plugin's own rules (CV311-CV313), for keys the plugin does not
read (CV320) and, for cnisdk plugins, for the capabilities the class asks for (CV321).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from cnisdk._validate._findings import Finding, finding, join, preview
from cnisdk._validate._keys import KeyNote, suggest, walk_keys, without
from cnisdk._validate._reference import (
    REFERENCE_PLUGINS,
    CheckContext,
    GoPluginConf,
    GoStruct,
    ReferencePlugin,
    Release,
    release_text,
    spec_versions,
)

__all__ = ["Catalog", "KnownPlugin", "check_entry", "check_ipam"]

# Keys a runtime adds to every entry it runs (or that the spec defines for all plugins): they
# never count as unknown, whatever the plugin's model declares.
_RUNTIME_KEYS = frozenset(
    {"cniVersion", "name", "type", "args", "runtimeConfig", "prevResult", "capabilities",
     "ipam", "dns", "cni.dev/valid-attachments"}
)  # fmt: skip
# Errors about these keys are the spec checks' (CV02x, CV04x); a model repeating them would
# report one mistake twice.
_SPEC_CHECKED = frozenset({"cniVersion", "name", "type", "capabilities", "prevResult",
                           "runtimeConfig", "ipam"})  # fmt: skip


@dataclass(frozen=True)
class KnownPlugin:
    """A plugin type validate has a model for."""

    type: str
    model: builtins.type[BaseModel]
    plugin_class: Any = None
    """The cnisdk ``Plugin`` subclass, for a cnisdk plugin."""
    reference: ReferencePlugin | None = None

    @property
    def chained(self) -> bool:
        """Whether the plugin needs a previous result (cannot be first in a chain)."""
        if self.reference is not None:
            return self.reference.kind == "meta"
        return bool(getattr(self.plugin_class, "chained", False))

    def versions(self, release: Release) -> tuple[str, ...]:
        """The config versions the plugin accepts, as known without running it."""
        if self.reference is not None:
            return spec_versions(release)
        return tuple(self.plugin_class.supported_versions)

    @property
    def sdk_keys(self) -> frozenset[str]:
        """Keys the SDK reads for a cnisdk plugin besides its model's fields."""
        from cnisdk._plugin import Plugin

        if self.plugin_class is None:
            return frozenset()
        # Plugin.log_settings reads these from the config; a plugin may read others instead.
        if self.plugin_class.log_settings is Plugin.log_settings:
            return frozenset({"log_level", "log_file"})
        return frozenset()


@dataclass
class Catalog:
    """Known plugins, loaded on demand: cnisdk entry points first, then reference plugins."""

    entries: dict[str, Any] | None = None
    error: str | None = None
    """Why the cnisdk plugins could not be listed, if they could not."""
    _loaded: dict[str, KnownPlugin | str] = field(default_factory=dict)

    def get(self, plugin_type: str) -> KnownPlugin | str | None:
        """The known plugin, an error message if its cnisdk class does not load, or None."""
        if plugin_type in self._loaded:
            return self._loaded[plugin_type]
        from cnisdk import _discovery

        if self.entries is None and self.error is None:
            try:
                self.entries = _discovery.find_plugins()
            except _discovery.PluginLoadError as exc:
                self.error = str(exc)
        result: KnownPlugin | str | None = None
        if self.entries is not None and plugin_type in self.entries:
            try:
                cls = self.entries[plugin_type].load()
            except _discovery.PluginLoadError as exc:
                result = str(exc)
            else:
                result = KnownPlugin(plugin_type, cls.config_model, plugin_class=cls)
        elif plugin_type in REFERENCE_PLUGINS:
            reference = REFERENCE_PLUGINS[plugin_type]
            result = KnownPlugin(plugin_type, reference.model, reference=reference)
        if result is not None:
            self._loaded[plugin_type] = result
        return result

    def is_cnisdk(self, plugin_type: str) -> bool:
        """Whether a cnisdk plugin is registered for the type (whether or not it loads)."""
        return self.entries is not None and plugin_type in self.entries


_TYPE_TEXTS = {
    "missing": "is required",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "float_type": "must be a number",
}


def describe(error: Mapping[str, Any]) -> str:
    """A pydantic error as a phrase after the key's name, in Go-plugin terms."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "value_error":
        return f"is refused: {context.get('error', error['msg'])}"
    if kind in _TYPE_TEXTS:
        return _TYPE_TEXTS[kind]
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "literal_error":
        return f"must be one of {context['expected']}"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters long"
    return str(error["msg"]).lower()


def _error_path(loc: Iterable[int | str]) -> tuple[int | str, ...]:
    # Keep keys and indexes; drop pydantic's own tags (``function-after[...]``).
    return tuple(p for p in loc if isinstance(p, int) or "[" not in p)


def _model_findings(
    code: str,
    label: str,
    model: type[BaseModel],
    data: dict[str, Any],
    where: str,
    hint: str,
    skip: frozenset[str],
) -> tuple[BaseModel | None, list[Finding]]:
    """Validate ``data``; errors about keys in ``skip`` are left to other checks."""
    findings: list[Finding] = []
    try:
        return model.model_validate(data), findings
    except ValidationError as exc:
        errors = exc.errors()
    for error in errors:
        path = _error_path(error["loc"])
        if path and path[0] in skip:
            continue
        location = where
        for part in path:
            location = join(location, part)
        key = str(path[-1]) if path else "the entry"
        if error["type"] == "missing":
            said = getattr(model, "missing", {}).get(key) if len(path) == 1 else None
            text = f"{said}" if said else f"{key} is required"
            findings.append(finding(code, f"{label}: {text}; {hint}", location))
            continue
        got = f" (got {preview(error.get('input'))})"
        findings.append(finding(code, f"{label}: {key} {describe(error)}{got}; {hint}", location))
    return None, findings


def _key_findings(plugin: KnownPlugin, notes: list[KeyNote], release: Release) -> Iterator[Finding]:
    label = plugin.type
    for note in notes:
        if note.since is not None:
            if note.since > release:
                yield finding(
                    "CV313",
                    f"{note.key} was added to {label} in {release_text(note.since)}: the "
                    f"{release_text(release)} plugins ignore it (--plugins-release); upgrade "
                    "the plugins or remove it",
                    note.location,
                )
            continue
        guess = suggest(note.key, note.known)
        does = "keeps but never reads" if plugin.plugin_class is not None else "ignores"
        if guess is not None:
            text = (
                f"{label} has no key {note.key!r}: did you mean {guess!r}? {label} {does} keys "
                "it does not know, so this setting has no effect"
            )
        else:
            text = (
                f"{label} {does} {note.key!r}: it has no effect. Remove it, or see `cnisdk "
                f"schema {label}` for the keys {label} reads"
            )
        yield finding("CV320", text, note.location)


def _problem_findings(
    label: str, conf: BaseModel, ctx: CheckContext, where: str
) -> Iterator[Finding]:
    if not isinstance(conf, GoStruct | GoPluginConf):
        return
    for problem in conf.problems(ctx):
        location = where
        for part in problem.path:
            location = join(location, part)
        text = problem.message
        yield finding(
            problem.code, text if text.startswith(label) else f"{label}: {text}", location
        )
    # Nested structs check their own rules (vlanTrunk entries, routes).
    for name, info in type(conf).model_fields.items():
        value = getattr(conf, name)
        location = join(where, info.alias or name)
        if isinstance(value, GoStruct):
            yield from _problem_findings(label, value, ctx, location)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, GoStruct):
                    yield from _problem_findings(label, item, ctx, join(location, index))


def check_entry(
    plugin: KnownPlugin,
    conf: dict[str, Any],
    where: str,
    ctx: CheckContext,
    stdin_extra: dict[str, Any],
) -> list[Finding]:
    """The findings for one chain entry of a known plugin.

    :param stdin_extra: what the runtime injects (the list's ``name`` and ``cniVersion``).
    """
    findings: list[Finding] = []
    label = plugin.type
    capabilities = ctx.capabilities
    exempt = _RUNTIME_KEYS | capabilities | plugin.sdk_keys
    notes = list(walk_keys(plugin.model, conf, where, exempt=exempt))
    if plugin.plugin_class is not None:
        _, errors = _model_findings(
            "CV300", label, plugin.model, {**conf, **stdin_extra}, where,
            f"see `cnisdk schema {label}` for the expected fields", _SPEC_CHECKED,
        )  # fmt: skip
        findings += errors
        findings += _key_findings(plugin, notes, ctx.release)
        for wanted in plugin.plugin_class.capabilities:
            if wanted not in capabilities:
                findings.append(
                    finding(
                        "CV321",
                        f"{label} asks the runtime for {wanted!r}, but this entry does not enable "
                        f'it: add "capabilities": {{"{wanted}": true}} (without it, '
                        f"{_capability_cost(wanted)})",
                        join(join(where, "capabilities"), wanted),
                    )
                )
        return findings
    reference = plugin.reference
    if reference is not None and ctx.release < reference.since:
        findings.append(
            finding(
                "CV313",
                f"{label} is not part of containernetworking/plugins before "
                f"{release_text(reference.since)} (--plugins-release {release_text(ctx.release)})",
                join(where, "type"),
            )
        )
    return findings + _reference_findings(plugin, conf, where, ctx, notes, _SPEC_CHECKED)


def _reference_findings(
    plugin: KnownPlugin,
    data: dict[str, Any],
    where: str,
    ctx: CheckContext,
    notes: list[KeyNote],
    skip: frozenset[str],
) -> list[Finding]:
    """A reference plugin's object: its model (as the judged release decodes it), its rules,
    and its keys."""
    label = plugin.type
    model, findings = _model_findings(
        "CV310", label, plugin.model, _as_released(data, notes, ctx.release), where,
        f"{label} fails every ADD with it", skip,
    )  # fmt: skip
    if model is not None:
        findings += _problem_findings(label, model, ctx, where)
    findings += _key_findings(plugin, notes, ctx.release)
    return findings


def _as_released(data: dict[str, Any], notes: list[KeyNote], release: Release) -> dict[str, Any]:
    """What the plugins of ``release`` decode: keys added later are unknown to them."""
    return without(data, [n.parts for n in notes if n.since is not None and n.since > release])


def _capability_cost(capability: str) -> str:
    if capability == "io.kubernetes.cri.pod-annotations":
        return "the runtime passes no pod annotations and every ADD costs a Kubernetes API call"
    return "the runtime does not pass its arguments"


def check_ipam(
    plugin: KnownPlugin, ipam: dict[str, Any], where: str, ctx: CheckContext
) -> list[Finding]:
    """The findings for a main plugin's ``ipam`` object, by the reference IPAM plugin's model."""
    notes = list(walk_keys(plugin.model, ipam, where))
    return _reference_findings(plugin, ipam, where, ctx, notes, frozenset({"type"}))
