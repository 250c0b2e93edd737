"""What one install or uninstall is asked to do, what it did, and why it could not."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cnisdk._discovery import PluginEntry

__all__ = ["InstallError", "InstallSpec", "NoPrimaryConfig", "Outcome"]


class InstallError(Exception):
    """The install cannot be done; the message says why and what to do."""


class NoPrimaryConfig(InstallError):
    """The conf dir holds no usable network config (the primary CNI has not written one)."""


@dataclass
class InstallSpec:
    """Everything one install or uninstall needs.

    Paths named ``*_dir`` are as this process sees them; ``host_root`` is where the node's
    ``/`` is mounted here (``/`` when running on the node itself), used to translate between
    the two for paths that end up inside files the node reads (the kubeconfig path).
    """

    plugins: Sequence[PluginEntry]
    bin_dir: Path
    conf_dir: Path | None = None
    entries: Sequence[Mapping[str, Any]] = ()
    """Chained config entries (``type`` set); a type without one gets ``{"type": T}``."""
    python: str | None = None
    """The interpreter launchers run (a path on the node)."""
    serviceaccount_dir: Path | None = None
    kubeconfig: str | None = None
    """Node path of the kubeconfig (default: the entry's, else ``<conf>/ZZZ-<type>-kubeconfig``)."""
    host_root: Path = field(default_factory=lambda: Path("/"))
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def types(self) -> list[str]:
        return [p.type for p in self.plugins]

    def to_host(self, local: Path) -> PurePosixPath:
        """The node path of a path seen here."""
        absolute = Path(os.path.abspath(local))
        root = Path(os.path.abspath(self.host_root))
        try:
            return PurePosixPath("/") / absolute.relative_to(root)
        except ValueError:
            raise InstallError(f"{local} is not under --host-root {self.host_root}") from None

    def to_local(self, host: str) -> Path:
        """Where a node path is seen here.

        :raises InstallError: ``host`` is not an absolute path.
        """
        if not host.startswith("/"):
            raise InstallError(f"{host!r} is not an absolute path on the node")
        # Normalised first: "/../x" is "/x" on the node, never outside --host-root here.
        inside = PurePosixPath(os.path.normpath("/" + host.lstrip("/"))).relative_to("/")
        return Path(os.path.abspath(self.host_root)) / inside


@dataclass
class Outcome:
    """What one install or uninstall did."""

    config: Path | None = None
    """The config file our entries are in (install)."""
    configs: list[str] = field(default_factory=list)
    """Config files written or removed."""
    files: list[str] = field(default_factory=list)
    """Other files written or removed: launchers, the kubeconfig."""
    notes: list[str] = field(default_factory=list)
    """What the operator should know: files passed over, entries left in place."""

    @property
    def changed(self) -> list[str]:
        """Every file written or removed."""
        return [*self.files, *self.configs]
