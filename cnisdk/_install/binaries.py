"""What goes into the CNI bin directory: a launcher per plugin type, and the interpreter they run.

Launchers are rendered and written by :mod:`cnisdk._launcher`; this module only decides
whether each is in place (same bytes, mode 0755) and which ones uninstall may delete (only
files that are cnisdk launchers). :func:`install_runtime` copies a self-contained Python
tree onto the node for launchers to run when the node has no Python of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Collection
from pathlib import Path

from cnisdk._discovery import PluginEntry
from cnisdk._files import TMP_SUFFIX, fsync_dir, holds, remove_durably, symlink_atomic
from cnisdk._install.spec import InstallError, InstallSpec, Outcome
from cnisdk._launcher import is_launcher, launcher_bytes, write_launcher

__all__ = ["install_runtime", "launchers_out_of_place", "remove_launchers", "write_launchers"]


def _failed(spec: InstallSpec, exc: Exception) -> InstallError:
    return InstallError(f"cannot write launchers into {spec.bin_dir}: {exc}")


def _out_of_place(spec: InstallSpec) -> list[PluginEntry]:
    """The plugins whose launcher is missing or differs from what install writes.

    :raises InstallError: a launcher cannot be rendered (an unusable shim binary, ...).
    """
    try:
        return [
            plugin
            for plugin in spec.plugins
            if not holds(spec.bin_dir / plugin.type, launcher_bytes(plugin, spec.python), 0o755)
        ]
    except (OSError, ValueError) as exc:
        raise _failed(spec, exc) from None


def launchers_out_of_place(spec: InstallSpec) -> list[Path]:
    """The launchers that are missing or differ from what install writes.

    :raises InstallError: a launcher cannot be rendered.
    """
    return [spec.bin_dir / plugin.type for plugin in _out_of_place(spec)]


def write_launchers(spec: InstallSpec, outcome: Outcome) -> None:
    """Write each plugin's launcher that is not in place already (the one place the
    installer writes launchers; rendering and writing them is :mod:`cnisdk._launcher`'s).

    :raises InstallError: a launcher cannot be rendered or written.
    """
    for plugin in _out_of_place(spec):
        try:
            write_launcher(spec.bin_dir, plugin, spec.python)
        except (OSError, ValueError) as exc:
            raise _failed(spec, exc) from None
        outcome.files.append(str(spec.bin_dir / plugin.type))


def remove_launchers(spec: InstallSpec, outcome: Outcome, keep: Collection[str] = ()) -> None:
    """Delete the launchers of the spec's types that cnisdk wrote, except the types in
    ``keep``; a foreign file of the same name stays."""
    for plugin in spec.plugins:
        launcher = spec.bin_dir / plugin.type
        if plugin.type in keep:
            continue
        if is_launcher(launcher) and remove_durably(launcher):
            outcome.files.append(str(launcher))
        elif os.path.lexists(launcher):
            outcome.notes.append(f"left {launcher}: not a cnisdk launcher")


def _tree_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if (Path(root) / d).is_symlink()]):
            path = Path(root) / name
            st = path.lstat()
            rel = path.relative_to(source)
            link = os.readlink(path) if path.is_symlink() else ""
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\0{link}\n".encode())
    return digest.hexdigest()[:16]


def install_runtime(source: Path, dest: Path) -> tuple[Path, bool]:
    """Copy a self-contained Python tree onto the node: ``dest/<digest>``, ``dest/current`` -> it.

    Each version lands in its own directory (copied to a temp name, then renamed), and the
    ``current`` symlink is swapped atomically, so a plugin exec never sees a half-copied tree.
    The previous version is kept for execs still running from it; older ones are removed.

    :return: the ``current`` path (as seen here) and whether anything changed.
    """
    digest = _tree_digest(source)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / digest
    current = dest / "current"
    previous = os.readlink(current) if current.is_symlink() else None
    if previous == digest and final.is_dir():
        return current, False
    if not final.is_dir():
        staging = dest / f".{digest}{TMP_SUFFIX}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, symlinks=True)
        os.rename(staging, final)
        fsync_dir(dest)
    symlink_atomic(current, digest)
    for child in dest.iterdir():
        if child.name not in (digest, previous, "current") and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
    return current, True
