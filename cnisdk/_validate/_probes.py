"""Plugin binaries (CV20x): on the CNI path, executable, and speaking the config's version.

Each binary is looked up once per run (Go's ``invoke.FindInPath``) and, unless told not to,
asked VERSION once, all concurrently, each under a timeout, with its output capped
(:func:`cnisdk._invoke.get_version_info`). Without a probe, the versions known from a model
are used: a cnisdk plugin's ``supported_versions``, or those of the reference plugins of the
release named with ``--plugins-release``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from cnisdk._invoke import (
    PluginExecError,
    PluginNotFoundError,
    PluginOutputTooLargeError,
    find_plugin,
    get_version_info,
)
from cnisdk._validate._findings import finding
from cnisdk._validate._parse import Parsed
from cnisdk._validate._plugins import Catalog, KnownPlugin
from cnisdk._validate._reference import Release
from cnisdk.spec._errors import CNIError
from cnisdk.spec._versions import ALL_VERSIONS, parse_version, supports_check, supports_gc

__all__ = ["BinaryOptions", "check_binaries"]


@dataclass(frozen=True)
class BinaryOptions:
    """How binaries are checked."""

    cni_path: Sequence[str]
    check_presence: bool = True
    """Look each binary up on the CNI path (off: configs only)."""
    exec_binaries: bool = True
    """Run each found binary's VERSION command."""
    timeout: float | None = 10
    release: Release | None = None
    """The reference plugins' release, when the user named it (its versions are then known)."""


@dataclass
class _Probe:
    """The outcome of one VERSION run."""

    versions: list[str] | None = None
    error: str | None = None
    timed_out: bool = False


def _find(plugin_type: str, cni_path: Sequence[str]) -> str | None:
    try:
        return find_plugin(plugin_type, cni_path)
    except PluginNotFoundError:
        return None


async def _probe_version(path: str, timeout: float | None) -> _Probe:  # noqa: ASYNC109
    """Run ``path`` with CNI_COMMAND=VERSION as libcni's GetVersionInfo does, in validate's words.

    ``get_version_info`` kills the plugin's whole process group when it times out or floods
    its output.
    """
    try:
        info = await get_version_info(path, timeout=timeout)
    except TimeoutError:
        return _Probe(timed_out=True)
    except OSError as exc:
        return _Probe(error=f"cannot run it: {exc.strerror or exc}")
    except PluginOutputTooLargeError:
        return _Probe(
            error="it printed far more than a VERSION answer (over 64 KiB) and was killed"
        )
    except PluginExecError as exc:
        return _Probe(error=f"it exited with status {exc.returncode} and no CNI error on stdout")
    except CNIError as exc:
        detail = f"; {exc.details}" if exc.details else ""
        return _Probe(error=f"it failed with code {exc.code}: {exc.msg}{detail}")
    except ValueError as exc:
        return _Probe(error=_version_decode_error(exc))
    return _Probe(versions=list(info.supported_versions))


def _version_decode_error(exc: ValueError) -> str:
    # decode_version_info speaks Go's messages; validate words unparsable output its own way.
    text = str(exc)
    if isinstance(exc.__cause__, json.JSONDecodeError | UnicodeDecodeError) or (
        "non-object" in text
    ):
        return "its output is not a JSON object"
    return text


def _known_versions(
    plugin: KnownPlugin | str | None, release: Release | None
) -> tuple[str, ...] | None:
    if not isinstance(plugin, KnownPlugin):
        return None
    if plugin.reference is not None and release is None:
        return None  # which release a node runs is unknown
    return plugin.versions(release or (0, 0, 0))


