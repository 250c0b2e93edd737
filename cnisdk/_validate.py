"""The findings behind ``cnisdk validate``: what a runtime or a plugin would reject in a config.

:func:`validate_paths` reads CNI network config files (``.conf``, ``.conflist``, ``.json``) or
directories of them and returns one :class:`FileReport` per file, each with a list of
:class:`Finding`. The static checks are pure; the binary checks look plugins up on the CNI
path and run their VERSION command concurrently, each under a timeout.

Every finding code is listed, with its severity and meaning, in :data:`CODES`; the codes are
stable (a code is never reused for another meaning) so that CI can match on them. The same
table, with examples, is in ``docs/validate.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from cnisdk._confdir import conf_files, select_network
from cnisdk._invoke import PluginExecError, PluginNotFoundError, find_plugin, get_version_info
from cnisdk.spec._errors import CNIError
from cnisdk.spec._json import fold_keys
from cnisdk.spec._versions import (
    ALL_VERSIONS,
    CURRENT_VERSION,
    parse_version,
    supports_check,
    supports_gc,
)

__all__ = [
    "CODES",
    "CONFIG_EXTENSIONS",
    "FileReport",
    "Finding",
    "Severity",
    "ValidateError",
    "validate_paths",
]

Severity = Literal["error", "warning", "info"]

CONFIG_EXTENSIONS: tuple[str, ...] = (".conf", ".conflist", ".json")
"""The extensions libcni's ``ConfFiles`` (and so kubelet, containerd, CRI-O) read."""

CODES: dict[str, tuple[Severity, str]] = {
    # The file itself.
    "CV001": ("error", "the file cannot be read"),
    "CV002": ("error", "the file is not valid JSON (location: line and column)"),
    "CV003": ("error", "the top-level JSON value is not an object"),
    "CV004": ("warning", "a key appears twice in one object; the last one wins"),
    # Conflist vs single config shape.
    "CV010": ("error", "a .conflist has no 'plugins' key"),
    "CV011": ("error", "'plugins' is not a non-empty array"),
    "CV012": ("error", "a plugin entry is not a JSON object"),
    "CV013": ("error", "a .conf/.json file holds a conflist ('plugins' and no 'type')"),
    "CV014": ("info", "single-plugin config files are deprecated since CNI 1.0.0"),
    "CV015": ("warning", "runtimes ignore files without a .conf, .conflist or .json extension"),
    # Network-level spec rules.
    "CV020": ("error", "the network 'name' is missing or not a string"),
    "CV021": ("error", "the network name has characters runtimes reject"),
    "CV022": ("error", "'cniVersion' is not a string"),
    "CV023": ("error", "a version does not parse"),
    "CV024": ("error", "a version is not a CNI spec version"),
    "CV025": ("warning", "'cniVersion' is missing or empty, so the config is read as 0.1.0"),
    "CV026": ("error", "'cniVersions' is not an array of strings"),
    "CV027": ("info", "a 'cniVersions' entry is newer than any known version and is skipped"),
    "CV028": ("warning", "a plugin's own 'cniVersion' differs from the list's and is overwritten"),
    "CV030": ("error", "'disableCheck', 'disableGC' or 'loadOnlyInlinedPlugins' is not a bool"),
    "CV031": ("warning", "'disableCheck' is a string; only newer libcni accepts that"),
    # Plugin-level spec rules.
    "CV040": ("error", "a plugin has no 'type' (or an empty one)"),
    "CV041": ("error", "a plugin's 'type' is not a string"),
    "CV042": ("error", "a plugin type is not a valid file name"),
    "CV043": ("error", "a stored config contains 'prevResult'"),
    "CV044": ("error", "'capabilities' is not an object of booleans"),
    "CV045": ("warning", "a stored config contains 'runtimeConfig'"),
    "CV046": ("error", "'ipam' is not an object, or its 'type' is not a valid plugin type"),
    "CV047": ("warning", "'ipam' has settings but no 'type', so they are ignored"),
    # Plugin binaries on the CNI path.
    "CV200": ("error", "the plugin binary is not on the CNI path"),
    "CV201": ("error", "the plugin binary is not executable"),
    "CV202": ("error", "the plugin's VERSION command failed or printed something unreadable"),
    "CV203": ("error", "the plugin does not support the config's cniVersion"),
    "CV204": ("error", "the plugin's VERSION command did not answer in time"),
    # Verbs the config's version allows.
    "CV210": ("info", "the config's version has no CHECK (needs 0.4.0)"),
    "CV211": ("info", "the config's version has no GC or STATUS (needs 1.1.0)"),
    "CV212": ("warning", "'disableCheck'/'disableGC' has no effect at the config's version"),
    "CV213": ("info", "every plugin supports a newer version than the config asks for"),
    # Plugins provided through cnisdk entry points.
    "CV300": ("error", "a field does not validate against the plugin's config model"),
    "CV301": ("error", "the cnisdk plugin registered for this type does not load"),
    # Chain sanity.
    "CV400": ("error", "a chained-only plugin is first: it has no previous result to work on"),
    "CV401": ("warning", "a plugin type appears more than once in the chain"),
    "CV402": ("warning", "the first plugin creates no interface (an IPAM plugin as chain entry)"),
    "CV403": ("warning", "IPAM settings on a plugin type that ignores them"),
    "CV404": ("warning", "an interface-creating plugin after the first one"),
    # Directories: the file a runtime would use.
    "CV500": ("error", "no file in the directory is one a runtime can load"),
    "CV501": ("info", "a runtime does not use this file: an earlier one is selected"),
    "CV502": ("warning", "containerd stops at this broken file, before the selected one"),
}
"""Every finding code: ``code -> (severity, what it means)``. Codes are stable."""

