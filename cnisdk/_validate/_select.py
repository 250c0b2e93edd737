"""Which file of a directory a runtime uses (CV50x), as :func:`cnisdk._confdir.select_network`
decides it for every part of cnisdk."""

from __future__ import annotations

from pathlib import Path

from cnisdk._confdir import Candidate, select_network
from cnisdk._validate._findings import Finding, finding

__all__ = ["candidates", "selection_findings"]


def candidates(directory: Path) -> tuple[list[Candidate], Path | None]:
    """Every config file of ``directory`` in runtime order, each loaded as a runtime loads it,
    and the one a runtime uses.

    :raises OSError: the directory cannot be listed.
    """
    selection = select_network(directory, read_all=True)
    chosen = selection.chosen.path if selection.chosen is not None else None
    return list(selection.candidates), chosen


def selection_findings(
    directory: Path, files: list[Path], chosen: Path | None
) -> tuple[Finding | None, dict[Path, Finding]]:
    """The directory's own finding (none loads) and each file's note about the selection."""
    if chosen is None:
        return (
            finding(
                "CV500",
                f"no file in {directory} loads as a network config, so the node reports "
                '"no networks found" and pods cannot start; fix the errors below or add a '
                ".conflist",
            ),
            {},
        )
    notes: dict[Path, Finding] = {}
    before = True
    for path in files:
        if path == chosen:
            before = False
        elif before:
            notes[path] = finding(
                "CV502",
                f"CRI-O and kubelet skip this broken file and use {chosen.name}, but containerd "
                "stops here and loads no network: fix or remove it",
            )
        else:
            notes[path] = finding(
                "CV501",
                f"not used: runtimes use the first loadable file in name order, {chosen.name}; "
                "rename this file (e.g. a lower numeric prefix) if it should win",
            )
    return None, notes
