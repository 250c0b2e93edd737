"""Editing a config's bytes: our entries in and out, every other byte kept."""

from __future__ import annotations

import json

import pytest

from cnisdk._install.cniconfig import (
    EditError,
    add_entries,
    chain_entries,
    entries_of,
    insert_element,
    remove_elements,
    wrap_conf,
)
from cnisdk.spec._json import loads_go

LAYOUTS = [
    b'{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}',
    b'{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "a"}, {"type": "b"}]}\n',
    b'{\n\t"name": "n",\n\t"plugins": [\n\t\t{"type": "a"}\n\t]\n}\n',
    b'{"name":"n","plugins":[],"plugins":[{"type":"a"}]}',
    b'  {"name": "n", "plugins": [ {"type": "a"} ,{"type":"b"} ] }  ',
    b'{"name": "n", "plugins": [{"type": "a", "x": 1.0, "y": 1e3, "z": "caf\xe9"}]}',
    b'{\r\n  "name": "n",\r\n  "plugins": [\r\n    {"type": "a"}\r\n  ]\r\n}\r\n',
]


def added(data: bytes, entry: dict[str, object]) -> bytes:
    return add_entries(data, [entry], entries_of(loads_go(data), [entry["type"]]))  # type: ignore[list-item]


@pytest.mark.parametrize("data", LAYOUTS)
def test_splice_round_trips_any_layout(data: bytes) -> None:
    installed = added(data, {"type": "x", "k": [1, 2]})
    assert loads_go(installed)["plugins"][-1] == {"type": "x", "k": [1, 2]}
    last = len(loads_go(installed)["plugins"]) - 1
    assert remove_elements(installed, [last]) == data


def test_every_byte_outside_our_entry_is_kept() -> None:
    # Number spellings, a latin-1 byte (Go reads it as U+FFFD), key order, odd spacing.
    data = b'{ "plugins" : [ {"type":"a","mtu":1.50e3,"d":"\xe9t\xe9"} ], "name":"n" }'
    installed = added(data, {"type": "x"})
    assert installed.startswith(b'{ "plugins" : [ {"type":"a","mtu":1.50e3,"d":"\xe9t\xe9"}')
    assert installed.endswith(b' ], "name":"n" }')
    assert remove_elements(installed, [1]) == data


def test_multiline_entry_takes_the_files_indentation() -> None:
    text = json.dumps(
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x"}, {"type": "a"}]},
        indent=4,
    ).encode()
    new = added(text, {"type": "x"})
    assert [p["type"] for p in json.loads(new)["plugins"]] == ["a", "x"]  # ours moved last
    assert b'\n        {\n            "type": "x"\n        }\n    ]' in new


def test_a_file_that_already_holds_the_entry_is_returned_as_is() -> None:
    data = b'{"name":"n","plugins":[{"type":"a"},{"type":"x","k":true}]}'
    assert added(data, {"type": "x", "k": True}) is data
    # Equal for Python (1 == True) but not for JSON: rewritten.
    assert added(data, {"type": "x", "k": 1}) != data


def test_insert_puts_an_element_back_where_it_was() -> None:
    data = b'{"name": "n", "plugins": [{"type": "a"}, {"type": "c"}]}'
    assert insert_element(data, 1, b'{"type":  "b"}') == (
        b'{"name": "n", "plugins": [{"type": "a"}, {"type":  "b"}, {"type": "c"}]}'
    )
    assert insert_element(data, 0, b'{"type":"z"}') == (
        b'{"name": "n", "plugins": [{"type":"z"}, {"type": "a"}, {"type": "c"}]}'
    )
    # The list got shorter since: at the end.
    assert loads_go(insert_element(data, 9, b'{"type":"z"}'))["plugins"][-1] == {"type": "z"}


def test_wrap_conf_keeps_name_and_version() -> None:
    conf = b'{"cniVersion":"1.0.0","name":"mynet","type":"bridge","CNIVersion":"0.4.0"}'
    doc = json.loads(wrap_conf(conf, [{"type": "x"}]))
    assert doc == {
        "cniVersion": "0.4.0",  # Go matches the field case-insensitively; the last one wins
        "name": "mynet",
        "plugins": [{"type": "bridge", "name": "mynet"}, {"type": "x"}],
    }
    assert json.loads(wrap_conf(b'{"name":"m","type":"t"}', []))["cniVersion"] == "0.3.1"


@pytest.mark.parametrize("data", [b"[]", b'{"name":"n"}', b'{"plugins": {}}', b"{"])
def test_what_is_not_a_conflist_is_an_edit_error(data: bytes) -> None:
    with pytest.raises(EditError):
        add_entries(data, [{"type": "x"}], [])


def test_chain_entries_adds_declared_capabilities_unless_given() -> None:
    caps = {"x": ("io.kubernetes.cri.pod-annotations",)}
    [bare] = chain_entries(["x"], [], caps)
    assert bare == {"type": "x", "capabilities": {"io.kubernetes.cri.pod-annotations": True}}
    [own] = chain_entries(["x"], [{"type": "x", "capabilities": {"portMappings": True}}], caps)
    assert own["capabilities"] == {"portMappings": True}
    # Go matches keys case-insensitively: "Capabilities" is the entry's own too.
    [folded] = chain_entries(["x"], [{"type": "x", "Capabilities": {}}], caps)
    assert "capabilities" not in folded and folded["Capabilities"] == {}
    [versioned] = chain_entries(["x"], [{"type": "x", "cniVersion": "1.0.0"}], {})
    assert versioned == {"type": "x"}  # the list's version applies to every entry


@pytest.mark.parametrize(
    "given, message",
    [
        ([{"type": "y"}], "expected one of x"),
        ([{"name": "no type"}], "expected one of x"),
        ([{"type": "x"}, {"type": "x"}], "two entries of type 'x'"),
    ],
)
def test_chain_entries_refuses_entries_that_do_not_fit(
    given: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        chain_entries(["x"], given, {})