# Main plugins: they create (or take over) the container's interface, so they go first.
_INTERFACE_PLUGINS = frozenset(
    {
        "bridge", "ptp", "macvlan", "ipvlan", "host-device", "vlan", "loopback", "dummy", "tap",
        "calico", "cilium-cni", "flannel", "ovn-k8s-cni-overlay", "aws-cni", "azure-vnet",
        "weave-net", "kube-ovn", "antrea", "multus", "multus-shim", "ovs", "sriov",
        "ib-sriov", "win-bridge", "win-overlay", "kindnet", "terway", "nsx",
    }
)  # fmt: skip
# Plugins that fail (or do nothing useful) without a prevResult.
_CHAINED_ONLY = frozenset(
    {
        "portmap", "tuning", "bandwidth", "firewall", "sbr", "vrf",
        "istio-cni", "linkerd-cni", "egress-cni",
    }
)  # fmt: skip
# IPAM plugins: they allocate addresses but create no interface.
_IPAM_PLUGINS = frozenset(
    {"host-local", "dhcp", "static", "whereabouts", "calico-ipam", "azure-vnet-ipam"}
)
# Plugins whose Go source never reads `ipam` (an empty object, as istio's installer writes, is
# harmless and not reported).
_IGNORES_IPAM = frozenset(
    {"portmap", "tuning", "bandwidth", "firewall", "sbr", "vrf", "loopback", "istio-cni"}
)
# Plugins that chain after a main plugin by design although they also run as main plugins
# (Cilium's generic-veth chaining mode), so a later position is not suspicious.
_MAY_CHAIN_LATER = frozenset({"cilium-cni", "loopback", "multus"})

# Go's invoke.FindInPath refuses types with a path separator; the rest is what a bin directory
# can hold safely (same pattern as cnisdk._discovery).
_TYPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z", re.ASCII)
_SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
_BOOL_FLAGS = ("disableCheck", "disableGC", "loadOnlyInlinedPlugins")
# Top-level and per-plugin keys Go decodes into struct fields, matched case-insensitively.
_LIST_KEYS = ("cniVersion", "cniVersions", "name", "plugins", *_BOOL_FLAGS)
_PLUGIN_KEYS = (
    "cniVersion", "name", "type", "capabilities", "ipam", "dns", "prevResult", "runtimeConfig",
)  # fmt: skip


class ValidateError(Exception):
    """A PATH given to :func:`validate_paths` does not exist or cannot be read."""


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one place in a config file.

    :ivar severity: ``error`` (a runtime or plugin rejects it), ``warning`` (works, but likely
        not as meant) or ``info``.
    :ivar code: a stable code from :data:`CODES`.
    :ivar message: what is wrong and how to fix it.
    :ivar location: a JSON path such as ``plugins[1].ipam.subnet``, ``line 3, column 5`` for
        JSON syntax errors, or ``""`` for the file as a whole.
    """

    severity: Severity
    code: str
    message: str
    location: str = ""

    def to_dict(self) -> dict[str, str]:
        """The finding as in ``--output json``."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "location": self.location,
        }


@dataclass
class FileReport:
    """The findings for one file (or for a directory with no usable file).

    :ivar selected: for a file found in a directory, whether it is the one a runtime uses;
        ``None`` for a file named on the command line, or for a directory's own report.
    """

    path: str
    selected: bool | None
    findings: list[Finding] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        """How many findings of ``severity`` this report has."""
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        """The report as in ``--output json``."""
        return {
            "path": self.path,
            "selected": self.selected,
            "findings": [f.to_dict() for f in self.findings],
        }


