"""A temporary CNI bin directory holding launchers for cnisdk plugin types."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["make_cni_bin_dir"]

SYSTEM_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def make_cni_bin_dir(directory: Path, plugin_types: Sequence[str]) -> list[str]:
    """Write launchers for ``plugin_types`` into ``directory``.

    :return: a CNI path: ``directory`` first, then the system plugin directories that exist,
        so chains can mix your plugins with the reference plugins (bridge, host-local, ...).
    """
    from cnisdk._discovery import get_plugin
    from cnisdk._launcher import write_launcher

    for plugin_type in plugin_types:
        write_launcher(directory, get_plugin(plugin_type))
    return [str(directory), *(d for d in SYSTEM_PLUGIN_DIRS if Path(d).is_dir())]
