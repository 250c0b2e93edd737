"""Plugins found through entry points (group ``cnisdk.plugins``), with the ``entrypoints`` package.

Like pluggy, problems are reported when plugins are loaded, not when a request runs: a type
registered by two distributions, an entry that does not import, or an object that is not a
``Plugin`` subclass. The exec path never scans entry points; launchers import classes directly.
"""

from __future__ import annotations

import builtins
import importlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnisdk._plugin import Plugin

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginEntry",
    "PluginLoadError",
    "find_plugins",
    "get_plugin",
    "import_plugin_class",
    "is_plugin_type",
]

ENTRY_POINT_GROUP = "cnisdk.plugins"
# A plugin type becomes a file name in a CNI bin directory.
_TYPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")


def is_plugin_type(name: str) -> bool:
    """Whether ``name`` can be a plugin type: a file name in a CNI bin directory (Go's
    ``invoke.FindInPath`` refuses path separators; the rest keeps the name safe there)."""
    return _TYPE_PATTERN.match(name) is not None


class PluginLoadError(Exception):
    """A plugin type is unknown, registered twice, or its entry point does not load."""


@dataclass(frozen=True)
class PluginEntry:
    """One plugin type registered by an installed distribution."""

    type: str
    module: str
    attr: str
    distribution: str
    version: str

    @property
    def target(self) -> str:
        """``module:attr``, what a launcher imports."""
        return f"{self.module}:{self.attr}"

    def load(self) -> builtins.type[Plugin[Any]]:
        """Import the plugin class. :raises PluginLoadError: if it is not a ``Plugin`` subclass."""
        return import_plugin_class(self.module, self.attr, self.type)


def import_plugin_class(module: str, attr: str, plugin_type: str = "") -> type[Plugin[Any]]:
    """Import ``module:attr`` and check that it is a ``cnisdk.Plugin`` subclass."""
    from cnisdk._plugin import Plugin

    label = plugin_type or f"{module}:{attr}"
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginLoadError(f"plugin {label!r} ({module}:{attr}) does not load: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Plugin)):
        raise PluginLoadError(
            f"plugin {label!r} ({module}:{attr}) is not a cnisdk.Plugin subclass: {obj!r}"
        )
    return obj


def find_plugins() -> dict[str, PluginEntry]:
    """Every plugin type registered in group ``cnisdk.plugins``, by type name.

    :raises PluginLoadError: when two distributions register the same type, or a type is not
        a valid file name.
    """
    import entrypoints

    found: dict[str, PluginEntry] = {}
    for ep in entrypoints.get_group_all(ENTRY_POINT_GROUP):
        distro = ep.distro
        entry = PluginEntry(
            type=ep.name,
            module=ep.module_name,
            attr=ep.object_name or "",
            distribution=getattr(distro, "name", "?") if distro else "?",
            version=getattr(distro, "version", "?") if distro else "?",
        )
        if not is_plugin_type(entry.type):
            raise PluginLoadError(
                f"plugin type {entry.type!r} from {entry.distribution} is not a valid file name"
            )
        if not entry.attr:
            raise PluginLoadError(
                f"plugin {entry.type!r} from {entry.distribution} must name a class "
                f"(module:Class), not a module"
            )
        previous = found.get(entry.type)
        if previous is not None and previous.target != entry.target:
            raise PluginLoadError(
                f"plugin type {entry.type!r} is registered by both {previous.distribution} "
                f"({previous.target}) and {entry.distribution} ({entry.target})"
            )
        found[entry.type] = entry
    return dict(sorted(found.items()))


def get_plugin(plugin_type: str) -> PluginEntry:
    """The entry for one plugin type. :raises PluginLoadError: if no distribution provides it."""
    plugins = find_plugins()
    try:
        return plugins[plugin_type]
    except KeyError:
        known = ", ".join(plugins) or "none"
        raise PluginLoadError(
            f"no plugin of type {plugin_type!r} is installed (entry point group "
            f"{ENTRY_POINT_GROUP!r}; installed: {known})"
        ) from None
