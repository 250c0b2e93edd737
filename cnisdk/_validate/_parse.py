"""One config file through every check that needs neither a plugin binary nor a model: the
bytes, the JSON, the shape (conflist or single config), and the spec rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnisdk._confdir import CONF_EXTENSIONS, LoadedConfList
from cnisdk._validate._chain import IGNORES_IPAM
from cnisdk._validate._document import Document, decode, read
from cnisdk._validate._findings import Finding, finding, join, kind
from cnisdk._validate._spec_rules import (
    PLUGIN_KEYS,
    check_ipam_shape,
    check_network,
    check_plugin,
    check_verbs,
)
from cnisdk.spec._json import fold_keys

__all__ = ["Binary", "Parsed", "parse_file"]


@dataclass(frozen=True)
class Binary:
    """A plugin binary a config names."""

    location: str
    """Where its type is written (``plugins[0].type``, ``plugins[0].ipam.type``)."""
    type: str
    position: int | None
    """Its entry's index in the chain, or ``None`` for an IPAM type."""


@dataclass
class Parsed:
    """A file read and checked, with what the later stages need."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    document: Document | None = None
    doc: dict[str, Any] | None = None
    """The decoded top-level object (its keys folded as Go matches them)."""
    is_list: bool = False
    version: str = "0.1.0"
    """The version the chain runs at (libcni's choice among cniVersion and cniVersions)."""
    load_error: str | None = None
    """libcni's message when it does not load the file."""
    binaries: list[Binary] = field(default_factory=list)
    plugins: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(location, entry) of each plugin entry, in chain order."""


def parse_file(path: Path, loaded: LoadedConfList | None, load_error: str | None) -> Parsed:
    """Read one file and run every check that needs no binary and no plugin model.

    :param loaded: the network libcni loads from it (``None`` when it does not load).
    :param load_error: libcni's message when it does not load.
    """
    parsed = Parsed(path, load_error=load_error)
    findings = parsed.findings
    if path.suffix not in CONF_EXTENSIONS:
        findings.append(
            finding(
                "CV015",
                f"runtimes only read files ending in {', '.join(CONF_EXTENSIONS)}; rename it "
                "(.conflist for a chain) or it is ignored in /etc/cni/net.d",
            )
        )
    data = read(path)
    if isinstance(data, Finding):
        findings.append(data)
        return parsed
    parsed.document = document = decode(data)
    findings += document.findings
    if not document.valid:
        return parsed
    if not isinstance(document.doc, dict):
        findings.append(
            finding(
                "CV003",
                f"the file holds {kind(document.doc)}; a network config is a JSON object "
                '({"cniVersion": ..., "name": ..., "plugins": [...]})',
            )
        )
        return parsed
    suffix = path.suffix
    is_single = suffix in (".conf", ".json")
    is_list = suffix == ".conflist" or (suffix not in CONF_EXTENSIONS and "plugins" in document.doc)
    # libcni reads a list into a map (keys match exactly) and a single config into a Go
    # struct (keys match case-insensitively).
    doc = document.doc if is_list else fold_keys(document.doc, PLUGIN_KEYS)
    parsed.doc = doc
    parsed.version = _version(loaded, doc)
    if is_list and "plugins" not in doc:
        hint = (
            "this looks like a single-plugin config: rename the file to .conf, or wrap the "
            'plugin in "plugins": [{...}]'
            if "type" in fold_keys(doc, ("type",))
            else 'add "plugins": [{"type": ...}]'
        )
        findings.append(finding("CV010", f"a .conflist needs a 'plugins' array; {hint}", "plugins"))
        check_network(doc, True, findings)
        return parsed
    if not is_list and "plugins" in doc and "type" not in doc:
        findings.append(
            finding(
                "CV013",
                "this file holds a conflist ('plugins') but runtimes read .conf/.json files as a "
                "single plugin config and reject it (missing 'type'): rename it to .conflist",
            )
        )
        is_list = True
    parsed.is_list = is_list
    check_network(doc, is_list, findings)
    if not is_list:
        if is_single:
            findings.append(
                finding(
                    "CV014",
                    "single-plugin config files are deprecated since CNI 1.0.0; put the plugin "
                    'in a .conflist: {"cniVersion": ..., "name": ..., "plugins": [{...}]}',
                )
            )
        _check_entry(parsed, "", doc, None, 0)
    elif not _check_entries(parsed, doc):
        return parsed
    if doc.get("cniVersion") is None or isinstance(doc["cniVersion"], str):
        check_verbs(doc, parsed.version, findings)  # else CV022 says enough
    return parsed


def _version(loaded: LoadedConfList | None, doc: dict[str, Any]) -> str:
    """The version the chain runs at: libcni's choice when it loads the file."""
    written = doc.get("cniVersion")
    if loaded is not None:
        try:
            return loaded.effective_version
        except ValueError:
            pass  # an unparsable cniVersion: plugins refuse it (CV023 says so)
    return written if isinstance(written, str) and written else "0.1.0"


def _check_entries(parsed: Parsed, doc: dict[str, Any]) -> bool:
    """A list's plugin entries; ``False`` when there are none to check."""
    plugins = doc["plugins"]
    if not isinstance(plugins, list) or not plugins:
        what = "an empty array" if isinstance(plugins, list) else kind(plugins)
        parsed.findings.append(
            finding(
                "CV011",
                f'plugins is {what}; it must list at least one plugin: [{{"type": ...}}]',
                "plugins",
            )
        )
        return False
    list_version = doc.get("cniVersion") if isinstance(doc.get("cniVersion"), str) else None
    for index, entry in enumerate(plugins):
        where = f"plugins[{index}]"
        if not isinstance(entry, dict):
            parsed.findings.append(
                finding(
                    "CV012",
                    f"plugin entry is {kind(entry)}; each entry must be an object with at "
                    'least a "type"',
                    where,
                )
            )
            continue
        _check_entry(parsed, where, fold_keys(entry, PLUGIN_KEYS), list_version, index)
    return True


def _check_entry(
    parsed: Parsed, where: str, conf: dict[str, Any], list_version: str | None, index: int
) -> None:
    parsed.plugins.append((where, conf))
    plugin_type = check_plugin(conf, where, list_version, parsed.findings)
    if plugin_type is not None:
        parsed.binaries.append(Binary(join(where, "type"), plugin_type, index))
    ipam_type = check_ipam_shape(conf, where, conf.get("type") in IGNORES_IPAM, parsed.findings)
    if ipam_type is not None:
        parsed.binaries.append(Binary(join(join(where, "ipam"), "type"), ipam_type, None))