def _finding(code: str, message: str, location: str = "") -> Finding:
    return Finding(CODES[code][0], code, message, location)


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "an object"


# --------------------------------------------------------------------------- parsing


@dataclass
class _Parsed:
    """A file read and decoded, with what the static checks learnt for the later stages."""

    path: Path
    findings: list[Finding]
    doc: dict[str, Any] | None = None
    is_list: bool = False
    version: str = "0.1.0"
    loads: bool = False  # whether libcni would load it (decides directory selection)
    # (location of the `type`, plugin type, index in the chain or None for an ipam type)
    binaries: list[tuple[str, str, int | None]] = field(default_factory=list)
    plugins: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _line_column(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _decode(path: Path, data: bytes, findings: list[Finding]) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", "replace")
        findings.append(
            _finding(
                "CV002",
                f"invalid UTF-8 byte: {exc.reason}; save the file as UTF-8",
                _line_column(prefix, len(prefix)),
            )
        )
        return None
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(items)

    try:
        doc = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        findings.append(
            _finding(
                "CV002",
                f"JSON syntax error: {exc.msg}; fix the JSON (a trailing comma or a missing "
                "quote is the usual cause)",
                f"line {exc.lineno}, column {exc.colno}",
            )
        )
        return None
    for key in dict.fromkeys(duplicates):
        findings.append(
            _finding(
                "CV004",
                f"key {key!r} appears more than once in an object; runtimes use the last one, "
                "so remove the others",
            )
        )
    return doc


def _libcni_loads(doc: dict[str, Any], is_list: bool) -> bool:
    """Whether libcni's ConfListFromBytes / ConfFromBytes (+ a 'type') accept the document."""
    from cnisdk.spec._config import parse_conflist, parse_netconf

    try:
        if is_list:
            parse_conflist(json.dumps(doc))
        else:
            parse_netconf(json.dumps(doc))
    except ValueError:
        return False
    return True


def _effective_version(doc: dict[str, Any], is_list: bool) -> str:
    """The version the chain runs at, as libcni computes it (``""`` means 0.1.0)."""
    version = doc.get("cniVersion", "")
    version = version if isinstance(version, str) else ""
    if not is_list:
        return version or "0.1.0"
    candidates = doc.get("cniVersions", [])
    candidates = candidates if isinstance(candidates, list) else []
    usable: list[str] = []
    for v in [*candidates, version]:
        if not isinstance(v, str) or not v:
            continue
        try:
            if parse_version(v) <= parse_version(CURRENT_VERSION):
                usable.append(v)
        except ValueError:
            continue
    if not usable:
        return version or "0.1.0"
    return max(usable, key=parse_version)


def _check_version(value: str, location: str, findings: list[Finding]) -> None:
    try:
        parsed = parse_version(value)
    except ValueError as exc:
        findings.append(
            _finding(
                "CV023",
                f"version {value!r} does not parse ({exc}); use one of {', '.join(ALL_VERSIONS)}",
                location,
            )
        )
        return
    if value in ALL_VERSIONS:
        return
    if parsed > parse_version(CURRENT_VERSION) and location.startswith("cniVersions["):
        findings.append(
            _finding(
                "CV027",
                f"{value!r} is newer than {CURRENT_VERSION}; runtimes that do not know it skip "
                "this entry and use the highest one they know",
                location,
            )
        )
        return
    findings.append(
        _finding(
            "CV024",
            f"{value!r} is not a CNI spec version; plugins reject it as incompatible. Use one of "
            f"{', '.join(ALL_VERSIONS)}",
            location,
        )
    )


def _check_network(doc: dict[str, Any], is_list: bool, findings: list[Finding]) -> None:
    name = doc.get("name")
    if name is None or not isinstance(name, str):
        what = "missing" if "name" not in doc else f"{_json_type(name)}, not a string"
        findings.append(
            _finding(
                "CV020",
                f'the network name is {what}; set "name" to a string such as "k8s-pod-network"',
                "name" if "name" in doc else "",
            )
        )
    elif not _NAME_PATTERN.match(name):
        findings.append(
            _finding(
                "CV021",
                f"network name {name!r} is {'empty' if not name else 'invalid'}: it must start "
                "with a letter or digit and contain only letters, digits, '_', '.' and '-' "
                "(runtimes fail every ADD otherwise)",
                "name",
            )
        )
    version = doc.get("cniVersion")
    if "cniVersion" in doc and not isinstance(version, str):
        findings.append(
            _finding(
                "CV022",
                f'cniVersion is {_json_type(version)}; write it as a string, e.g. "1.0.0"',
                "cniVersion",
            )
        )
    elif not version:
        findings.append(
            _finding(
                "CV025",
                f"cniVersion is {'empty' if 'cniVersion' in doc else 'missing'}, so runtimes and "
                'plugins treat the config as version 0.1.0; set it, e.g. "cniVersion": '
                '"1.0.0"',
                "cniVersion" if "cniVersion" in doc else "",
            )
        )
    else:
        _check_version(version, "cniVersion", findings)
    if not is_list:
        return
    if "cniVersions" in doc:
        versions = doc["cniVersions"]
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            findings.append(
                _finding(
                    "CV026",
                    'cniVersions must be an array of version strings, e.g. ["1.0.0", "1.1.0"]',
                    "cniVersions",
                )
            )
        else:
            for index, value in enumerate(versions):
                _check_version(value, f"cniVersions[{index}]", findings)
    for key in _BOOL_FLAGS:
        if key not in doc:
            continue
        value = doc[key]
        if isinstance(value, bool):
            continue
        if key == "disableCheck" and isinstance(value, str) and value.lower() in {"true", "false"}:
            findings.append(
                _finding(
                    "CV031",
                    f"disableCheck is the string {value!r}; libcni before 1.2 rejects the whole "
                    f"file, so write the JSON boolean {value.lower()}",
                    key,
                )
            )
            continue
        findings.append(
            _finding(
                "CV030",
                f"{key} is {_json_type(value)}; runtimes reject the file: write true or false",
                key,
            )
        )


def _check_plugin(
    conf: dict[str, Any], where: str, list_version: str | None, parsed: _Parsed, index: int
) -> None:
    findings = parsed.findings
    loc = (lambda key: _join(where, key)) if where else (lambda key: key)
    plugin_type = conf.get("type")
    if plugin_type is None or plugin_type == "":
        findings.append(
            _finding(
                "CV040",
                'the plugin has no type; set "type" to the plugin\'s binary name, e.g. '
                "\"bridge\" (libcni: missing 'type')",
                loc("type") if "type" in conf else where,
            )
        )
    elif not isinstance(plugin_type, str):
        findings.append(
            _finding(
                "CV041",
                f"type is {_json_type(plugin_type)}; it must be the plugin's binary name as a "
                "string",
                loc("type"),
            )
        )
    elif not _TYPE_PATTERN.match(plugin_type):
        findings.append(
            _finding(
                "CV042",
                f"type {plugin_type!r} is not a file name in the CNI bin directory: use the "
                "binary's name only (letters, digits, '_', '.', '-'; no '/')",
                loc("type"),
            )
        )
    else:
        parsed.binaries.append((loc("type"), plugin_type, index))
    if list_version is not None and isinstance(conf.get("cniVersion"), str):
        own = conf["cniVersion"]
        if own and own != list_version:
            findings.append(
                _finding(
                    "CV028",
                    f"this plugin's cniVersion {own!r} is replaced by the list's "
                    f"{list_version!r} when the runtime runs it; remove it or make them match",
                    loc("cniVersion"),
                )
            )
    if "prevResult" in conf:
        findings.append(
            _finding(
                "CV043",
                "prevResult is set by the runtime from the previous plugin's result; remove it "
                "from the stored config",
                loc("prevResult"),
            )
        )
    if "capabilities" in conf:
        caps = conf["capabilities"]
        if not isinstance(caps, dict):
            findings.append(
                _finding(
                    "CV044",
                    f"capabilities is {_json_type(caps)}; it must be an object such as "
                    '{"portMappings": true}',
                    loc("capabilities"),
                )
            )
        else:
            for key, value in caps.items():
                if not isinstance(value, bool):
                    findings.append(
                        _finding(
                            "CV044",
                            f"capability {key!r} is {_json_type(value)}; write true or false",
                            _join(loc("capabilities"), key),
                        )
                    )
    if "runtimeConfig" in conf:
        findings.append(
            _finding(
                "CV045",
                "runtimeConfig is written by the runtime from the enabled capabilities and "
                'replaces this value whenever one matches; declare "capabilities" instead',
                loc("runtimeConfig"),
            )
        )
    _check_ipam(conf, loc, parsed)


def _check_ipam(conf: dict[str, Any], loc: Any, parsed: _Parsed) -> None:
    if "ipam" not in conf or conf["ipam"] is None:
        return
    ipam = conf["ipam"]
    findings = parsed.findings
    if not isinstance(ipam, dict):
        findings.append(
            _finding(
                "CV046",
                f"ipam is {_json_type(ipam)}; it must be an object such as "
                '{"type": "host-local", "subnet": "10.22.0.0/16"}',
                loc("ipam"),
            )
        )
        return
    plugin_type = conf.get("type")
    if ipam and isinstance(plugin_type, str) and plugin_type in _IGNORES_IPAM:
        findings.append(
            _finding(
                "CV403",
                f"the {plugin_type} plugin ignores ipam; move these settings to the main "
                "plugin's ipam (usually the first plugin) or remove them",
                loc("ipam"),
            )
        )
        return
    ipam_type = ipam.get("type")
    if ipam_type is None or ipam_type == "":
        if ipam:
            findings.append(
                _finding(
                    "CV047",
                    "ipam has settings but no type, so no IPAM plugin runs and they are ignored; "
                    'add e.g. "type": "host-local"',
                    loc("ipam"),
                )
            )
        return
    if not isinstance(ipam_type, str) or not _TYPE_PATTERN.match(ipam_type):
        findings.append(
            _finding(
                "CV046",
                f'ipam.type {ipam_type!r} is not a plugin binary name; use e.g. "host-local"',
                _join(loc("ipam"), "type"),
            )
        )
        return
    parsed.binaries.append((_join(loc("ipam"), "type"), ipam_type, None))


def _check_chain(parsed: _Parsed, chained_types: set[str]) -> None:
    findings = parsed.findings
    seen: dict[str, str] = {}
    for position, (where, conf) in enumerate(parsed.plugins):
        plugin_type = conf.get("type")
        if not isinstance(plugin_type, str) or not plugin_type:
            continue
        type_loc = _join(where, "type") if where else "type"
        if position == 0:
            if plugin_type in _CHAINED_ONLY or plugin_type in chained_types:
                findings.append(
                    _finding(
                        "CV400",
                        f"{plugin_type} only works after another plugin (it needs the previous "
                        "result): put an interface-creating plugin such as bridge or ptp before "
                        "it",
                        type_loc,
                    )
                )
            elif plugin_type in _IPAM_PLUGINS:
                findings.append(
                    _finding(
                        "CV402",
                        f"{plugin_type} is an IPAM plugin: it allocates addresses but creates no "
                        "interface. Use a main plugin (bridge, ptp, macvlan, ...) first and put "
                        f'{{"type": "{plugin_type}"}} in its ipam',
                        type_loc,
                    )
                )
        elif plugin_type in _INTERFACE_PLUGINS and plugin_type not in _MAY_CHAIN_LATER:
            findings.append(
                _finding(
                    "CV404",
                    f"{plugin_type} creates the container interface, but it is plugin "
                    f"{position + 1} of the chain, where the interface already exists; make it "
                    "the first plugin or put it in a separate network",
                    type_loc,
                )
            )
        if plugin_type in seen:
            findings.append(
                _finding(
                    "CV401",
                    f"{plugin_type} already runs at {seen[plugin_type]}; a plugin type usually "
                    "appears once per chain: merge the entries or remove one",
                    type_loc,
                )
            )
        else:
            seen[plugin_type] = type_loc


def _check_verbs(parsed: _Parsed) -> None:
    assert parsed.doc is not None
    version = parsed.version
    try:
        parse_version(version)
    except ValueError:
        return
    findings = parsed.findings
    if not supports_check(version):
        findings.append(
            _finding(
                "CV210",
                f"version {version} has no CHECK, so runtimes cannot verify a pod's network "
                "after ADD; use cniVersion 0.4.0 or later if every plugin supports it",
                "cniVersion",
            )
        )
    if not supports_gc(version):
        findings.append(
            _finding(
                "CV211",
                f"version {version} has no GC or STATUS, so runtimes cannot clean up leaked "
                "attachments or ask whether the network is ready; use cniVersion 1.1.0 if every "
                "plugin supports it",
                "cniVersion",
            )
        )
    doc = parsed.doc
    for key, supported, verb, needs in (
        ("disableCheck", supports_check, "CHECK", "0.4.0"),
        ("disableGC", supports_gc, "GC", "1.1.0"),
    ):
        if doc.get(key) is True and not supported(version):
            findings.append(
                _finding(
                    "CV212",
                    f"{key} has no effect: version {version} has no {verb} (needs {needs}); "
                    f"remove it or raise cniVersion",
                    key,
                )
            )


def _parse_file(path: Path) -> _Parsed:
    """Read one file and run every check that needs no binary and no plugin class."""
    findings: list[Finding] = []
    parsed = _Parsed(path, findings)
    try:
        data = path.read_bytes()
    except OSError as exc:
        findings.append(
            _finding("CV001", f"cannot read the file: {exc.strerror}; check its permissions")
        )
        return parsed
    suffix = path.suffix
    if suffix not in CONFIG_EXTENSIONS:
        findings.append(
            _finding(
                "CV015",
                f"runtimes only read files ending in {', '.join(CONFIG_EXTENSIONS)}; rename it "
                "(.conflist for a chain) or it is ignored in /etc/cni/net.d",
            )
        )
    doc = _decode(path, data, findings)
    if doc is None:
        return parsed
    if not isinstance(doc, dict):
        findings.append(
            _finding(
                "CV003",
                f"the file holds {_json_type(doc)}; a network config is a JSON object "
                '({"cniVersion": ..., "name": ..., "plugins": [...]})',
            )
        )
        return parsed
    doc = fold_keys(doc, _LIST_KEYS + _PLUGIN_KEYS)
    parsed.doc = doc
    if suffix == ".conflist":
        is_list = True
    elif suffix in (".conf", ".json"):
        is_list = False
    else:
        is_list = "plugins" in doc
    parsed.loads = _libcni_loads(doc, is_list)
    if is_list and "plugins" not in doc:
        hint = (
            "this looks like a single-plugin config: rename the file to .conf, or wrap the "
            'plugin in "plugins": [{...}]'
            if "type" in doc
            else 'add "plugins": [{"type": ...}]'
        )
        findings.append(_finding("CV010", f"a .conflist needs a 'plugins' array; {hint}", ""))
        _check_network(doc, True, findings)
        return parsed
    if not is_list and "plugins" in doc and "type" not in doc:
        findings.append(
            _finding(
                "CV013",
                "this file holds a conflist ('plugins') but runtimes read .conf/.json files as a "
                "single plugin config and reject it (missing 'type'): rename it to .conflist",
            )
        )
        is_list = True
    parsed.is_list = is_list
    parsed.version = _effective_version(doc, is_list)
    _check_network(doc, is_list, findings)
    if not is_list:
        if suffix in (".conf", ".json"):
            findings.append(
                _finding(
                    "CV014",
                    "single-plugin config files are deprecated since CNI 1.0.0; put the plugin "
                    'in a .conflist: {"cniVersion": ..., "name": ..., "plugins": [{...}]}',
                )
            )
        parsed.plugins.append(("", doc))
        _check_plugin(doc, "", None, parsed, 0)
    else:
        plugins = doc["plugins"]
        if not isinstance(plugins, list) or not plugins:
            what = "an empty array" if isinstance(plugins, list) else _json_type(plugins)
            findings.append(
                _finding(
                    "CV011",
                    f'plugins is {what}; it must list at least one plugin: [{{"type": ...}}]',
                    "plugins",
                )
            )
            return parsed
        list_version = doc.get("cniVersion") if isinstance(doc.get("cniVersion"), str) else None
        for index, entry in enumerate(plugins):
            where = f"plugins[{index}]"
            if not isinstance(entry, dict):
                findings.append(
                    _finding(
                        "CV012",
                        f"plugin entry is {_json_type(entry)}; each entry must be an object "
                        'with at least a "type"',
                        where,
                    )
                )
                continue
            entry = fold_keys(entry, _PLUGIN_KEYS)
            parsed.plugins.append((where, entry))
            _check_plugin(entry, where, list_version, parsed, index)
    if isinstance(doc.get("cniVersion", ""), str):  # else CV022 says enough
        _check_verbs(parsed)
    return parsed


# --------------------------------------------------------------------------- cnisdk plugins


@dataclass
class _Models:
    """Plugin classes registered through cnisdk entry points, loaded on demand."""

    entries: dict[str, Any] | None = None
    error: str | None = None
    classes: dict[str, type[Any] | str] = field(default_factory=dict)

    def get(self, plugin_type: str) -> type[Any] | str | None:
        """The plugin class, an error message if it does not load, or None if not registered."""
        if self.entries is None and self.error is None:
            from cnisdk import _discovery

            try:
                self.entries = _discovery.find_plugins()
            except _discovery.PluginLoadError as exc:
                self.error = str(exc)
        if self.entries is None or plugin_type not in self.entries:
            return None
        if plugin_type not in self.classes:
            from cnisdk._discovery import PluginLoadError

            try:
                self.classes[plugin_type] = self.entries[plugin_type].load()
            except PluginLoadError as exc:
                self.classes[plugin_type] = str(exc)
        return self.classes[plugin_type]


def _pydantic_location(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        out = _join(out, part)
    return out


def _check_models(parsed: _Parsed, models: _Models) -> set[str]:
    """Validate the entries of cnisdk plugins with their models; return the chained types."""
    from pydantic import ValidationError

    assert parsed.doc is not None
    chained: set[str] = set()
    name = parsed.doc.get("name")
    for where, conf in parsed.plugins:
        plugin_type = conf.get("type")
        if not isinstance(plugin_type, str) or not plugin_type:
            continue
        cls = models.get(plugin_type)
        if cls is None:
            continue
        type_loc = _join(where, "type") if where else "type"
        if isinstance(cls, str):
            parsed.findings.append(
                _finding(
                    "CV301",
                    f"{cls}; reinstall the distribution that provides {plugin_type!r}",
                    type_loc,
                )
            )
            continue
        if getattr(cls, "chained", False):
            chained.add(plugin_type)
        # What the plugin reads on stdin: the runtime injects the list's name and version.
        stdin = dict(conf)
        if isinstance(name, str):
            stdin["name"] = name
        stdin["cniVersion"] = parsed.version
        try:
            cls.config_model.model_validate(stdin)
        except ValidationError as exc:
            for error in exc.errors():
                loc = _pydantic_location(where, error["loc"])
                parsed.findings.append(
                    _finding(
                        "CV300",
                        f"{plugin_type}: {error['msg']} (got {_short(error.get('input'))}); "
                        f"see `cnisdk schema {plugin_type}` for the expected fields",
                        loc,
                    )
                )
    return chained


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- binaries


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

    ``get_version_info`` kills the plugin's whole process group when it times out.
    """
    try:
        info = await get_version_info(path, timeout=timeout)
    except TimeoutError:
        return _Probe(timed_out=True)
    except OSError as exc:
        return _Probe(error=f"cannot run it: {exc.strerror or exc}")
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
    if isinstance(exc.__cause__, (json.JSONDecodeError, UnicodeDecodeError)) or (
        "non-object" in text
    ):
        return "its output is not a JSON object"
    return text


async def _check_binaries(
    parsed_files: list[_Parsed],
    models: _Models,
    cni_path: Sequence[str],
    exec_binaries: bool,
    timeout: float | None,  # noqa: ASYNC109
) -> None:
    located: dict[str, str | None] = {}
    for parsed in parsed_files:
        for _, plugin_type, _ in parsed.binaries:
            if plugin_type not in located:
                located[plugin_type] = _find(plugin_type, cni_path)
    probes: dict[str, _Probe] = {}
    if exec_binaries:
        runnable = {p for p in located.values() if p is not None and os.access(p, os.X_OK)}

        async def probe(binary: str) -> None:
            probes[binary] = await _probe_version(binary, timeout)

        async with anyio.create_task_group() as tg:
            for binary in sorted(runnable):
                tg.start_soon(probe, binary)
    searched = ":".join(cni_path) or "(empty)"
    for parsed in parsed_files:
        model_versions = _model_versions(parsed, models)
        all_supported: list[set[str]] = []
        for location, plugin_type, index in parsed.binaries:
            path = located[plugin_type]
            if path is None:
                hint = (
                    f"run `cnisdk install --bin-dir DIR {plugin_type}`"
                    if models.get(plugin_type) is not None
                    else "install the plugin there"
                )
                parsed.findings.append(
                    _finding(
                        "CV200",
                        f"no {plugin_type} binary in the CNI path {searched}; {hint}, or point "
                        "--cni-path at the runtime's bin directory",
                        location,
                    )
                )
                all_supported.append(set())
                continue
            if not os.access(path, os.X_OK):
                parsed.findings.append(
                    _finding(
                        "CV201",
                        f"{path} is not executable by this user; run `chmod 0755 {path}`",
                        location,
                    )
                )
                all_supported.append(set())
                continue
            supported: list[str] | None = None
            result = probes.get(path)
            if result is None:
                supported = list(model_versions[index]) if index in model_versions else None
            elif result.timed_out:
                parsed.findings.append(
                    _finding(
                        "CV204",
                        f"{path} did not answer VERSION within {timeout:g} s; runtimes would "
                        "hang on it too: check that it is the right binary (or raise --timeout)",
                        location,
                    )
                )
            elif result.error is not None:
                parsed.findings.append(
                    _finding(
                        "CV202",
                        f"{path} VERSION: {result.error}; check that it is a CNI plugin built "
                        "for this machine",
                        location,
                    )
                )
            else:
                supported = result.versions
            if supported is None:
                all_supported.append(set())
                continue
            all_supported.append(set(supported))
            if parsed.version not in supported:
                parsed.findings.append(
                    _finding(
                        "CV203",
                        f"{plugin_type} does not support config version {parsed.version!r} "
                        f"(it supports {', '.join(supported)}); change cniVersion to one of "
                        "those every plugin supports, or upgrade the plugin",
                        location,
                    )
                )
        _suggest_newer(parsed, all_supported)


def _model_versions(parsed: _Parsed, models: _Models) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for index, (_, conf) in enumerate(parsed.plugins):
        cls = models.get(conf["type"]) if isinstance(conf.get("type"), str) else None
        if cls is not None and not isinstance(cls, str):
            out[index] = tuple(getattr(cls, "supported_versions", ALL_VERSIONS))
    return out


def _suggest_newer(parsed: _Parsed, all_supported: list[set[str]]) -> None:
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
    if supports_check(best) == supports_check(parsed.version) and supports_gc(best) == supports_gc(
        parsed.version
    ):
        return  # no verb to gain: not worth a note
    gains = []
    if not supports_check(parsed.version) and supports_check(best):
        gains.append("CHECK")
    if not supports_gc(parsed.version) and supports_gc(best):
        gains.append("GC and STATUS")
    parsed.findings.append(
        _finding(
            "CV213",
            f"every plugin in this config supports {best}; raise cniVersion to {best} to get "
            f"{' and '.join(gains)}",
            "cniVersion",
        )
    )


# --------------------------------------------------------------------------- directories


def _select(directory: Path, parsed_files: list[_Parsed]) -> tuple[list[bool], Finding | None]:
    selected = [False] * len(parsed_files)
    selection = select_network(directory)
    chosen_path = selection.chosen.path if selection.chosen is not None else None
    chosen = next((i for i, p in enumerate(parsed_files) if p.path == chosen_path), None)
    if chosen is None:
        return selected, _finding(
            "CV500",
            f"no file in {directory} loads as a network config, so the node reports "
            '"no networks found" and pods cannot start; fix the errors below or add a '
            ".conflist",
        )
    selected[chosen] = True
    name = parsed_files[chosen].path.name
    for index, parsed in enumerate(parsed_files):
        if index < chosen:
            parsed.findings.append(
                _finding(
                    "CV502",
                    f"CRI-O and kubelet skip this broken file and use {name}, but containerd "
                    "stops here and loads no network: fix or remove it",
                )
            )
        elif index > chosen:
            parsed.findings.append(
                _finding(
                    "CV501",
                    f"not used: runtimes use the first loadable file in name order, {name}; "
                    "rename this file (e.g. a lower numeric prefix) if it should win",
                )
            )
    return selected, None


def _read_all(
    paths: list[str | os.PathLike[str]], models: _Models
) -> list[tuple[Path | None, list[_Parsed]]]:
    """Every check that reads files or imports plugin classes but runs no binary."""
    groups: list[tuple[Path | None, list[_Parsed]]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                files = conf_files(path)
            except OSError as exc:
                raise ValidateError(f"cannot list {path}: {exc.strerror}") from exc
            groups.append((path, [_parse_file(f) for f in files]))
        elif path.exists():
            groups.append((None, [_parse_file(path)]))
        else:
            raise ValidateError(f"{path}: no such file or directory")
    for _, parsed_files in groups:
        for one in parsed_files:
            if one.doc is not None:
                _check_chain(one, _check_models(one, models))
    return groups


async def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    cni_path: Sequence[str],
    exec_binaries: bool = True,
    timeout: float | None = 10,  # noqa: ASYNC109
) -> list[FileReport]:
    """Validate config files and directories of them.

    :param paths: files (any extension) or directories (their ``.conf``, ``.conflist`` and
        ``.json`` files, in the order runtimes read them).
    :param cni_path: directories searched for plugin binaries, in order.
    :param exec_binaries: run each plugin's VERSION command (``False`` for ``--no-exec``).
    :param timeout: seconds each VERSION run may take.
    :return: one report per file, in argument order then name order; a directory without a
        usable file also gets a report of its own, with ``selected`` ``None``.
    :raises ValidateError: if a path does not exist or a directory cannot be listed.
    """
    # Reading files and importing plugin classes block; keep them off the event loop.
    models = _Models()
    groups = await anyio.to_thread.run_sync(_read_all, list(paths), models)
    all_parsed = [p for _, files in groups for p in files if p.doc is not None]
    await _check_binaries(all_parsed, models, cni_path, exec_binaries, timeout)
    reports: list[FileReport] = []
    for directory, parsed_files in groups:
        if directory is None:
            reports.extend(FileReport(str(p.path), None, p.findings) for p in parsed_files)
            continue
        selected, missing = _select(directory, parsed_files)
        if missing is not None:
            reports.append(FileReport(str(directory), None, [missing]))
        reports.extend(
            FileReport(str(p.path), chosen, p.findings)
            for p, chosen in zip(parsed_files, selected, strict=True)
        )
    if models.error is not None:
        for report in reports:
            report.findings.append(
                _finding(
                    "CV301",
                    f"cnisdk plugins could not be listed: {models.error}; their configs were "
                    "not checked against their models",
                )
            )
    for report in reports:
        # Most severe first; within a severity, the order the checks ran (file order).
        report.findings.sort(key=lambda f: _SEVERITY_RANK[f.severity])
    return reports
