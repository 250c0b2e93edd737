"""JSON helpers that reproduce Go's ``encoding/json``: the bytes it writes, what it accepts (and
its syntax-error messages) and how it matches keys."""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "GoJSONError",
    "dumps_compact",
    "dumps_go",
    "fold_keys",
    "go_json_kind",
    "go_json_syntax_error",
    "go_json_syntax_error_at",
    "go_quote",
    "go_sorted",
    "go_type_name",
    "loads_go",
]

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


def go_sorted(value: Any) -> Any:
    """``value`` with every object's keys in the order ``json.Marshal`` writes a Go map: sorted
    by bytes (for ``str`` keys, code point order), at every level.

    Iterative, so a document nested as deeply as Go accepts (10000 levels) is no problem.
    """
    holder: list[Any] = [None]
    pending: list[tuple[Any, Any, Any]] = [(value, holder, 0)]
    while pending:
        node, parent, slot = pending.pop()
        if isinstance(node, Mapping):
            copy: dict[str, Any] = dict.fromkeys(sorted(node))  # the order is set here
            parent[slot] = copy
            pending.extend((node[key], copy, key) for key in copy)
        elif isinstance(node, list):
            items: list[Any] = [None] * len(node)
            parent[slot] = items
            pending.extend((item, items, index) for index, item in enumerate(node))
        else:
            parent[slot] = node
    return holder[0]


_GO_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
                     "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}  # fmt: skip


