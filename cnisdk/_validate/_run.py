"""A validate run: read the paths, check every file, probe the binaries, assemble reports."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio

from cnisdk._confdir import ConfLoadError, LoadedConfList, load_network
from cnisdk._validate._chain import IGNORES_IPAM, check_chain
from cnisdk._validate._findings import SEVERITY_RANK, FileReport, Finding, finding, join
from cnisdk._validate._parse import Parsed, parse_file
from cnisdk._validate._plugins import Catalog, KnownPlugin, check_entry, check_ipam
from cnisdk._validate._probes import BinaryOptions, check_binaries
from cnisdk._validate._reference import MODELS_RELEASE, CheckContext, Release
from cnisdk._validate._select import candidates, selection_findings

__all__ = ["ValidateError", "validate_paths"]


class ValidateError(Exception):
    """A PATH given to :func:`validate_paths` does not exist or cannot be listed."""


@dataclasses.dataclass
class _Group:
    """The files of one PATH argument."""

    directory: Path | None
    files: list[Parsed]
    chosen: Path | None = None


def _load(path: Path) -> tuple[LoadedConfList | None, str | None]:
    """The network libcni makes of a file named on the command line, or why it makes none."""
    try:
        return load_network(path, by_content=True), None
    except ConfLoadError as exc:
        return None, str(exc)


def _read_all(
    raw_paths: list[str | os.PathLike[str]], catalog: Catalog, release: Release
) -> list[_Group]:
    """Every check that reads files or imports plugin classes but runs no binary."""
    groups: list[_Group] = []
    for raw in raw_paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found, chosen = candidates(path)
            except OSError as exc:
                raise ValidateError(f"cannot list {path}: {exc.strerror or exc}") from None
            files = [parse_file(c.path, c.network, c.error) for c in found]
            groups.append(_Group(path, files, chosen))
        elif os.path.lexists(path):  # a dangling link or a link loop is reported, not refused
            groups.append(_Group(None, [parse_file(path, *_load(path))]))
        else:
            raise ValidateError(f"{path}: no such file or directory")
    for group in groups:
        for parsed in group.files:
            if parsed.doc is not None:
                check_chain(parsed.plugins, _check_plugins(parsed, catalog, release),
                            parsed.findings)  # fmt: skip
    return groups


def _duplicated(parsed: Parsed, base: tuple[str | int, ...]) -> frozenset[tuple[str | int, ...]]:
    """Paths under ``base`` of the keys the file repeats, relative to ``base``."""
    index = parsed.document.index if parsed.document is not None else None
    if index is None:
        return frozenset()
    size = len(base)
    return frozenset(
        parts[size:] for *_, parts in index.duplicates if parts[:size] == base and len(parts) > size
    )


def _check_plugins(parsed: Parsed, catalog: Catalog, release: Release) -> set[str]:
    """Check each entry of a known plugin; return the cnisdk types that must be chained."""
    chained: set[str] = set()
    name = parsed.doc.get("name") if parsed.doc is not None else None
    injected: dict[str, Any] = {"cniVersion": parsed.version}
    if isinstance(name, str):
        injected["name"] = name
    for position, (where, conf) in enumerate(parsed.plugins):
        plugin_type = conf.get("type")
        if not isinstance(plugin_type, str) or not plugin_type:
            continue
        base: tuple[str | int, ...] = ("plugins", position) if where else ()
        caps = conf.get("capabilities")
        enabled = (
            frozenset(k for k, v in caps.items() if v is True)
            if isinstance(caps, dict)
            else frozenset()
        )
        ctx = CheckContext(release, parsed.version, enabled, position, _duplicated(parsed, base))
        plugin = catalog.get(plugin_type)
        if isinstance(plugin, str):
            parsed.findings.append(
                finding(
                    "CV301",
                    f"{plugin}; reinstall the distribution that provides {plugin_type!r}",
                    join(where, "type"),
                )
            )
        elif plugin is not None:
            if plugin.plugin_class is not None and plugin.chained:
                chained.add(plugin_type)
            parsed.findings += check_entry(plugin, conf, where, ctx, injected)
        ipam = conf.get("ipam")
        if plugin_type in IGNORES_IPAM or not isinstance(ipam, dict):
            continue
        ipam_plugin = catalog.get(ipam["type"]) if isinstance(ipam.get("type"), str) else None
        if (
            isinstance(ipam_plugin, KnownPlugin)
            and ipam_plugin.reference is not None
            and ipam_plugin.reference.kind == "ipam"
        ):
            ipam_ctx = dataclasses.replace(ctx, duplicated=_duplicated(parsed, (*base, "ipam")))
            parsed.findings += check_ipam(ipam_plugin, ipam, join(where, "ipam"), ipam_ctx)
    return chained


def _finish(parsed: Parsed, extra: Iterable[Finding] = ()) -> list[Finding]:
    """The file's findings: libcni's refusal if nothing else explains it, lines, order."""
    findings = [*parsed.findings, *extra]
    explained = any(f.severity == "error" and not f.code.startswith("CV2") for f in findings)
    if parsed.load_error is not None and not explained:
        findings.append(
            finding(
                "CV009",
                f"libcni does not load this file: {parsed.load_error}; runtimes skip it or fail",
            )
        )
    index = parsed.document.index if parsed.document is not None else None
    if index is not None:
        findings = [
            f if f.line is not None else dataclasses.replace(f, line=index.line(f.location))
            for f in findings
        ]
    # Most severe first; within a severity, the order the checks ran (file order).
    return sorted(findings, key=lambda f: SEVERITY_RANK[f.severity])


async def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    cni_path: Sequence[str],
    exec_binaries: bool = True,
    check_presence: bool = True,
    timeout: float | None = 10,  # noqa: ASYNC109
    plugins_release: Release | None = None,
) -> list[FileReport]:
    """Validate config files and directories of them.

    :param paths: files (any extension) or directories (their ``.conf``, ``.conflist`` and
        ``.json`` files, in the order runtimes read them).
    :param cni_path: directories searched for plugin binaries, in order.
    :param exec_binaries: run each plugin's VERSION command (``False`` for ``--no-exec``).
    :param check_presence: look the binaries up at all (``False`` for ``--config-only``).
    :param timeout: seconds each VERSION run may take.
    :param plugins_release: the containernetworking/plugins release the nodes run; ``None``
        judges against the release the models follow (and leaves those plugins' supported
        versions to their VERSION answer).
    :return: one report per file, in argument order then name order; a directory without a
        usable file also gets a report of its own, with ``selected`` ``None``.
    :raises ValidateError: if a path does not exist or a directory cannot be listed.
    """
    catalog = Catalog()
    release = plugins_release or MODELS_RELEASE
    # Reading files and importing plugin classes block; keep them off the event loop.
    groups = await anyio.to_thread.run_sync(_read_all, list(paths), catalog, release)
    options = BinaryOptions(cni_path, check_presence, exec_binaries, timeout, plugins_release)
    checked = [p for g in groups for p in g.files if p.doc is not None]
    await check_binaries(checked, catalog, options)
    reports: list[FileReport] = []
    for group in groups:
        if group.directory is None:
            reports += [FileReport(str(p.path), None, _finish(p)) for p in group.files]
            continue
        paths_in = [p.path for p in group.files]
        missing, notes = selection_findings(group.directory, paths_in, group.chosen)
        if missing is not None:
            reports.append(FileReport(str(group.directory), None, [missing]))
        for parsed in group.files:
            note = [notes[parsed.path]] if parsed.path in notes else []
            reports.append(
                FileReport(str(parsed.path), parsed.path == group.chosen, _finish(parsed, note))
            )
    if catalog.error is not None:
        for report in reports:
            report.findings.append(
                finding(
                    "CV301",
                    f"cnisdk plugins could not be listed: {catalog.error}; their configs were "
                    "not checked against their models",
                )
            )
    return reports
