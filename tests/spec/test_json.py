"""``go_json_syntax_error`` and ``loads_go``: what Go 1.19's encoding/json accepts, in its words.

Every message in ``GO_MESSAGES`` was produced by Go (Debian's ``tuning``, Go 1.19.8: the text
after "error unmarshall network config: "); ``tests/test_go_parity.py`` re-checks a sample of
them against the binary.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnisdk.spec._json import (
    GoJSONError,
    _loads_deep,
    go_json_syntax_error,
    go_json_syntax_error_at,
    go_quote,
    go_sorted,
    loads_go,
)

GO_MESSAGES: list[tuple[bytes, str]] = [
    (b"", "unexpected end of JSON input"),
    (b" \n\t\r", "unexpected end of JSON input"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b"{", "unexpected end of JSON input"),
    (b"[", "unexpected end of JSON input"),
    (b'"abc', "unexpected end of JSON input"),
    (b'{"a"', "unexpected end of JSON input"),
    (b'{"a":', "unexpected end of JSON input"),
    (b'{"a":1', "unexpected end of JSON input"),
    (b'{"a":1,', "unexpected end of JSON input"),
    (b"[1,", "unexpected end of JSON input"),
    (b'{"a"}', "invalid character '}' after object key"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b'{"a":1]', "invalid character ']' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b"[1}", "invalid character '}' after array element"),
    (b"{}x", "invalid character 'x' after top-level value"),
    (b"1 2", "invalid character '2' after top-level value"),
    (b'"a"x', "invalid character 'x' after top-level value"),
    (b'"a\nb"', "invalid character '\\n' in string literal"),
    (b'"a\x00"', "invalid character '\\x00' in string literal"),
    (b'"a\x1f"', "invalid character '\\x1f' in string literal"),
    (b'"\\q"', "invalid character 'q' in string escape code"),
    (b'"\\\'"', "invalid character '\\'' in string escape code"),
    (b'"\\u12x4"', "invalid character 'x' in \\u hexadecimal character escape"),
    (b'"\\u"', "invalid character '\"' in \\u hexadecimal character escape"),
    (b"-", "invalid character ' ' in numeric literal"),
    (b"-x", "invalid character 'x' in numeric literal"),
    (b"--1", "invalid character '-' in numeric literal"),
    (b"1.", "invalid character ' ' after decimal point in numeric literal"),
    (b"1.x", "invalid character 'x' after decimal point in numeric literal"),
    (b".5", "invalid character '.' looking for beginning of value"),
    (b"1e", "invalid character ' ' in exponent of numeric literal"),
    (b"1e+", "invalid character ' ' in exponent of numeric literal"),
    (b"1ex", "invalid character 'x' in exponent of numeric literal"),
    (b"1E-x", "invalid character 'x' in exponent of numeric literal"),
    (b"01", "invalid character '1' after top-level value"),
    (b"-01", "invalid character '1' after top-level value"),
    (b"+1", "invalid character '+' looking for beginning of value"),
    (b"t", "invalid character ' ' in literal true (expecting 'r')"),
    (b"tr", "invalid character ' ' in literal true (expecting 'u')"),
    (b"trx", "invalid character 'x' in literal true (expecting 'u')"),
    (b"tru", "invalid character ' ' in literal true (expecting 'e')"),
    (b"f", "invalid character ' ' in literal false (expecting 'a')"),
    (b"fal", "invalid character ' ' in literal false (expecting 's')"),
    (b"fxlse", "invalid character 'x' in literal false (expecting 'a')"),
    (b"n", "invalid character ' ' in literal null (expecting 'u')"),
    (b"nul", "invalid character ' ' in literal null (expecting 'l')"),
    (b"nulx", "invalid character 'x' in literal null (expecting 'l')"),
    (b"True", "invalid character 'T' looking for beginning of value"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
    (b"Infinity", "invalid character 'I' looking for beginning of value"),
    (b"-Infinity", "invalid character 'I' in numeric literal"),
    (b"{1:2}", "invalid character '1' looking for beginning of object key string"),
    (b"{,}", "invalid character ',' looking for beginning of object key string"),
    (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    (b"[,]", "invalid character ',' looking for beginning of value"),
    (b"[1,]", "invalid character ']' looking for beginning of value"),
    (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
    (b"\xef\xbb\xbf{}", "invalid character 'ï' looking for beginning of value"),
    (b"\xff", "invalid character 'ÿ' looking for beginning of value"),
    (b"\x00", "invalid character '\\x00' looking for beginning of value"),
    (b"\x7f", "invalid character '\\x7f' looking for beginning of value"),
    (b"\x85", "invalid character '\\u0085' looking for beginning of value"),
    (b"\xa0", "invalid character '\\u00a0' looking for beginning of value"),
    (b"\xad", "invalid character '\\u00ad' looking for beginning of value"),
    (b"\xe9", "invalid character 'é' looking for beginning of value"),
    (b"\\", "invalid character '\\\\' looking for beginning of value"),
    (b'{"a":1}}', "invalid character '}' after top-level value"),
    (b"[]]", "invalid character ']' after top-level value"),
    (b"1\x0b", "invalid character '\\v' after top-level value"),
    (b"[" * 10001, "invalid character '[' exceeded max depth"),
    (b'{"a":' * 10001, "invalid character '{' exceeded max depth"),
]


@pytest.mark.parametrize(
    ("data", "message"), GO_MESSAGES, ids=[repr(d[:20]) for d, _ in GO_MESSAGES]
)
def test_go_syntax_error_messages(data: bytes, message: str) -> None:
    assert go_json_syntax_error(data) == message
    with pytest.raises(GoJSONError) as caught:
        loads_go(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"), GO_MESSAGES, ids=[repr(d[:20]) for d, _ in GO_MESSAGES]
)
def test_go_syntax_error_offset(data: bytes, message: str) -> None:
    # Go's SyntaxError.Offset counts the bytes read: the offending byte is the last of them;
    # at the end of the input, it is the input's length.
    found = go_json_syntax_error_at(data)
    assert found is not None
    text, offset = found
    assert text == message
    with pytest.raises(GoJSONError) as caught:
        loads_go(data)
    assert caught.value.offset == offset
    if message == "unexpected end of JSON input":
        assert offset == len(data)
    else:
        assert 0 < offset <= len(data)


def test_go_syntax_error_offset_examples() -> None:
    assert go_json_syntax_error_at(b'{"a":1,}') == (
        "invalid character '}' looking for beginning of object key string",
        8,
    )
    assert go_json_syntax_error_at(b'{"a": 1}\n\n  x') == (
        "invalid character 'x' after top-level value",
        13,
    )
    assert go_json_syntax_error_at(b"tru") == (
        "invalid character ' ' in literal true (expecting 'e')",
        3,
    )


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b" [ ] ",
        b"null",
        b"0",
        b"-0.0e-0",
        b"1E+2",
        rb'"\\\"\/\b\f\n\r\t\u00e9\uD83D\uDE00"',
        b'"\x7f\xff\xc0\x80\xed\xa0\x80"',  # any byte >= 0x20 inside a string, even invalid UTF-8
        b'{"a":[1,{"b":null}],"a":true}\r\n\t',
        b"[" * 10000 + b"]" * 10000,
        b"9" * 5000,
    ],
)
def test_go_accepts(data: bytes) -> None:
    assert go_json_syntax_error(data) is None


@pytest.mark.parametrize(
    ("byte", "quoted"),
    [
        (0x27, "'\\''"),
        (0x22, "'\"'"),
        (0x5C, "'\\\\'"),
        (0x0A, "'\\n'"),
        (0x07, "'\\a'"),
        (0x20, "' '"),
        (0x01, "'\\x01'"),
        (0x7F, "'\\x7f'"),
        (0x80, "'\\u0080'"),
        (0x9F, "'\\u009f'"),
        (0xA1, "'¡'"),
        (0xAC, "'¬'"),
        (0xAD, "'\\u00ad'"),
        (0xFF, "'ÿ'"),
    ],
)
def test_quote_char(byte: int, quoted: str) -> None:
    # strconv.Quote of the byte taken as a rune, between single quotes.
    message = go_json_syntax_error(b"t" + bytes([byte]))
    assert message == f"invalid character {quoted} in literal true (expecting 'r')"


def test_loads_go_replaces_each_invalid_utf8_byte() -> None:
    # Go decodes every byte of a broken sequence as its own U+FFFD (Python's "replace" would
    # use one for a whole truncated sequence).
    assert loads_go(b'"n\xf0\x9f\x98"') == "n\ufffd\ufffd\ufffd"
    assert loads_go(b'{"\xff":"\xe2\x82x"}') == {"\ufffd": "\ufffd\ufffdx"}
    assert loads_go(b'"\xc3\xa9\xed\xa0\x80"') == "é\ufffd\ufffd\ufffd"


def test_loads_go_replaces_lone_surrogates() -> None:
    doc = loads_go(b'{"\\ud800":["\\udfff","\\ud83d\\ude00",{"k":"\\ud800x"}]}')
    assert doc == {"\ufffd": ["\ufffd", "\U0001f600", {"k": "\ufffdx"}]}


@pytest.mark.parametrize(
    "data", [b"NaN", b"[Infinity]", b'{"a":-Infinity}', b"\xef\xbb\xbf1", b"01"]
)
def test_loads_go_refuses_what_python_accepts_or_skips(data: bytes) -> None:
    with pytest.raises(GoJSONError):
        loads_go(data)


def test_loads_go_accepts_what_python_cannot_read() -> None:
    # 10000 levels: the outer object, 9998 arrays, the inner object (Go's maximum).
    deep = loads_go(b'{"x":' + b"[" * 9998 + b'{"k":"\\ud800"}' + b"]" * 9998 + b"}")
    node: Any = deep["x"]
    for _ in range(9998 - 1):
        assert isinstance(node, list) and len(node) == 1
        node = node[0]
    assert node == [{"k": "\ufffd"}]
    (long,) = loads_go(b"[" + b"7" * 5000 + b"]")  # beyond Python's int/str digit limit
    assert long % 10**9 == 777777777 and len(format(long, "x")) == 4153
    assert math.isinf(loads_go(b"1e400"))


def test_loads_go_keeps_the_last_duplicate_key() -> None:
    assert loads_go(b'{"a":1,"b":2,"a":3}') == {"a": 3, "b": 2}


_ALPHABET = st.sampled_from(list(b'{}[]:,"\\ -+.eE0129tfrulnasx\n\t\x01\xff\xc3\xa9'))


def _python_accepts(data: bytes) -> bool:
    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        json.loads(data.decode("utf-8", errors="replace"), parse_constant=no_constants)
    except ValueError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(st.lists(_ALPHABET, max_size=16).map(bytes))
def test_agrees_with_strict_python_on_shallow_input(data: bytes) -> None:
    # Short, shallow inputs are where Python (minus NaN/Infinity) and Go agree on validity.
    assert (go_json_syntax_error(data) is None) == _python_accepts(data)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.sampled_from([None, 0, 2]), st.booleans())
def test_reads_what_python_writes(value: Any, indent: int | None, ascii_only: bool) -> None:
    data = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    assert go_json_syntax_error(data) is None
    assert loads_go(data) == json.loads(data)
    # the non-recursive decoder used past Python's nesting limit reads the same
    assert _loads_deep(data.decode()) == json.loads(data)


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("name", "error unmarshall network config"),
        ("cniVersion", "decoding version from network config"),
    ],
)
def test_skel_decodes_name_and_version_with_go_messages(key: str, prefix: str) -> None:
    from cnisdk._skel import _decode_object
    from cnisdk.spec._errors import CNIError

    with pytest.raises(CNIError) as caught:
        _decode_object(b'{"name":"n","mtu":1.}', prefix, key)
    assert caught.value.code == 6
    assert (
        caught.value.msg
        == f"{prefix}: invalid character '}}' after decimal point in numeric literal"
    )
    assert (
        _decode_object(b'{"name":"n\xff","x":' + b"[" * 3000 + b"]" * 3000 + b"}", prefix, key)[
            "name"
        ]
        == "n\ufffd"
    )


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert go_quote(b"\xff") == '"\\xff"'


def test_go_sorted_orders_every_level_like_json_marshal() -> None:
    doc = {"b": 1, "a": {"z": [{"y": 1, "x": 2}], "B": 0}}
    assert json.dumps(go_sorted(doc)) == '{"a": {"B": 0, "z": [{"x": 2, "y": 1}]}, "b": 1}'


def test_repeated_key_keeps_last_value_at_its_last_position() -> None:
    # Go decodes keys in document order: folding "IPS" and "ips" afterwards must see the
    # last one last.
    assert list(loads_go(b'{"ips":1,"IPS":2,"ips":3}').items()) == [("IPS", 2), ("ips", 3)]
    deep = b'{"a":' + b"[" * 3000 + b"]" * 3000 + b',"k":1,"a":2}'
    assert list(loads_go(deep).items()) == [("k", 1), ("a", 2)]


def test_go_sorted_handles_documents_as_deep_as_go_accepts() -> None:
    deep = b'{"b":' + b"[" * 9000 + b'{"z":1,"a":2}' + b"]" * 9000 + b',"a":0}'
    doc = go_sorted(loads_go(deep))
    assert list(doc) == ["a", "b"]
    inner = doc["b"]
    for _ in range(9000):
        (inner,) = inner
    assert list(inner) == ["a", "z"]
