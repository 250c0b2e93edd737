"""Editing a CNI config's bytes: our entries in, our entries out, every other byte kept.

A conflist is edited by splicing bytes, not by decoding and re-encoding it (Istio re-marshals
the whole file). Splicing costs a span walk over Go's scanner (:func:`value_spans`) and the
few functions below; what operators get for it:

- uninstall gives back the file's original bytes, so a config management tool or a checksum
  sees no drift once we are gone;
- the operator's (or the primary CNI's) formatting, key order, number spellings (``1.0``,
  ``1e3``) and bytes Go reads leniently (a latin-1 ``é`` in a description, which Go decodes
  as U+FFFD and re-marshalling would replace for good) are left exactly as they were;
- a second install writes nothing, so tools that watch the file see no event.

Our entry goes after the last plugin with the separator and indentation the file already
uses between plugins; removing it cuts exactly that span again. Every edit is checked: the
result must decode (as Go decodes it) to the intended document, else the whole document is
rendered instead (``json.dumps`` with a 2-space indent and a final newline, the format most
CNI installers write), and a rendering that does not decode to it either is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cnisdk.spec._json import GoJSONError, fold_keys, loads_go
from cnisdk.spec._json_spans import JSONSpan, value_spans

__all__ = [
    "DEFAULT_CNI_VERSION",
    "EditError",
    "add_entries",
    "chain_entries",
    "entries_of",
    "insert_element",
    "plugin_elements",
    "remove_elements",
    "render_json",
    "same_json",
    "wrap_conf",
]

DEFAULT_CNI_VERSION = "0.3.1"
"""The list version for a converted ``.conf`` that has none (Istio's choice)."""
_WHITESPACE = b" \t\r\n"


class EditError(ValueError):
    """The config cannot be edited into the intended document."""


def chain_entries(
    types: Sequence[str],
    given: Sequence[Mapping[str, Any]],
    capabilities: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """One entry per type, in ``types`` order: the given one (minus ``cniVersion``) or a bare
    one, with the plugin's declared ``capabilities`` unless the entry sets its own.

    :raises ValueError: an entry without a type, for a type not being installed, or twice.
    """
    by_type: dict[str, dict[str, Any]] = {}
    for entry in given:
        plugin_type = entry.get("type")
        if not isinstance(plugin_type, str) or plugin_type not in types:
            raise ValueError(
                f"--chain entry has type {plugin_type!r}; expected one of {', '.join(types)}"
            )
        if plugin_type in by_type:
            raise ValueError(f"--chain has two entries of type {plugin_type!r}")
        # The list's cniVersion applies to every plugin; a stale one here only confuses.
        by_type[plugin_type] = {
            k: v for k, v in fold_keys(entry, ("cniVersion",)).items() if k != "cniVersion"
        }
    entries = []
    for plugin_type in types:
        entry = by_type.get(plugin_type, {"type": plugin_type})
        wanted = capabilities.get(plugin_type, ())
        # Go matches the field case-insensitively: "Capabilities" is the entry's own too.
        if wanted and "capabilities" not in fold_keys(entry, ("capabilities",)):
            entry = {**entry, "capabilities": {name: True for name in wanted}}
        entries.append(entry)
    return entries


def _canonical(doc: Any) -> str:
    # Strict equality: Python's == takes 1 == 1.0 == True, JSON does not.
    return json.dumps(doc, sort_keys=True, ensure_ascii=True)


def same_json(a: Any, b: Any) -> bool:
    """Whether two decoded documents are the same JSON (key order aside)."""
    return _canonical(a) == _canonical(b)


def _dumps(doc: Any, indent: str | None) -> bytes:
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(doc, ensure_ascii=False, indent=indent, separators=separators)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a caller: escape it instead
        return json.dumps(doc, indent=indent, separators=separators).encode()


def render_json(doc: Any) -> bytes:
    """How a whole file is written when it cannot be spliced: 2-space indent, a final newline."""
    return _dumps(doc, "  ") + b"\n"


def _decode(data: bytes) -> Any:
    try:
        return loads_go(data)
    except GoJSONError as exc:
        raise EditError(str(exc)) from None


def _plugins(data: bytes) -> JSONSpan:
    root = value_spans(data, depth=2)
    # Go and Python keep the last of duplicate keys: the last "plugins" is the one read.
    found = [m.value for m in root.members if m.key == "plugins"]
    if not found or data[found[-1].start : found[-1].start + 1] != b"[":
        raise EditError("no plugins list")
    return found[-1]


def plugin_elements(data: bytes) -> list[bytes]:
    """The bytes of each element of a conflist's ``plugins``."""
    return [data[e.start : e.end] for e in _plugins(data).elements]


def entries_of(doc: Any, types: Sequence[str]) -> list[int]:
    """Indexes of the ``plugins`` elements of a decoded conflist whose type is in ``types``."""
    plugins = doc.get("plugins") if isinstance(doc, Mapping) else None
    if not isinstance(plugins, list):
        return []
    return [i for i, p in enumerate(plugins) if isinstance(p, Mapping) and p.get("type") in types]


def _cut(data: bytes, index: int) -> bytes:
    spans = _plugins(data).elements
    start, end = spans[index].start, spans[index].end
    if index > 0:  # with the separator before it: exactly what an append adds
        return data[: spans[index - 1].end] + data[end:]
    if len(spans) > 1:
        return data[:start] + data[spans[1].start :]
    return data[:start] + data[end:]


def _indent_unit(data: bytes) -> str:
    # The whitespace before the first top-level key is the file's indent step.
    i = len(data) - len(data.lstrip(_WHITESPACE)) + 1
    gap = data[i:]
    gap = gap[: len(gap) - len(gap.lstrip(_WHITESPACE))]
    unit = gap.rsplit(b"\n", 1)[-1] if b"\n" in gap else b""
    return unit.decode("ascii") or "  "


def _separator(data: bytes, plugins: JSONSpan) -> bytes:
    spans = plugins.elements
    if len(spans) > 1:
        return data[spans[-2].end : spans[-1].start]
    return b"," + data[plugins.start + 1 : spans[0].start]


def _append(data: bytes, element: Any, raw: bytes | None = None) -> bytes:
    plugins = _plugins(data)
    spans = plugins.elements
    if not spans:
        close = plugins.end - 1
        return data[: plugins.start + 1] + (raw or _dumps(element, None)) + data[close:]
    sep = _separator(data, plugins)
    if raw is None:
        if b"\n" in sep:
            indent = sep.rsplit(b"\n", 1)[1].decode("ascii")
            raw = _dumps(element, _indent_unit(data)).replace(b"\n", ("\n" + indent).encode())
        else:
            raw = _dumps(element, None)
    at = spans[-1].end
    return data[:at] + sep + raw + data[at:]


def _checked(new: bytes, target: Any) -> bytes:
    """``new`` when it decodes to ``target``, else a full rendering of ``target``."""
    try:
        if same_json(_decode(new), target):
            return new
    except EditError:
        pass
    rendered = render_json(target)
    if not same_json(_decode(rendered), target):
        raise EditError("the edited document does not encode to itself")
    return rendered


def add_entries(data: bytes, entries: Sequence[Mapping[str, Any]], remove: Sequence[int]) -> bytes:
    """Conflist bytes with the elements at ``remove`` cut and ``entries`` appended last.

    :raises EditError: ``data`` is not a conflist with a plugins list, or cannot be edited.
    """
    doc = _decode(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
        raise EditError("not a conflist with a plugins list")
    target = dict(doc)
    target["plugins"] = [p for i, p in enumerate(doc["plugins"]) if i not in set(remove)]
    target["plugins"].extend(entries)
    if same_json(doc, target):
        return data
    try:
        new = data
        for index in sorted(remove, reverse=True):
            new = _cut(new, index)
        for entry in entries:
            new = _append(new, entry)
    except (GoJSONError, EditError, IndexError, UnicodeDecodeError):
        new = b""
    return _checked(new, target)


def remove_elements(data: bytes, remove: Sequence[int]) -> bytes:
    """Conflist bytes without the ``plugins`` elements at ``remove``.

    :raises EditError: ``data`` is not a conflist, or cannot be edited.
    """
    return add_entries(data, (), remove)


def insert_element(data: bytes, index: int, raw: bytes) -> bytes:
    """Conflist bytes with the element ``raw`` (JSON bytes) put back at ``index`` (at the end
    when the list is shorter now).

    :raises EditError: ``data`` is not a conflist, or ``raw`` is not JSON.
    """
    doc = _decode(data)
    element = _decode(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
        raise EditError("not a conflist with a plugins list")
    plugins = list(doc["plugins"])
    index = min(index, len(plugins))
    target = {**doc, "plugins": [*plugins[:index], element, *plugins[index:]]}
    try:
        if index == len(plugins):
            new = _append(data, element, raw)
        else:
            spans = _plugins(data).elements
            at = spans[index].start
            sep = _separator(data, _plugins(data))
            new = data[:at] + raw + sep + data[at:]
    except (GoJSONError, EditError, IndexError):
        new = b""
    return _checked(new, target)


def wrap_conf(data: bytes, entries: Sequence[Mapping[str, Any]]) -> bytes:
    """A single-plugin config as a conflist with ``entries`` after it (Istio's conversion).

    ``{"cniVersion": <the conf's, else 0.3.1>, "name": <the conf's>, "plugins": [<the conf
    minus cniVersion>, <entries>]}``; the network name stays the conf's own (not Istio's
    fixed ``k8s-pod-network``) so that libcni's cache keys for running pods do not change.

    :raises EditError: ``data`` is not a JSON object.
    """
    doc = _decode(data)
    if not isinstance(doc, dict):
        raise EditError("not a JSON object")
    fields = fold_keys(doc, ("cniVersion", "name"))
    inner = {k: v for k, v in fold_keys(doc, ("cniVersion",)).items() if k != "cniVersion"}
    wrapped = {
        "cniVersion": fields.get("cniVersion") or DEFAULT_CNI_VERSION,
        "name": fields.get("name") or "k8s-pod-network",
        "plugins": [inner, *entries],
    }
    return _checked(b"", wrapped)
