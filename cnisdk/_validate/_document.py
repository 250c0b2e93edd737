"""One config file as bytes and as Go decodes it, and where each key of it is.

Reading is bounded (:func:`cnisdk._files.read_bounded` with the conf-dir size cap): a FIFO,
socket, device or directory is refused without being read, a file over the cap is refused,
and a symlink loop is named as such. Decoding is Go's (:func:`cnisdk.spec._json.loads_go`):
what Go accepts decodes (invalid UTF-8 included), and a syntax error carries Go's offset.

:class:`KeyIndex` scans the bytes once, without recursion, and remembers where every key and
array item starts, so that every finding can name its line, and which keys an object repeats.
"""

from __future__ import annotations

import bisect
import errno
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cnisdk._confdir import MAX_CONF_BYTES
from cnisdk._files import FileTooLargeError, NotARegularFileError, read_bounded
from cnisdk._validate._findings import Finding, finding, join, parent
from cnisdk.spec._json import GoJSONError, loads_go

__all__ = ["Document", "KeyIndex", "decode", "read"]


def read(path: str | os.PathLike[str]) -> bytes | Finding:
    """The file's bytes, or the finding that says why they were not read."""
    try:
        return read_bounded(path, MAX_CONF_BYTES)
    except NotARegularFileError as exc:
        return finding(
            "CV006",
            f"{exc}: it is not read, and a runtime cannot use it; replace it with a regular "
            "file or remove it",
        )
    except FileTooLargeError:
        return finding(
            "CV007",
            f"the file is larger than {MAX_CONF_BYTES // (1 << 20)} MiB, far more than any "
            "network config; it is not read: check that it is the right file",
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = "it is a symlink loop (a link that leads back to itself)"
            hint = "point the link at a real file"
        elif exc.errno == errno.ENOENT:
            why = "it is a dangling symlink (its target does not exist)"
            hint = "point the link at a real file or remove it"
        else:
            why = exc.strerror or str(exc)
            hint = "check its permissions"
        return finding("CV001", f"cannot read the file: {why}; {hint}")


@dataclass
class Document:
    """A file's bytes decoded as Go decodes them."""

    data: bytes
    doc: Any = None
    """The decoded value; ``None`` when the bytes are not JSON Go accepts."""
    valid: bool = False
    index: KeyIndex | None = None
    findings: list[Finding] = field(default_factory=list)
    """What decoding found: a syntax error, invalid UTF-8, repeated keys."""


def decode(data: bytes) -> Document:
    """Decode ``data`` as Go does and index where its keys are."""
    document = Document(data)
    try:
        document.doc = loads_go(data)
    except GoJSONError as exc:
        # Go's offset counts the offending byte; at the end of the input there is none.
        offset = exc.offset if exc.offset is not None else len(data)
        at_end = str(exc) == "unexpected end of JSON input"
        where = _line_column(data, len(data) if at_end else max(offset - 1, 0))
        document.findings.append(
            finding(
                "CV002",
                f"JSON syntax error: {exc}; fix the JSON (a trailing comma or a missing quote "
                "is the usual cause)",
                f"line {where[0]}, column {where[1]}",
                where[0],
            )
        )
        return document
    document.valid = True
    document.index = index = KeyIndex(data)
    bad = _first_invalid_utf8(data)
    if bad is not None:
        line, column = _line_column(data, bad[0])
        others = f" ({bad[1]} such bytes in all)" if bad[1] > 1 else ""
        document.findings.append(
            finding(
                "CV005",
                f"byte 0x{data[bad[0]]:02x} at line {line}, column {column} is not UTF-8{others}:"
                " runtimes and Go plugins read each such byte as U+FFFD, so they see other text "
                "than was written; save the file as UTF-8",
                index.location_at(bad[0]),
                line,
            )
        )
    for location, key, offsets, _ in index.duplicates:
        lines = [index.line_of(offset) for offset in offsets]
        document.findings.append(
            finding(
                "CV004",
                f"key {key!r} appears {len(offsets)} times in one object (lines "
                f"{', '.join(map(str, lines))}); runtimes and plugins use the last one "
                f"(line {lines[-1]}), so remove the others",
                location,
                lines[0],
            )
        )
    return document


def _first_invalid_utf8(data: bytes) -> tuple[int, int] | None:
    """The offset of the first byte that is not UTF-8 and how many there are, or ``None``."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Go's replacement (registered by cnisdk.spec._json) gives one U+FFFD per bad byte.
        replaced = data.decode("utf-8", "cnisdk-go-replace").count("\ufffd")
        genuine = data.decode("utf-8", "ignore").count("\ufffd")
        return exc.start, max(replaced - genuine, 1)
    return None


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return line, column


# One token of a document already known to be valid: punctuation, a string, or a scalar.
_TOKEN = re.compile(
    rb'[ \t\r\n]*(?:([\[\]{}:,])|("[^"\\]*(?:\\.[^"\\]*)*")|([^ \t\r\n\[\]{}:,"]+))'
)


@dataclass
class _Frame:
    location: str
    parts: tuple[str | int, ...]
    is_object: bool
    index: int = 0
    expect_key: bool = True
    key: str = ""
    keys: dict[str, list[int]] = field(default_factory=dict)


class KeyIndex:
    """Where each location of a valid JSON document starts, and its repeated keys.

    A location is rendered as findings render it (:func:`~cnisdk._validate._findings.join`):
    an object member maps to the offset of its key (the last one when a key repeats: that is
    the value Go keeps), an array item to the offset of its value, ``""`` to the document.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offsets: dict[str, int] = {}
        self._folded: dict[str, int] = {}
        self.duplicates: list[tuple[str, str, list[int], tuple[str | int, ...]]] = []
        """(location, key, offset of each occurrence, path) of every key an object repeats."""
        self._newlines = [m.start() for m in re.finditer(b"\n", data)]
        self._scan()
        self._starts = sorted((offset, location) for location, offset in self.offsets.items())

    def _scan(self) -> None:
        stack: list[_Frame] = []
        for match in _TOKEN.finditer(self.data):
            punct, string, _ = match.groups()
            start = match.start(1) if punct else match.start(2) if string else match.start(3)
            top = stack[-1] if stack else None
            if punct is not None:
                if punct in b"[{":
                    location = self._value(top, start)
                    parts: tuple[str | int, ...] = ()
                    if top is not None:
                        parts = (*top.parts, top.key if top.is_object else top.index)
                    stack.append(_Frame(location, parts, punct == b"{"))
                elif punct in b"]}":
                    frame = stack.pop()
                    for key, offsets in frame.keys.items():
                        if len(offsets) > 1:
                            location = join(frame.location, key)
                            self.duplicates.append((location, key, offsets, (*frame.parts, key)))
                elif punct == b"," and top is not None:
                    top.expect_key = top.is_object
                    top.index += 1
                continue
            if string is not None and top is not None and top.is_object and top.expect_key:
                key = json.loads(string.decode("utf-8", "replace"))
                top.keys.setdefault(key, []).append(start)
                top.key = key
                location = join(top.location, key)
                self.offsets[location] = start
                self._folded[location.lower()] = start
                top.expect_key = False
                continue
            self._value(top, start)

    def _value(self, top: _Frame | None, start: int) -> str:
        """Record a value starting at ``start`` and return its location."""
        if top is None:
            self.offsets.setdefault("", start)
            return ""
        if top.is_object:
            return join(top.location, top.key)  # its key was recorded

        location = join(top.location, top.index)
        self.offsets[location] = start
        self._folded[location.lower()] = start
        return location

    def line_of(self, offset: int) -> int:
        """The 1-based line of a byte offset."""
        return bisect.bisect_left(self._newlines, offset) + 1

    def line(self, location: str) -> int | None:
        """The line of a location; for a missing key, the line of the object it belongs in.

        Keys match case-insensitively when no exact match exists (Go matches struct fields
        that way, so ``Type`` is where ``type`` is). ``None`` for the whole file.
        """
        if not location:
            return None
        if location.startswith("line "):
            number = location[5:].split(",", 1)[0]
            return int(number) if number.isdigit() else None
        current = location
        while True:
            offset = self.offsets.get(current, self._folded.get(current.lower()))
            if offset is not None:
                return self.line_of(offset)
            if not current:
                return None
            current = parent(current)

    def location_at(self, offset: int) -> str:
        """The location whose key or value starts last at or before ``offset``."""
        position = bisect.bisect_right(self._starts, (offset, "\uffff")) - 1
        return self._starts[position][1] if position >= 0 else ""
