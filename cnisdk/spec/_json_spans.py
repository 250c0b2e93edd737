"""Where each value of a JSON document sits in its bytes, for editing a file in place.

Validity is Go's (the scanner in :mod:`cnisdk.spec._json`); the spans then come from a token
walk over the bytes, so a file is edited without re-encoding anything outside the edit.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from cnisdk.spec._json import _SURROGATE, GoJSONError, _syntax_error_cached

__all__ = ["JSONMember", "JSONSpan", "value_spans"]


# For editing a file without re-encoding it (``cnisdk install`` splices its entry into an
# operator's conflist). Validity is Go's scanner's decision; the walk below only runs over
# documents it accepted, where a token pattern finds every value exactly.

_BYTE_TOKEN = re.compile(
    rb'[ \t\r\n]*(?:([\[\]{}:,])|("[^"\\]*(?:\\.[^"\\]*)*")|([^ \t\r\n\[\]{}:,"]+))', re.S
)


class JSONSpan(NamedTuple):
    """Where one value sits in a document: ``data[start:end]`` are its bytes.

    ``members`` (an object) or ``elements`` (an array) are filled for the containers that
    :func:`value_spans` was asked to look into, and empty otherwise.
    """

    start: int
    end: int
    members: tuple[JSONMember, ...] = ()
    elements: tuple[JSONSpan, ...] = ()


class JSONMember(NamedTuple):
    """One member of an object: its key (decoded as Go decodes it), where the quoted key
    starts, and its value."""

    key: str
    key_start: int
    value: JSONSpan


def _decode_key(raw: bytes) -> str:
    key = json.loads(raw.decode("utf-8", errors="cnisdk-go-replace"))
    return _SURROGATE.sub("\ufffd", key) if isinstance(key, str) else str(key)


def value_spans(data: bytes, depth: int = 1) -> JSONSpan:
    """The byte span of the document in ``data`` and of the values inside it.

    :param depth: how many levels of containers list their members or elements: 0 only the
        document, 1 also its members (or elements), 2 also theirs, and so on.
    :raises GoJSONError: with Go's message when Go rejects ``data``.
    """
    error = _syntax_error_cached(data)
    if error is not None:
        raise GoJSONError(*error)
    # One frame per open container: [start, is_object, children, key, key_start, listed].
    frames: list[list[Any]] = []
    root: JSONSpan | None = None

    def place(span: JSONSpan) -> None:
        nonlocal root
        if not frames:
            root = span
            return
        frame = frames[-1]
        if frame[5]:
            frame[2].append(JSONMember(frame[3], frame[4], span) if frame[1] else span)
        frame[3] = None

    for match in _BYTE_TOKEN.finditer(data):
        punct, string, _ = match.groups()
        if punct is not None:
            if punct in b"[{":
                start = match.start(1)
                frames.append([start, punct == b"{", [], None, -1, len(frames) < depth])
            elif punct in b"]}":
                start, is_object, children, _, _, _ = frames.pop()
                end = match.end(1)
                if is_object:
                    place(JSONSpan(start, end, members=tuple(children)))
                else:
                    place(JSONSpan(start, end, elements=tuple(children)))
            continue
        group = 2 if string is not None else 3  # a string, else a number or literal
        start, end = match.start(group), match.end(group)
        if string is not None and frames and frames[-1][1] and frames[-1][3] is None:
            frame = frames[-1]
            frame[3] = _decode_key(string) if frame[5] else ""
            frame[4] = start
            continue
        place(JSONSpan(start, end))
    if root is None:  # unreachable: Go's scanner accepted a document without a value
        raise GoJSONError("unexpected end of JSON input")
    return root
