"""A temporary CNI bin directory holding launchers for cnisdk plugin types."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["make_cni_bin_dir", "write_recording_plugin"]

SYSTEM_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")

_RECORDER = """#!/bin/sh
# cnisdk test kit: runs {target} and keeps a copy of its stdout in {record_dir}/{name}.<verb>.
out=$({target})
rc=$?
printf '%s' "$out" > {record_dir}/{name}."$CNI_COMMAND"
printf '%s' "$out"
exit $rc
"""


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


def write_recording_plugin(bin_dir: Path, plugin_type: str, target: str, record_dir: Path) -> Path:
    """Put a wrapper named ``plugin_type`` in ``bin_dir`` that runs ``target`` unchanged and
    keeps each verb's stdout in ``record_dir/<plugin_type>.<CNI_COMMAND>``.

    Use it to compare what a plugin in a chain really printed with what the next one, or the
    runtime, made of it. (``$(...)`` drops trailing newlines, which no CNI output carries.)

    :return: the wrapper's path.
    """
    import shlex

    bin_dir.mkdir(parents=True, exist_ok=True)
    record_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / plugin_type
    wrapper.write_text(
        _RECORDER.format(
            target=shlex.quote(target),
            record_dir=shlex.quote(str(record_dir)),
            name=shlex.quote(plugin_type),
        )
    )
    wrapper.chmod(0o755)
    return wrapper
