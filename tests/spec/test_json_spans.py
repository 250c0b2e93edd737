"""``value_spans``: where each value of a document sits in its bytes, for editing files in place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnisdk.spec._json import GoJSONError, loads_go
from cnisdk.spec._json_spans import JSONSpan, value_spans

DOC = b' {"a": [1, {"b": 2}] ,\n "k\\u00e9\xe9": "v\xe9\\"" , "n": -1.5e3, "e": {}, "l": []}\n'


def test_members_and_elements_with_their_bytes() -> None:
    root = value_spans(DOC, depth=2)
    assert DOC[root.start : root.end].startswith(b"{") and DOC[root.end :] == b"\n"
    keys = [m.key for m in root.members]
    # Keys decode as Go decodes them: the escape to é, the latin-1 byte to U+FFFD.
    assert keys == ["a", "k\u00e9\ufffd", "n", "e", "l"]
    values = [DOC[m.value.start : m.value.end] for m in root.members]
    assert values == [b'[1, {"b": 2}]', b'"v\xe9\\""', b"-1.5e3", b"{}", b"[]"]
    starts = [DOC[m.key_start : m.key_start + 2] for m in root.members]
    assert starts == [b'"a', b'"k', b'"n', b'"e', b'"l']
    array = root.members[0].value
    assert [DOC[e.start : e.end] for e in array.elements] == [b"1", b'{"b": 2}']
    # Depth 2 lists the array's elements but not the members of the object inside it.
    assert array.elements[1].members == ()


def test_depth_zero_lists_nothing() -> None:
    assert value_spans(DOC, depth=0) == JSONSpan(1, len(DOC) - 1)


@pytest.mark.parametrize("data", [b"", b"{", b'{"a" 1}', b"[1,]", b"\xef\xbb\xbf{}"])
def test_what_go_rejects_raises_with_gos_message(data: bytes) -> None:
    with pytest.raises(GoJSONError) as info:
        value_spans(data)
    with pytest.raises(GoJSONError) as go:
        loads_go(data)
    assert str(info.value) == str(go.value)


def test_nesting_as_deep_as_go_allows() -> None:
    data = b'{"x":' + b"[" * 9990 + b"]" * 9990 + b"}"
    root = value_spans(data, depth=3)
    inner = root.members[0].value
    assert (inner.start, inner.end) == (5, len(data) - 1)
    assert len(inner.elements) == 1


def _check(data: bytes, span: JSONSpan, value: Any) -> None:
    assert json.dumps(loads_go(data[span.start : span.end]), sort_keys=True) == json.dumps(
        value, sort_keys=True
    )
    if isinstance(value, dict) and span.members:
        assert [m.key for m in span.members] == list(value)
        for member in span.members:
            _check(data, member.value, value[member.key])
    if isinstance(value, list) and span.elements:
        for element, item in zip(span.elements, value, strict=True):
            _check(data, element, item)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_JSON, st.sampled_from([None, 0, 2]), st.booleans())
def test_every_listed_span_holds_its_value(doc: Any, indent: int | None, ascii_only: bool) -> None:
    data = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected = loads_go(data)
    except GoJSONError:
        return
    _check(data, value_spans(data, depth=10), expected)
