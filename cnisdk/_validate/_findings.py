"""The finding model: codes, severities, locations, and the per-file report."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cnisdk.spec._json import go_json_kind

__all__ = [
    "CODES",
    "SEVERITY_RANK",
    "FileReport",
    "Finding",
    "Severity",
    "finding",
    "join",
    "kind",
    "parent",
    "preview",
]

Severity = Literal["error", "warning", "info"]

CODES: dict[str, tuple[Severity, str]] = {
    # The file itself.
    "CV001": ("error", "the file cannot be read"),
    "CV002": ("error", "the file is not valid JSON (location: line and column)"),
    "CV003": ("error", "the top-level JSON value is not an object"),
    "CV004": ("warning", "a key appears twice in one object; the last one wins"),
    "CV005": ("warning", "the file is not UTF-8: Go reads each invalid byte as U+FFFD"),
    "CV006": ("error", "the path is a FIFO, socket, device or directory, not a file: not read"),
    "CV007": ("error", "the file is larger than the size cap (1 MiB): not read"),
    "CV009": ("error", "libcni does not load the file, for a reason no other finding names"),
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
    "CV205": ("info", "a cnisdk plugin is installed in Python but has no binary on the CNI path"),
    # Verbs the config's version allows.
    "CV210": ("info", "the config's version has no CHECK (needs 0.4.0)"),
    "CV211": ("info", "the config's version has no GC or STATUS (needs 1.1.0)"),
    "CV212": ("warning", "'disableCheck'/'disableGC' has no effect at the config's version"),
    "CV213": ("info", "every plugin supports a newer version than the config asks for"),
    # Plugin config models: cnisdk plugins and the reference plugins.
    "CV300": ("error", "a field does not validate against the cnisdk plugin's config model"),
    "CV301": ("error", "the cnisdk plugin registered for this type does not load"),
    "CV310": ("error", "a reference plugin cannot decode a field: wrong type or bad value"),
    "CV311": ("error", "a reference plugin refuses the ADD: a missing or conflicting setting"),
    "CV312": ("warning", "a reference plugin silently ignores or replaces a setting"),
    "CV313": ("warning", "the plugins release (--plugins-release) lacks this plugin or setting"),
    "CV320": ("warning", "a key the plugin does not read (a typo?): it has no effect"),
    "CV321": ("warning", "a cnisdk plugin's entry lacks a capability the plugin asks for"),
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

SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one place in a config file.

    :ivar severity: ``error`` (a runtime or plugin rejects it), ``warning`` (works, but likely
        not as meant) or ``info``.
    :ivar code: a stable code from :data:`CODES`.
    :ivar message: what is wrong and how to fix it.
    :ivar location: a JSON path such as ``plugins[1].ipam.subnet`` (for a missing key: where
        it belongs), ``line 3, column 5`` for JSON syntax errors, or ``""`` for the file as a
        whole.
    :ivar line: the line of the file the finding points at (1-based), or ``None``.
    """

    severity: Severity
    code: str
    message: str
    location: str = ""
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding as in ``--output json``."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "location": self.location,
            "line": self.line,
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


def finding(code: str, message: str, location: str = "", line: int | None = None) -> Finding:
    """A finding of ``code`` with the code's severity."""
    return Finding(CODES[code][0], code, message, location, line)


def join(prefix: str, key: str | int) -> str:
    """The location of ``key`` (an object key or an array index) inside ``prefix``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


_LAST_PART = re.compile(r"(\[\d+\]|\.[^.\[\]]*|^[^.\[\]]*)$")


def parent(location: str) -> str:
    """The location one level up (``plugins[0].ipam`` for ``plugins[0].ipam.type``)."""
    return _LAST_PART.sub("", location, count=1)


def kind(value: Any) -> str:
    """A JSON value's kind for a message: ``a string``, ``an array``, ``null``..."""
    if value is None:
        return "null"
    name = go_json_kind(value)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


_PREVIEW = 60


def preview(value: Any) -> str:
    """A short JSON rendering of ``value`` for a message, whatever its size or depth."""
    if isinstance(value, dict | list) and not _small(value):
        count = len(value)
        what = "key" if isinstance(value, dict) else "item"
        return f"{kind(value)} of {count} {what}{'s' if count != 1 else ''}"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


def _small(value: dict[Any, Any] | list[Any]) -> bool:
    """Whether a container has few items and little nesting (so rendering it is cheap)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while pending:
        node, depth = pending.pop()
        if depth > 3:
            return False
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            items += 1
            if items > 12:
                return False
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return True
