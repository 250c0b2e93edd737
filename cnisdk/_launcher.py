"""Launchers: the small executables a runtime finds in its CNI bin directory.

A launcher starts the interpreter cnisdk is installed in, imports the plugin class directly
(no entry-point scan at exec time) and hands it to the exec-mode skel.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from cnisdk._discovery import PluginEntry

__all__ = ["LAUNCHER_MARKER", "is_launcher", "render_launcher", "write_launcher"]

LAUNCHER_MARKER = "# cnisdk launcher"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def render_launcher(entry: PluginEntry, python: str | None = None) -> str:
    """The launcher script for one plugin type.

    ``-I`` keeps the environment of the runtime (``PYTHONPATH``, the working directory, user
    site-packages) from changing what a root-run plugin imports.
    """
    interpreter = python or sys.executable
    for name in (entry.module, entry.attr):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not an importable name: {name!r}")
    if any(ch.isspace() for ch in interpreter):
        raise ValueError(f"interpreter path must not contain whitespace: {interpreter!r}")
    owner, _, rest = entry.attr.partition(".")
    target = f"{owner}.{rest}" if rest else owner
    return (
        f"#!{interpreter} -I\n"
        f"{LAUNCHER_MARKER} for CNI plugin type {entry.type!r} "
        f"({entry.distribution} {entry.version}); written by `cnisdk install`.\n"
        "from cnisdk._skel import run\n"
        f"from {entry.module} import {owner}\n"
        f"run({target})\n"
    )


def write_launcher(bin_dir: Path, entry: PluginEntry, python: str | None = None) -> Path:
    """Write (or replace) the launcher for ``entry`` in ``bin_dir`` atomically, mode 0755.

    :return: the launcher's path.
    """
    text = render_launcher(entry, python)
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / entry.type
    if target.parent != bin_dir:
        raise ValueError(f"plugin type {entry.type!r} is not a plain file name")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.type}.", suffix=".tmp", dir=bin_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o755)
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def is_launcher(path: Path) -> bool:
    """Whether ``path`` is a launcher written by cnisdk (its second line is our marker)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    lines = head.split(b"\n")
    return len(lines) > 1 and lines[1].startswith(LAUNCHER_MARKER.encode())