def go_quote(text: str | bytes) -> str:
    """Go's ``%q`` of a string: a double-quoted literal with Go's escapes.

    Bytes that are not UTF-8 (as ``bytes``, or kept as ``surrogateescape`` code points in a
    ``str`` from the environment) are written ``\\xNN``, as Go writes invalid UTF-8.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _GO_QUOTE_ESCAPES:
            out.append(_GO_QUOTE_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == " " or (char.isprintable() and not char.isspace()):
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


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


# -- reading JSON as Go's encoding/json does -----------------------------------------------------
#
# Go's json.Unmarshal first runs a byte-level scanner over the whole input (checkValid) and
# reports the first syntax error it finds; only a valid document is decoded. The scanner below
# follows the same state machine (Go 1.19's encoding/json/scanner.go) so that it accepts
# exactly what Go accepts and words each error as Go does.

_MAX_DEPTH = 10000  # Go's maxNestingDepth
_IN_OBJECT_KEY, _IN_OBJECT_VALUE, _IN_ARRAY = range(3)
_SPACE = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# A run of string bytes that need no attention (anything but the quote, backslash, controls).
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]+')
_SPACES = re.compile(rb"[ \t\r\n]+")
_GO_NAMED_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 0x5C: "\\"}


def _go_quote_char(c: int) -> str:
    """Go's ``quoteChar``: a byte as Go's scanner quotes it in an error message.

    Go converts the byte to the rune of the same value and quotes it with ``strconv.Quote``
    (between single quotes), so 0xff is ``'ÿ'`` and a newline ``'\n'``.
    """
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    if c in _GO_NAMED_ESCAPES:
        return f"'\\{_GO_NAMED_ESCAPES[c]}'"
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    if 0x80 <= c <= 0xA0 or c == 0xAD:  # not strconv.IsPrint in Latin-1
        return f"'\\u{c:04x}'"
    return f"'{chr(c)}'"


class _SyntaxError(Exception):
    pass


class _Scanner:
    """One state per method, as in Go; ``step`` is the state the next byte goes to."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.step: Callable[[int], None] = self.begin_value
        self.in_string = False
        self.end_top = False

    @staticmethod
    def fail(c: int, context: str) -> None:
        raise _SyntaxError(f"invalid character {_go_quote_char(c)} {context}")

    def push(self, c: int, kind: int) -> None:
        self.stack.append(kind)
        if len(self.stack) > _MAX_DEPTH:
            self.fail(c, "exceeded max depth")

    def pop(self) -> None:
        self.stack.pop()
        if self.stack:
            self.step = self.end_value
        else:
            self.step = self.end_of_top
            self.end_top = True

    def begin_value_or_empty(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x5D:  # ]
            self.end_value(c)
        else:
            self.begin_value(c)

    def begin_value(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x7B:  # {
            self.step = self.begin_key_or_empty
            self.push(c, _IN_OBJECT_KEY)
        elif c == 0x5B:  # [
            self.step = self.begin_value_or_empty
            self.push(c, _IN_ARRAY)
        elif c == 0x22:  # "
            self.step = self.string
            self.in_string = True
        elif c == 0x2D:  # -
            self.step = self.minus
        elif c == 0x30:  # 0
            self.step = self.zero
        elif 0x31 <= c <= 0x39:
            self.step = self.integer
        elif c in _LITERALS:
            word = _LITERALS[c]
            self.step = lambda b: self.literal(b, word, 1)
        else:
            self.fail(c, "looking for beginning of value")

    def begin_key_or_empty(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x7D:  # }
            self.stack[-1] = _IN_OBJECT_VALUE
            self.end_value(c)
        else:
            self.begin_key(c)

    def begin_key(self, c: int) -> None:
        if c in _SPACE:
            return
        if c != 0x22:
            self.fail(c, "looking for beginning of object key string")
        self.step = self.string
        self.in_string = True

    def end_value(self, c: int) -> None:
        if not self.stack:
            self.step = self.end_of_top
            self.end_top = True
            self.end_of_top(c)
            return
        if c in _SPACE:
            self.step = self.end_value
            return
        kind = self.stack[-1]
        if kind == _IN_OBJECT_KEY:
            if c != 0x3A:  # :
                self.fail(c, "after object key")
            self.stack[-1] = _IN_OBJECT_VALUE
            self.step = self.begin_value
        elif kind == _IN_OBJECT_VALUE:
            if c == 0x2C:  # ,
                self.stack[-1] = _IN_OBJECT_KEY
                self.step = self.begin_key
            elif c == 0x7D:  # }
                self.pop()
            else:
                self.fail(c, "after object key:value pair")
        elif c == 0x2C:
            self.step = self.begin_value
        elif c == 0x5D:  # ]
            self.pop()
        else:
            self.fail(c, "after array element")

    def end_of_top(self, c: int) -> None:
        if c not in _SPACE:
            self.fail(c, "after top-level value")

    def string(self, c: int) -> None:
        if c == 0x22:
            self.step = self.end_value
            self.in_string = False
        elif c == 0x5C:  # backslash
            self.step = self.escape
            self.in_string = False
        elif c < 0x20:
            self.fail(c, "in string literal")

    def escape(self, c: int) -> None:
        if c in b'bfnrt\\/"':
            self.step = self.string
            self.in_string = True
        elif c == 0x75:  # u
            self.step = lambda b: self.hex_escape(b, 4)
        else:
            self.fail(c, "in string escape code")

    def hex_escape(self, c: int, left: int) -> None:
        if c not in _HEX:
            self.fail(c, "in \\u hexadecimal character escape")
        if left > 1:
            self.step = lambda b: self.hex_escape(b, left - 1)
        else:
            self.step = self.string
            self.in_string = True

    def minus(self, c: int) -> None:
        if c == 0x30:
            self.step = self.zero
        elif 0x31 <= c <= 0x39:
            self.step = self.integer
        else:
            self.fail(c, "in numeric literal")

    def integer(self, c: int) -> None:
        if c not in _DIGITS:
            self.zero(c)

    def zero(self, c: int) -> None:
        if c == 0x2E:  # .
            self.step = self.dot
        elif c in b"eE":
            self.step = self.exponent
        else:
            self.end_value(c)

    def dot(self, c: int) -> None:
        if c not in _DIGITS:
            self.fail(c, "after decimal point in numeric literal")
        self.step = self.fraction

    def fraction(self, c: int) -> None:
        if c in b"eE":
            self.step = self.exponent
        elif c not in _DIGITS:
            self.end_value(c)

    def exponent(self, c: int) -> None:
        if c in b"+-":
            self.step = self.exponent_sign
        else:
            self.exponent_sign(c)

    def exponent_sign(self, c: int) -> None:
        if c not in _DIGITS:
            self.fail(c, "in exponent of numeric literal")
        self.step = self.exponent_digits

    def exponent_digits(self, c: int) -> None:
        if c not in _DIGITS:
            self.end_value(c)

    def literal(self, c: int, word: bytes, at: int) -> None:
        expected = word[at]
        if c != expected:
            self.fail(c, f"in literal {word.decode()} (expecting {_go_quote_char(expected)})")
        if at + 1 < len(word):
            self.step = lambda b: self.literal(b, word, at + 1)
        else:
            self.step = self.end_value


_LITERALS = {c: w for w in (b"true", b"false", b"null") for c in w[:1]}


def go_json_syntax_error(data: bytes) -> str | None:
    """The syntax error Go's ``json.Unmarshal`` reports for ``data``, or ``None`` if Go accepts it.

    Go reads bytes, not text: invalid UTF-8 inside a string is accepted (and decoded as U+FFFD);
    NaN, Infinity, leading zeros, a byte order mark, raw control characters in strings and
    escapes other than ``\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX`` are not.
    """
    found = go_json_syntax_error_at(data)
    return None if found is None else found[0]


def go_json_syntax_error_at(data: bytes) -> tuple[str, int] | None:
    """Like :func:`go_json_syntax_error`, with Go's ``SyntaxError.Offset``: the number of bytes
    read when the error was found (the offending byte is ``data[offset - 1]``; at the end of
    the input, ``offset == len(data)``)."""
    scanner = _Scanner()
    position, size = 0, len(data)
    try:
        while position < size:
            if scanner.in_string:
                plain = _PLAIN_STRING.match(data, position)
                if plain is not None:
                    position = plain.end()
                    if position == size:
                        break
            byte = data[position]
            scanner.step(byte)
            position += 1
            if byte in _SPACE and not scanner.in_string:
                # A space that did not end the input in error leaves the scanner in a state
                # that ignores spaces (the number it ended, if any, is complete): skip the run.
                spaces = _SPACES.match(data, position)
                if spaces is not None:
                    position = spaces.end()
        if scanner.end_top:
            return None
        # At the end Go steps one space, which completes a pending number or reports a
        # truncated literal ("invalid character ' ' in literal true (expecting 'e')").
        position = size
        scanner.step(0x20)
    except _SyntaxError as exc:
        return str(exc), position + 1 if position < size else size
    return None if scanner.end_top else ("unexpected end of JSON input", size)


# The skel decodes the same stdin up to three times (name, cniVersion, the config itself).
_syntax_error_cached = functools.lru_cache(maxsize=4)(go_json_syntax_error_at)


class GoJSONError(ValueError):
    """Input Go's encoding/json refuses; ``str()`` is Go's message.

    :ivar offset: for a syntax error, Go's ``SyntaxError.Offset`` (see
        :func:`go_json_syntax_error_at`); ``None`` otherwise.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


def _replace_like_go(error: UnicodeError) -> tuple[str, int]:
    # Go's decoder turns each byte of an invalid UTF-8 sequence into its own U+FFFD;
    # Python's "replace" would use one for a whole truncated sequence.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "\ufffd", error.start + 1


codecs.register_error("cnisdk-go-replace", _replace_like_go)

_PY_INT_DIGITS = 4000  # below Python's default int/str conversion limit (4300)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# One token of a document already known to be valid: punctuation, a string, or a scalar.
_TOKEN = re.compile(r'[ \t\r\n]*(?:([\[\]{}:,])|("[^"\\]*(?:\\.[^"\\]*)*")|([^ \t\r\n\[\]{}:,"]+))')


def _parse_int(text: str) -> int:
    if len(text) <= _PY_INT_DIGITS:
        return int(text)
    import decimal  # rarely needed; not worth its import time on every start

    return int(decimal.Decimal(text))  # no digit limit on this conversion


def _python_loads(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int)


def _pairs_last_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key keeps its last value at its last position: Go decodes keys in document
    # order, so a later key that folds onto the same struct field (``fold_keys``) must win.
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.pop(key, None)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_go(data: bytes) -> Any:
    """Decode ``data`` as Go's ``json.Unmarshal`` into ``interface{}`` would (numbers aside).

    :raises GoJSONError: with Go's message when Go rejects the input.

    Invalid UTF-8 and lone ``\\uD800``-style surrogates become U+FFFD. Unlike ``json.loads``,
    NaN/Infinity are refused, nesting up to Go's limit (10000) and integers of any length
    are accepted, and no UTF-16/32 guessing or BOM skipping happens.
    """
    error = _syntax_error_cached(data)
    if error is not None:
        raise GoJSONError(*error)
    text = data.decode("utf-8", errors="cnisdk-go-replace")
    try:
        doc = json.loads(
            text,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_pairs_last_wins,
        )
    except RecursionError:  # deeper than Python's C decoder goes, but within Go's limit
        doc = _loads_deep(text)
    if _SURROGATE_ESCAPE.search(text):
        doc = _replace_lone_surrogates(doc)
    return doc


def _loads_deep(text: str) -> Any:
    """Decode a document already known to be valid without recursion."""
    containers: list[Any] = []
    keys: list[str | None] = []
    root: Any = None

    def place(value: Any) -> None:
        nonlocal root
        if not containers:
            root = value
        elif isinstance(containers[-1], list):
            containers[-1].append(value)
        else:
            containers[-1].pop(keys[-1], None)  # a repeated key moves to its last position
            containers[-1][keys[-1]] = value
            keys[-1] = None

    for match in _TOKEN.finditer(text):
        punct, string, scalar = match.groups()
        if punct is not None:
            if punct in "[{":
                container: Any = [] if punct == "[" else {}
                place(container)
                containers.append(container)
                keys.append(None)
            elif punct in "]}":
                containers.pop()
                keys.pop()
            continue
        value = _python_loads(string if string is not None else scalar)
        if (
            string is not None
            and containers
            and isinstance(containers[-1], dict)
            and keys[-1] is None
        ):
            keys[-1] = value
            continue
        place(value)
    return root


def _replace_lone_surrogates(doc: Any) -> Any:
    """Replace the lone surrogates ``json.loads`` leaves in strings by U+FFFD, as Go does."""
    if isinstance(doc, str):
        return _SURROGATE.sub("\ufffd", doc)
    pending = [doc]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = _SURROGATE.sub("\ufffd", value)
                elif isinstance(value, list | dict):
                    pending.append(value)
        elif isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, value in items:
                if isinstance(value, str):
                    value = _SURROGATE.sub("\ufffd", value)
                elif isinstance(value, list | dict):
                    pending.append(value)
                node[_SURROGATE.sub("\ufffd", key)] = value
    return doc