async def check_binaries(
    parsed_files: list[Parsed], catalog: Catalog, options: BinaryOptions
) -> None:
    """Append the binary findings of every file (each binary probed once)."""
    located: dict[str, str | None] = {}
    if options.check_presence:
        for parsed in parsed_files:
            for binary in parsed.binaries:
                if binary.type not in located:
                    located[binary.type] = _find(binary.type, options.cni_path)
    probes: dict[str, _Probe] = {}
    if options.check_presence and options.exec_binaries:
        runnable = {p for p in located.values() if p is not None and os.access(p, os.X_OK)}

        async def probe(path: str) -> None:
            probes[path] = await _probe_version(path, options.timeout)

        async with anyio.create_task_group() as group:
            for path in sorted(runnable):
                group.start_soon(probe, path)
    for parsed in parsed_files:
        all_supported: list[set[str]] = []
        for binary in parsed.binaries:
            known = _known_versions(catalog.get(binary.type), options.release)
            supported = _supported(parsed, binary.location, binary.type, known, located, probes,
                                   catalog, options)  # fmt: skip
            all_supported.append(set(supported or ()))
            if supported is not None and parsed.version not in supported:
                parsed.findings.append(
                    finding(
                        "CV203",
                        f"{binary.type} does not support config version {parsed.version!r} "
                        f"(it supports {', '.join(supported)}); change cniVersion to one of "
                        "those every plugin supports, or upgrade the plugin",
                        binary.location,
                    )
                )
        _suggest_newer(parsed, all_supported)


def _supported(
    parsed: Parsed,
    location: str,
    plugin_type: str,
    known: tuple[str, ...] | None,
    located: dict[str, str | None],
    probes: dict[str, _Probe],
    catalog: Catalog,
    options: BinaryOptions,
) -> Sequence[str] | None:
    """The versions one binary supports (``None``: unknown), adding presence findings."""
    if not options.check_presence:
        return known
    path = located[plugin_type]
    searched = ":".join(options.cni_path) or "(empty)"
    if path is None:
        if catalog.is_cnisdk(plugin_type):
            parsed.findings.append(
                finding(
                    "CV205",
                    f"{plugin_type} is installed in this Python environment but has no binary "
                    f"in the CNI path {searched}: a runtime on this machine cannot run it until "
                    f"`cnisdk install --bin-dir DIR {plugin_type}`",
                    location,
                )
            )
            return known
        parsed.findings.append(
            finding(
                "CV200",
                f"no {plugin_type} binary in the CNI path {searched}; install the plugin there, "
                "or point --cni-path at the runtime's bin directory (or use --config-only on a "
                "machine without the plugins)",
                location,
            )
        )
        return None
    if not os.access(path, os.X_OK):
        parsed.findings.append(
            finding(
                "CV201",
                f"{path} is not executable by this user; run `chmod 0755 {path}`",
                location,
            )
        )
        return None
    result = probes.get(path)
    if result is None:
        return known
    if result.timed_out:
        parsed.findings.append(
            finding(
                "CV204",
                f"{path} did not answer VERSION within {options.timeout:g} s; runtimes would "
                "hang on it too: check that it is the right binary (or raise --timeout)",
                location,
            )
        )
        return None
    if result.error is not None:
        parsed.findings.append(
            finding(
                "CV202",
                f"{path} VERSION: {result.error}; check that it is a CNI plugin built "
                "for this machine",
                location,
            )
        )
        return None
    return result.versions


def _suggest_newer(parsed: Parsed, all_supported: list[set[str]]) -> None:
    if not all_supported or any(not s for s in all_supported):
        return  # some plugin's versions are unknown: no safe suggestion
    common = set.intersection(*all_supported) & set(ALL_VERSIONS)
    try:
        current = parse_version(parsed.version)
    except ValueError:
        return
    newer = [v for v in common if parse_version(v) > current]
    if not newer or parsed.version not in common:
        return
    best = max(newer, key=parse_version)
    gains = []
    if not supports_check(parsed.version) and supports_check(best):
        gains.append("CHECK")
    if not supports_gc(parsed.version) and supports_gc(best):
        gains.append("GC and STATUS")
    if not gains:
        return  # no verb to gain: not worth a note
    parsed.findings.append(
        finding(
            "CV213",
            f"every plugin in this config supports {best}; raise cniVersion to {best} to get "
            f"{' and '.join(gains)}",
            "cniVersion",
        )
    )
