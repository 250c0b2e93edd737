"""JSON helpers that reproduce the bytes Go's ``encoding/json`` writes and how it reads keys."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["dumps_compact", "dumps_go", "fold_keys"]

# Go escapes these inside strings by default (json.Marshal's HTML-safe mode).
_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _escape_html(text: str) -> str:
    for raw, escaped in _HTML_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def dumps_go(doc: Any) -> bytes:
    """``json.MarshalIndent(doc, "", "    ")``: 4-space indent, UTF-8, no trailing newline."""
    return _escape_html(json.dumps(doc, indent=4, ensure_ascii=False)).encode()


def dumps_compact(doc: Any) -> bytes:
    """``json.Marshal(doc)``: compact separators, UTF-8, no trailing newline."""
    return _escape_html(json.dumps(doc, separators=(",", ":"), ensure_ascii=False)).encode()


def fold_keys(doc: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """Rename keys that match a known key case-insensitively, as Go's decoder matches fields.

    Go keeps the last of several keys that decode into the same field; so does this.
    Keys that match no known key are kept unchanged.
    """
    canonical = {name.lower(): name for name in known}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        target = canonical.get(key.lower(), key) if isinstance(key, str) else key
        out.pop(target, None)
        out[target] = value
    return out


def go_json_kind(value: Any) -> str:
    """The JSON kind Go names in an unmarshal type error (``cannot unmarshal number into ...``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def go_type_name(value: Any) -> str:
    """Go's ``%T`` of a value decoded into ``interface{}`` (``float64``, ``[]interface {}``...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if value is None:
        return "<nil>"
    return "map[string]interface {}"
