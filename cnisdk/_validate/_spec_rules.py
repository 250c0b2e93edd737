"""The CNI spec's and libcni's rules for a network config and its plugin entries (CV0xx, CV21x).

Pure functions of the decoded document: each appends findings with the location of the key
it is about (for a missing key, where the key belongs).
"""

from __future__ import annotations

from typing import Any

from cnisdk._discovery import is_plugin_type
from cnisdk._validate._findings import Finding, finding, join, kind
from cnisdk.spec._errors import CNIError
from cnisdk.spec._names import validate_network_name
from cnisdk.spec._versions import (
    ALL_VERSIONS,
    CURRENT_VERSION,
    parse_version,
    supports_check,
    supports_gc,
)

__all__ = [
    "BOOL_FLAGS",
    "PLUGIN_KEYS",
    "check_ipam_shape",
    "check_network",
    "check_plugin",
    "check_verbs",
]

BOOL_FLAGS = ("disableCheck", "disableGC", "loadOnlyInlinedPlugins")
# The keys of types.PluginConf, which Go matches case-insensitively in a plugin entry.
PLUGIN_KEYS = (
    "cniVersion", "name", "type", "capabilities", "ipam", "dns", "prevResult", "runtimeConfig",
)  # fmt: skip


def _check_version(value: str, location: str, findings: list[Finding]) -> None:
    try:
        parsed = parse_version(value)
    except ValueError as exc:
        findings.append(
            finding(
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
            finding(
                "CV027",
                f"{value!r} is newer than {CURRENT_VERSION}; runtimes that do not know it skip "
                "this entry and use the highest one they know",
                location,
            )
        )
        return
    findings.append(
        finding(
            "CV024",
            f"{value!r} is not a CNI spec version; plugins reject it as incompatible. Use one of "
            f"{', '.join(ALL_VERSIONS)}",
            location,
        )
    )


def _valid_network_name(name: str) -> bool:
    try:
        validate_network_name(name)
    except CNIError:
        return False
    return True


def check_network(doc: dict[str, Any], is_list: bool, findings: list[Finding]) -> None:
    """The network's ``name``, ``cniVersion``, ``cniVersions`` and the list's flags."""
    name = doc.get("name")
    if name is None or not isinstance(name, str):
        what = "missing" if "name" not in doc else f"{kind(name)}, not a string"
        findings.append(
            finding(
                "CV020",
                f'the network name is {what}; set "name" to a string such as "k8s-pod-network"',
                "name",
            )
        )
    elif not _valid_network_name(name):
        findings.append(
            finding(
                "CV021",
                f"network name {name!r} is {'empty' if not name else 'invalid'}: it must start "
                "with a letter or digit and contain only letters, digits, '_', '.' and '-' "
                "(runtimes fail every ADD otherwise)",
                "name",
            )
        )
    version = doc.get("cniVersion")
    if version is not None and not isinstance(version, str):
        findings.append(
            finding(
                "CV022",
                f'cniVersion is {kind(version)}; write it as a string, e.g. "1.0.0"',
                "cniVersion",
            )
        )
    elif not version:
        findings.append(
            finding(
                "CV025",
                f"cniVersion is {'empty' if 'cniVersion' in doc else 'missing'}, so runtimes and "
                'plugins treat the config as version 0.1.0; set it, e.g. "cniVersion": '
                '"1.0.0"',
                "cniVersion",
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
                finding(
                    "CV026",
                    'cniVersions must be an array of version strings, e.g. ["1.0.0", "1.1.0"]',
                    "cniVersions",
                )
            )
        else:
            for index, value in enumerate(versions):
                _check_version(value, f"cniVersions[{index}]", findings)
    for key in BOOL_FLAGS:
        if key not in doc:
            continue
        value = doc[key]
        if isinstance(value, bool):
            continue
        if key == "disableCheck" and isinstance(value, str) and value.lower() in {"true", "false"}:
            findings.append(
                finding(
                    "CV031",
                    f"disableCheck is the string {value!r}; libcni before 1.2 rejects the whole "
                    f"file, so write the JSON boolean {value.lower()}",
                    key,
                )
            )
            continue
        findings.append(
            finding(
                "CV030",
                f"{key} is {kind(value)}; runtimes reject the file: write true or false",
                key,
            )
        )


def check_plugin(
    conf: dict[str, Any], where: str, list_version: str | None, findings: list[Finding]
) -> str | None:
    """One plugin entry's spec rules; return its type when it names a binary to look for."""
    plugin_type = conf.get("type")
    usable: str | None = None
    if plugin_type is None or plugin_type == "":
        findings.append(
            finding(
                "CV040",
                f'the plugin has {"an empty" if "type" in conf else "no"} type; set "type" to '
                "the plugin's binary name, e.g. \"bridge\" (libcni: missing 'type')",
                join(where, "type"),
            )
        )
    elif not isinstance(plugin_type, str):
        findings.append(
            finding(
                "CV041",
                f"type is {kind(plugin_type)}; it must be the plugin's binary name as a string",
                join(where, "type"),
            )
        )
    elif not is_plugin_type(plugin_type):
        findings.append(
            finding(
                "CV042",
                f"type {plugin_type!r} is not a file name in the CNI bin directory: use the "
                "binary's name only (letters, digits, '_', '.', '-'; no '/')",
                join(where, "type"),
            )
        )
    else:
        usable = plugin_type
    if list_version is not None and isinstance(conf.get("cniVersion"), str):
        own = conf["cniVersion"]
        if own and own != list_version:
            findings.append(
                finding(
                    "CV028",
                    f"this plugin's cniVersion {own!r} is replaced by the list's "
                    f"{list_version!r} when the runtime runs it; remove it or make them match",
                    join(where, "cniVersion"),
                )
            )
    if "prevResult" in conf:
        findings.append(
            finding(
                "CV043",
                "prevResult is set by the runtime from the previous plugin's result; remove it "
                "from the stored config",
                join(where, "prevResult"),
            )
        )
    if "capabilities" in conf:
        caps = conf["capabilities"]
        if not isinstance(caps, dict):
            findings.append(
                finding(
                    "CV044",
                    f"capabilities is {kind(caps)}; it must be an object such as "
                    '{"portMappings": true}',
                    join(where, "capabilities"),
                )
            )
        else:
            for key, value in caps.items():
                if not isinstance(value, bool):
                    findings.append(
                        finding(
                            "CV044",
                            f"capability {key!r} is {kind(value)}; write true or false",
                            join(join(where, "capabilities"), key),
                        )
                    )
    if "runtimeConfig" in conf:
        findings.append(
            finding(
                "CV045",
                "runtimeConfig is written by the runtime from the enabled capabilities and "
                'replaces this value whenever one matches; declare "capabilities" instead',
                join(where, "runtimeConfig"),
            )
        )
    return usable


def check_ipam_shape(
    conf: dict[str, Any], where: str, ignores_ipam: bool, findings: list[Finding]
) -> str | None:
    """The entry's ``ipam`` object; return the IPAM type when it names a binary to look for.

    :param ignores_ipam: the entry's plugin never reads ``ipam``.
    """
    if "ipam" not in conf or conf["ipam"] is None:
        return None
    ipam = conf["ipam"]
    location = join(where, "ipam")
    if not isinstance(ipam, dict):
        findings.append(
            finding(
                "CV046",
                f"ipam is {kind(ipam)}; it must be an object such as "
                '{"type": "host-local", "subnet": "10.22.0.0/16"}',
                location,
            )
        )
        return None
    if ipam and ignores_ipam:
        findings.append(
            finding(
                "CV403",
                f"the {conf.get('type')} plugin ignores ipam; move these settings to the main "
                "plugin's ipam (usually the first plugin) or remove them",
                location,
            )
        )
        return None
    ipam_type = ipam.get("type")
    if ipam_type is None or ipam_type == "":
        if ipam:
            findings.append(
                finding(
                    "CV047",
                    "ipam has settings but no type, so no IPAM plugin runs and they are ignored; "
                    'add e.g. "type": "host-local"',
                    join(location, "type"),
                )
            )
        return None
    if not isinstance(ipam_type, str) or not is_plugin_type(ipam_type):
        findings.append(
            finding(
                "CV046",
                f'ipam.type {ipam_type!r} is not a plugin binary name; use e.g. "host-local"',
                join(location, "type"),
            )
        )
        return None
    return ipam_type


def check_verbs(doc: dict[str, Any], version: str, findings: list[Finding]) -> None:
    """Which verbs the config's version allows, and flags that have no effect at it."""
    try:
        parse_version(version)
    except ValueError:
        return
    if not supports_check(version):
        findings.append(
            finding(
                "CV210",
                f"version {version} has no CHECK, so runtimes cannot verify a pod's network "
                "after ADD; use cniVersion 0.4.0 or later if every plugin supports it",
                "cniVersion",
            )
        )
    if not supports_gc(version):
        findings.append(
            finding(
                "CV211",
                f"version {version} has no GC or STATUS, so runtimes cannot clean up leaked "
                "attachments or ask whether the network is ready; use cniVersion 1.1.0 if every "
                "plugin supports it",
                "cniVersion",
            )
        )
    for key, supported, verb, needs in (
        ("disableCheck", supports_check, "CHECK", "0.4.0"),
        ("disableGC", supports_gc, "GC", "1.1.0"),
    ):
        if doc.get(key) is True and not supported(version):
            findings.append(
                finding(
                    "CV212",
                    f"{key} has no effect: version {version} has no {verb} (needs {needs}); "
                    f"remove it or raise cniVersion",
                    key,
                )
            )
