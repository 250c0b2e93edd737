"""Results: parsing, conversion between every pair of versions, and Go-exact output."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from cnisdk.spec import (
    DNS,
    ConversionError,
    Interface,
    IPConfig,
    IPConfig040,
    Result,
    Result020,
    Result040,
    Route,
    convert_result,
    empty_result,
    parse_cidr,
    parse_ip,
    parse_prev_result,
    parse_result,
    result_to_dict,
    result_to_json,
    to_current,
)

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
V020 = ("0.1.0", "0.2.0")
V040 = ("0.3.0", "0.3.1", "0.4.0")
V100 = ("1.0.0", "1.1.0")


@contextlib.contextmanager
def raises_exactly(kind: type[Exception], message: str) -> Iterator[None]:
    with pytest.raises(kind) as info:
        yield
    assert str(info.value) == message


def supports(versions: str, got: str) -> str:
    return f"result type supports {versions} but unmarshalled CNIVersion is {got}"


def go_indent(doc: Any) -> bytes:
    return json.dumps(doc, indent=4).encode()


# --------------------------------------------------------------------------- rich inputs
# The same network (2x IPv4, 1x IPv6, two interfaces, v4/v6 default routes and a v4 route
# carrying 1.1 route fields) written in each family's own format.

DNS_DOC = {
    "nameservers": ["10.0.0.53"],
    "domain": "example.com",
    "search": ["svc.example.com"],
    "options": ["ndots:5"],
}


def rich_100(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "interfaces": [
            {
                "name": "eth0",
                "mac": "0a:58:0a:00:00:02",
                "mtu": 1500,
                "sandbox": "/var/run/netns/x",
                "socketPath": "/run/vhost.sock",
                "pciID": "0000:00:1f.6",
            },
            {"name": "net1"},
        ],
        "ips": [
            {"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"interface": 1, "address": "10.0.1.2/24"},
            {"interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "::/0", "gw": "fd00::1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
        ],
        "dns": DNS_DOC,
    }


def rich_040(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/var/run/netns/x"},
            {"name": "net1"},
        ],
        "ips": [
            {"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"version": "4", "interface": 1, "address": "10.0.1.2/24"},
            {"version": "6", "interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "::/0", "gw": "fd00::1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
        ],
        "dns": DNS_DOC,
    }


def rich_020(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "ip4": {
            "ip": "10.0.0.2/24",
            "gateway": "10.0.0.1",
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
                {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
            ],
        },
        "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": DNS_DOC,
    }


def rich_input(version: str) -> dict[str, Any]:
    if version in V100:
        return rich_100(version)
    if version in V040:
        return rich_040(version)
    return rich_020(version)


# --------------------------------------------------------------------------- expected outputs
# Written out by hand from Go's rules, per (source family, target family).

DNS_SORTED = {
    "domain": "example.com",
    "nameservers": ["10.0.0.53"],
    "options": ["ndots:5"],
    "search": ["svc.example.com"],
}


def out_100_from_100(to: str) -> dict[str, Any]:
    return {
        "cniVersion": to,
        "dns": DNS_SORTED,
        "interfaces": [
            {
                "mac": "0a:58:0a:00:00:02",
                "mtu": 1500,
                "name": "eth0",
                "pciID": "0000:00:1f.6",
                "sandbox": "/var/run/netns/x",
                "socketPath": "/run/vhost.sock",
            },
            {"name": "net1"},
        ],
        "ips": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
            {"address": "10.0.1.2/24", "interface": 1},
            {"address": "fd00::2/64", "gateway": "fd00::1", "interface": 0},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "::/0", "gw": "fd00::1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
        ],
    }


def out_100_from_040(to: str) -> dict[str, Any]:
    doc = out_100_from_100(to)
    doc["interfaces"][0] = {
        "mac": "0a:58:0a:00:00:02",
        "name": "eth0",
        "sandbox": "/var/run/netns/x",
    }
    return doc


def out_100_from_020(to: str) -> dict[str, Any]:
    return {
        "cniVersion": to,
        "dns": DNS_SORTED,
        "ips": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"address": "fd00::2/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
            {"dst": "::/0"},
        ],
    }


def out_040_from_1x_or_040(to: str) -> dict[str, Any]:
    return {
        "cniVersion": to,
        "interfaces": [
            {"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/var/run/netns/x"},
            {"name": "net1"},
        ],
        "ips": [
            {"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"version": "4", "interface": 1, "address": "10.0.1.2/24"},
            {"version": "6", "interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "::/0", "gw": "fd00::1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
        ],
        "dns": DNS_DOC,
    }


def out_040_from_020(to: str) -> dict[str, Any]:
    return {
        "cniVersion": to,
        "ips": [
            {"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"version": "6", "address": "fd00::2/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
            {"dst": "192.168.0.0/16", "mtu": 1400, "table": 0},
            {"dst": "::/0"},
        ],
        "dns": DNS_DOC,
    }


def out_020_down(to: str) -> dict[str, Any]:
    # Down-conversion keeps only dst and gw of each route; the second IPv4 is dropped.
    return {
        "cniVersion": to,
        "ip4": {
            "ip": "10.0.0.2/24",
            "gateway": "10.0.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "192.168.0.0/16"}],
        },
        "ip6": {
            "ip": "fd00::2/64",
            "gateway": "fd00::1",
            "routes": [{"dst": "::/0", "gw": "fd00::1"}],
        },
        "dns": DNS_DOC,
    }


def out_020_from_020(to: str) -> dict[str, Any]:
    return rich_020(to)


def family(version: str) -> str:
    return "100" if version in V100 else "040" if version in V040 else "020"


EXPECTED_RICH = {
    ("100", "100"): out_100_from_100,
    ("040", "100"): out_100_from_040,
    ("020", "100"): out_100_from_020,
    ("100", "040"): out_040_from_1x_or_040,
    ("040", "040"): out_040_from_1x_or_040,
    ("020", "040"): out_040_from_020,
    ("100", "020"): out_020_down,
    ("040", "020"): out_020_down,
    ("020", "020"): out_020_from_020,
}

PAIRS = [(src, dst) for src in VERSIONS for dst in VERSIONS]


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_convert_rich_every_pair(src: str, dst: str) -> None:
    result = parse_result(json.dumps(rich_input(src)), src)
    converted = convert_result(result, dst)
    expected = EXPECTED_RICH[family(src), family(dst)](dst)
    assert result_to_dict(converted) == expected
    assert result_to_json(converted) == go_indent(expected)
    assert converted.cni_version == dst
    if src == dst:
        assert converted is result


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_convert_empty_every_pair(src: str, dst: str) -> None:
    result = empty_result(src)
    assert result.cni_version == src
    if dst in V020 and src not in V020:
        with pytest.raises(ConversionError) as info:
            convert_result(result, dst)
        assert str(info.value) == "cannot convert: no valid IP addresses"
        return
    converted = convert_result(result, dst)
    expected: dict[str, Any] = {"cniVersion": dst}
    if dst not in V100:
        expected["dns"] = {}
    assert result_to_json(converted) == go_indent(expected)


def test_rich_inputs_round_trip_unchanged_in_their_own_version() -> None:
    # Output field order: Go struct order for 0.x, alphabetical for 1.x.
    for version in VERSIONS:
        result = parse_result(json.dumps(rich_input(version)).encode(), version)
        printed = result_to_json(result)
        expected = EXPECTED_RICH[family(version), family(version)](version)
        assert printed == go_indent(expected)
        assert list(json.loads(printed)) == list(expected)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("label", "target", "message"),
    [
        ("1.1.0", "0.5.0", "no converter for CNI result version 1.1.0 to 0.5.0"),
        ("1.1.0", "1.2.0", "no converter for CNI result version 1.1.0 to 1.2.0"),
        ("1.0.0", "1.0", "no converter for CNI result version 1.0.0 to 1.0"),
        ("2.0.0", "1.1.0", "no converter for CNI result version 2.0.0 to 1.1.0"),
    ],
)
def test_unknown_versions_are_refused(label: str, target: str, message: str) -> None:
    result = Result(cni_version=label, ips=[IPConfig(address="10.0.0.2/24")])
    with pytest.raises(ConversionError) as info:
        convert_result(result, target)
    assert str(info.value) == message


def test_empty_target_means_010() -> None:
    result = parse_result(json.dumps(rich_100("1.0.0")), "1.0.0")
    assert result_to_dict(convert_result(result, "")) == out_020_down("0.1.0")
    with raises_exactly(ConversionError, "cannot convert: no valid IP addresses"):
        convert_result(empty_result("1.0.0"), "")


def test_result_type_with_a_foreign_known_label_is_refused() -> None:
    # Go would panic on the type assertion; we refuse.
    with raises_exactly(
        ConversionError,
        "a Result cannot carry cniVersion 0.4.0; "
        "no converter for CNI result version 0.4.0 to 1.1.0",
    ):
        convert_result(Result(cni_version="0.4.0"), "1.1.0")


def test_empty_label_becomes_implemented_version_first() -> None:
    current = Result(ips=[IPConfig(address="10.0.0.2/24")])
    assert convert_result(current, "1.1.0") is current
    assert current.cni_version == "1.1.0"

    old = Result040(ips=[IPConfig040(version="4", address="10.0.0.2/24")])
    assert convert_result(old, "0.4.0") is old
    assert old.cni_version == "0.4.0"

    legacy = Result020()
    assert convert_result(legacy, "0.2.0") is legacy
    assert legacy.cni_version == "0.2.0"


def test_unlabelled_result_prints_without_cniversion() -> None:
    assert result_to_json(Result()) == b"{}"
    assert result_to_json(Result040()) == b'{\n    "dns": {}\n}'
    assert result_to_json(Result020()) == b'{\n    "dns": {}\n}'


# --------------------------------------------------------------------------- Go's edge cases


def test_edge_8_prev_result_output_follows_config_version() -> None:
    prev = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    parsed = parse_prev_result(prev, "0.4.0")
    assert isinstance(parsed, Result040)
    assert parsed.cni_version == "0.3.1"
    current = to_current(parsed)
    assert current.cni_version == "1.1.0"
    assert result_to_json(convert_result(current, "0.4.0")) == (
        b"{\n"
        b'    "cniVersion": "0.4.0",\n'
        b'    "ips": [\n'
        b"        {\n"
        b'            "version": "4",\n'
        b'            "address": "10.0.0.2/24"\n'
        b"        }\n"
        b"    ],\n"
        b'    "dns": {}\n'
        b"}"
    )


def test_edge_9_prev_result_inherits_config_version() -> None:
    parsed = parse_prev_result({"ips": [{"version": "4", "address": "10.0.0.2/24"}]}, "0.4.0")
    assert isinstance(parsed, Result040)
    assert parsed.cni_version == "0.4.0"
    assert parsed.ips[0].address == "10.0.0.2/24"

    with pytest.raises(ConversionError) as info:
        parse_prev_result({"cniVersion": "0.4.0"}, "1.0.0")
    assert str(info.value) == (
        "could not parse prevResult: result type supports [1.0.0 1.1.0] but unmarshalled "
        'CNIVersion is "0.4.0"'
    )


def test_edge_10_current_to_020_keeps_first_address_of_each_family() -> None:
    result = Result(
        cni_version="1.0.0",
        interfaces=[Interface(name="eth0", mac="aa:bb:cc:dd:ee:ff")],
        ips=[
            IPConfig(interface=0, address="10.0.0.2/24", gateway="10.0.0.1"),
            IPConfig(interface=0, address="10.0.1.2/24"),
            IPConfig(interface=0, address="fd00::2/64"),
        ],
        routes=[Route(dst="0.0.0.0/0"), Route(dst="::/0"), Route(dst="192.168.0.0/16")],
    )
    assert result_to_json(convert_result(result, "0.2.0")) == (
        b"{\n"
        b'    "cniVersion": "0.2.0",\n'
        b'    "ip4": {\n'
        b'        "ip": "10.0.0.2/24",\n'
        b'        "gateway": "10.0.0.1",\n'
        b'        "routes": [\n'
        b"            {\n"
        b'                "dst": "0.0.0.0/0"\n'
        b"            },\n"
        b"            {\n"
        b'                "dst": "192.168.0.0/16"\n'
        b"            }\n"
        b"        ]\n"
        b"    },\n"
        b'    "ip6": {\n'
        b'        "ip": "fd00::2/64",\n'
        b'        "routes": [\n'
        b"            {\n"
        b'                "dst": "::/0"\n'
        b"            }\n"
        b"        ]\n"
        b"    },\n"
        b'    "dns": {}\n'
        b"}"
    )


def test_routes_of_a_family_without_address_are_dropped() -> None:
    v6_only = Result(
        cni_version="1.1.0",
        ips=[IPConfig(address="fd00::2/64")],
        routes=[Route(dst="0.0.0.0/0", gw="10.0.0.1"), Route(dst="::/0", gw="fd00::1")],
    )
    assert result_to_dict(convert_result(v6_only, "0.1.0")) == {
        "cniVersion": "0.1.0",
        "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
        "dns": {},
    }


def test_down_conversion_to_020_uses_the_version_label_not_the_address() -> None:
    # A 0.4.0 entry without a version label is skipped; one mislabelled "6" goes to ip6.
    result = Result040(
        cni_version="0.4.0",
        ips=[
            IPConfig040(version="", address="10.0.0.9/24"),
            IPConfig040(version="6", address="10.0.0.2/24"),
        ],
    )
    assert result_to_dict(convert_result(result, "0.2.0")) == {
        "cniVersion": "0.2.0",
        "ip6": {"ip": "10.0.0.2/24"},
        "dns": {},
    }
    unlabelled = Result040(cni_version="0.4.0", ips=[IPConfig040(address="10.0.0.2/24")])
    with raises_exactly(ConversionError, "cannot convert: no valid IP addresses"):
        convert_result(unlabelled, "0.2.0")


@pytest.mark.parametrize("target", ["0.2.0", "0.1.0", ""])
def test_edge_11_no_ips_cannot_go_below_030(target: str) -> None:
    with pytest.raises(ConversionError) as info:
        convert_result(Result(cni_version="1.0.0"), target)
    assert str(info.value) == "cannot convert: no valid IP addresses"


def test_edge_11_no_ips_to_031() -> None:
    converted = convert_result(Result(cni_version="1.0.0"), "0.3.1")
    assert result_to_json(converted) == b'{\n    "cniVersion": "0.3.1",\n    "dns": {}\n}'


def test_edge_12_ips_version_only_in_04x_and_recomputed() -> None:
    doc = {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.2/24"}]}
    old = parse_result(json.dumps(doc), "0.4.0")
    assert result_to_dict(old)["ips"] == [{"version": "6", "address": "10.0.0.2/24"}]
    via_100 = convert_result(old, "1.0.0")
    assert result_to_dict(via_100)["ips"] == [{"address": "10.0.0.2/24"}]
    back = convert_result(via_100, "0.4.0")
    assert result_to_dict(back)["ips"] == [{"version": "4", "address": "10.0.0.2/24"}]

    # A version key in 1.0.0 input is ignored.
    current = parse_result(
        '{"cniVersion":"1.0.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}', "1.0.0"
    )
    assert result_to_json(current) == (
        b'{\n    "cniVersion": "1.0.0",\n    "ips": [\n        {\n'
        b'            "address": "10.0.0.2/24"\n        }\n    ]\n}'
    )


def test_ips_version_printed_even_when_empty() -> None:
    result = Result040(cni_version="0.3.0", ips=[IPConfig040(address="10.0.0.2/24")])
    assert result_to_dict(result)["ips"] == [{"version": "", "address": "10.0.0.2/24"}]


def test_ipv4_mapped_address_counts_as_4() -> None:
    result = Result(cni_version="1.1.0", ips=[IPConfig(address="::ffff:10.0.0.2/120")])
    assert result.ips[0].address == "10.0.0.2/24"
    assert result_to_dict(convert_result(result, "0.4.0"))["ips"] == [
        {"version": "4", "address": "10.0.0.2/24"}
    ]


def test_edge_16_keys_match_case_insensitively_last_wins() -> None:
    data = (
        b'{"CNIVERSION":"0.4.0","cniVersion":"1.0.0","IPs":[{"ADDRESS":"10.0.0.2/24",'
        b'"GateWay":"10.0.0.1","Interface":0}],"Routes":[{"DST":"0.0.0.0/0","GW":"10.0.0.1",'
        b'"Table":5}],"DNS":{"NameServers":["1.1.1.1"]},"ips":[{"address":"10.0.0.3/24"},'
        b'{"address":"10.0.0.4/24"}],"IPS":[{"address":"10.0.0.5/24"}]}'
    )
    result = parse_result(data, "1.0.0")
    assert isinstance(result, Result)
    assert result_to_dict(result) == {
        "cniVersion": "1.0.0",
        "dns": {"nameservers": ["1.1.1.1"]},
        "ips": [{"address": "10.0.0.5/24"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "table": 5}],
    }


def test_exact_duplicate_key_last_occurrence_wins_in_order() -> None:
    # Python's dict would keep "cniVersion" at its first position; Go reads in order.
    data = '{"cniVersion":"0.4.0","CNIVERSION":"0.3.0","cniVersion":"1.1.0"}'
    assert parse_result(data, "1.0.0").cni_version == "1.1.0"


def test_edge_17_unknown_result_keys_are_dropped_11_fields_kept() -> None:
    data = {
        "cniVersion": "1.1.0",
        "custom": {"a": 1},
        "interfaces": [{"name": "eth0", "mtu": 9000, "vendor": "x"}],
        "ips": [{"address": "10.0.0.2/24", "extra": True}],
        "dns": {"nameservers": ["1.1.1.1"], "ttl": 5},
    }
    assert result_to_json(parse_result(data, "1.1.0")) == (
        b"{\n"
        b'    "cniVersion": "1.1.0",\n'
        b'    "dns": {\n'
        b'        "nameservers": [\n'
        b'            "1.1.1.1"\n'
        b"        ]\n"
        b"    },\n"
        b'    "interfaces": [\n'
        b"        {\n"
        b'            "mtu": 9000,\n'
        b'            "name": "eth0"\n'
        b"        }\n"
        b"    ],\n"
        b'    "ips": [\n'
        b"        {\n"
        b'            "address": "10.0.0.2/24"\n'
        b"        }\n"
        b"    ]\n"
        b"}"
    )


def test_11_interface_fields_dropped_for_04x_route_fields_kept() -> None:
    result = Result(
        cni_version="1.1.0",
        interfaces=[Interface(name="eth0", mtu=9000, socket_path="/s", pci_id="p")],
        ips=[IPConfig(address="10.0.0.2/24", interface=0)],
        routes=[Route(dst="10.1.0.0/16", mtu=1400, advmss=1360, priority=7, table=0, scope=0)],
    )
    assert result_to_json(convert_result(result, "0.3.1")) == (
        b"{\n"
        b'    "cniVersion": "0.3.1",\n'
        b'    "interfaces": [\n'
        b"        {\n"
        b'            "name": "eth0"\n'
        b"        }\n"
        b"    ],\n"
        b'    "ips": [\n'
        b"        {\n"
        b'            "version": "4",\n'
        b'            "interface": 0,\n'
        b'            "address": "10.0.0.2/24"\n'
        b"        }\n"
        b"    ],\n"
        b'    "routes": [\n'
        b"        {\n"
        b'            "dst": "10.1.0.0/16",\n'
        b'            "mtu": 1400,\n'
        b'            "advmss": 1360,\n'
        b'            "priority": 7,\n'
        b'            "table": 0,\n'
        b'            "scope": 0\n'
        b"        }\n"
        b"    ],\n"
        b'    "dns": {}\n'
        b"}"
    )
    relabelled = convert_result(result, "1.0.0")
    assert relabelled is not result
    assert result_to_dict(relabelled)["interfaces"] == [
        {"mtu": 9000, "name": "eth0", "pciID": "p", "socketPath": "/s"}
    ]
    assert result_to_dict(relabelled)["routes"] == [
        {"advmss": 1360, "dst": "10.1.0.0/16", "mtu": 1400, "priority": 7, "scope": 0, "table": 0}
    ]


# --------------------------------------------------------------------------- value formats


def test_cidr_host_bits_kept_and_normalised_like_go() -> None:
    assert parse_cidr("10.0.0.2/24") == "10.0.0.2/24"
    assert parse_cidr("10.0.0.2/024") == "10.0.0.2/24"
    assert parse_cidr("FD00:0:0::2/64") == "fd00::2/64"
    assert parse_cidr("::ffff:10.0.0.2/64") == "10.0.0.2/0"
    assert parse_cidr("::ffff:10.0.0.2/128") == "10.0.0.2/32"


@pytest.mark.parametrize(
    "text",
    ["10.0.0.2", "10.0.0.2/33", "fd00::2/129", "010.0.0.2/24", "fe80::1%eth0/64", "10.0.0.2/",
     "10.0.0.2/+8", "", "10.0.0.2/2 4", "x/8"],
)  # fmt: skip
def test_bad_cidr(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cidr(text)
    assert str(info.value) == f"invalid CIDR address: {text}"


def test_ip_parsing() -> None:
    assert parse_ip("") is None
    assert parse_ip("FD00::0001") == "fd00::1"
    assert parse_ip("::ffff:1.2.3.4") == "1.2.3.4"
    with raises_exactly(ValueError, "invalid IP address: 10.0.0.1/24"):
        parse_ip("10.0.0.1/24")


def test_bare_ip_address_is_a_parse_error() -> None:
    with pytest.raises(ConversionError) as info:
        parse_result('{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2"}]}', "1.0.0")
    assert str(info.value) == "invalid CIDR address: 10.0.0.2"
    with raises_exactly(ConversionError, "invalid CIDR address: 10.0.0.0"):
        parse_result('{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.0"}}', "0.2.0")
    with raises_exactly(ConversionError, "invalid CIDR address: ::"):
        parse_result('{"cniVersion":"0.4.0","routes":[{"dst":"::"}]}', "0.4.0")
    with pytest.raises(pydantic.ValidationError, match=re.escape("invalid CIDR address: 10.0.0.2")):
        IPConfig(address="10.0.0.2")


def test_empty_gateway_is_absent() -> None:
    result = parse_result(
        '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24","gateway":""}],'
        '"routes":[{"dst":"0.0.0.0/0","gw":""}]}',
        "1.0.0",
    )
    assert isinstance(result, Result)
    assert result.ips[0].gateway is None
    assert result.routes[0].gw is None
    assert result_to_dict(result) == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.0.0.2/24"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def test_bad_gateway_is_a_parse_error() -> None:
    with raises_exactly(ConversionError, "invalid IP address: nope"):
        parse_result(
            '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24","gateway":"nope"}]}', "1.0.0"
        )


def test_mac_kept_as_string() -> None:
    result = parse_result(
        '{"cniVersion":"1.0.0","interfaces":[{"name":"e","mac":"not-a-mac"}]}', "1.0.0"
    )
    assert isinstance(result, Result)
    assert result.interfaces[0].mac == "not-a-mac"


def test_table_and_scope_zero_kept_other_zero_ints_omitted() -> None:
    route = Route(dst="10.0.0.0/8", mtu=0, advmss=0, priority=0, table=0, scope=0)
    result = Result(cni_version="1.1.0", routes=[route], interfaces=[Interface(name="", mtu=0)])
    assert result_to_dict(result) == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": ""}],
        "routes": [{"dst": "10.0.0.0/8", "scope": 0, "table": 0}],
    }


def test_1x_numbers_go_through_float64_like_go() -> None:
    # Go re-marshals 1.x results through map[string]interface{}: ints become float64.
    result = Result(cni_version="1.1.0", routes=[Route(dst="10.0.0.0/8", table=2**53 + 1)])
    assert result_to_dict(result)["routes"] == [{"dst": "10.0.0.0/8", "table": 2**53}]
    old = convert_result(result, "0.4.0")
    assert result_to_dict(old)["routes"] == [{"dst": "10.0.0.0/8", "table": 2**53 + 1}]


def test_ints_beyond_go_int64_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Route(dst="10.0.0.0/8", mtu=2**63)
    with pytest.raises(
        ConversionError,
        match=re.escape("number 9223372036854775808 into Go struct field Result.routes.mtu"),
    ):
        parse_result(
            '{"cniVersion":"1.0.0","routes":[{"dst":"1.0.0.0/8","mtu":9223372036854775808}]}',
            "1.0.0",
        )


def test_html_characters_escaped_like_go() -> None:
    result = Result(cni_version="1.1.0", interfaces=[Interface(name="a<b>&")])
    assert b'"name": "a\\u003cb\\u003e\\u0026"' in result_to_json(result)


def test_dns_omitted_only_when_empty_for_1x() -> None:
    assert "dns" not in result_to_dict(Result(cni_version="1.0.0", dns=DNS()))
    assert result_to_dict(Result(cni_version="1.0.0", dns=DNS(domain="d")))["dns"] == {
        "domain": "d"
    }
    assert result_to_dict(Result040(cni_version="0.4.0"))["dns"] == {}
    assert result_to_dict(Result020(cni_version="0.2.0"))["dns"] == {}


# --------------------------------------------------------------------------- creators


@pytest.mark.parametrize(
    ("version", "doc", "message"),
    [
        ("1.0.0", {"cniVersion": "0.4.0"}, supports("[1.0.0 1.1.0]", '"0.4.0"')),
        ("1.1.0", {}, supports("[1.0.0 1.1.0]", '""')),
        ("0.4.0", {"cniVersion": "1.0.0"}, supports("[0.3.0 0.3.1 0.4.0]", '"1.0.0"')),
        ("0.3.1", {"cniVersion": "0.2.0"}, supports("[0.3.0 0.3.1 0.4.0]", '"0.2.0"')),
        ("0.2.0", {"cniVersion": "0.3.0"}, supports("[ 0.1.0 0.2.0]", '"0.3.0"')),
        ("0.1.0", {"cniVersion": "a\nb"}, supports("[ 0.1.0 0.2.0]", '"a\\nb"')),
        ("1.2.0", {"cniVersion": "1.2.0"}, 'unsupported CNI result version "1.2.0"'),
        ("1.0", {"cniVersion": "1.0"}, 'unsupported CNI result version "1.0"'),
    ],
)  # fmt: skip
def test_creator_refusals(version: str, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError) as info:
        parse_result(doc, version)
    assert str(info.value) == message


def test_creator_accepts_any_version_of_its_family() -> None:
    assert isinstance(parse_result({"cniVersion": "0.3.0"}, "0.4.0"), Result040)
    assert isinstance(parse_result({"cniVersion": "1.0.0"}, "1.1.0"), Result)
    legacy = parse_result({}, "0.2.0")
    assert isinstance(legacy, Result020)
    assert legacy.cni_version == "0.1.0"
    assert parse_result({"cniVersion": "0.2.0"}, "").cni_version == "0.2.0"
    assert empty_result("").cni_version == "0.1.0"


def test_empty_result_unknown_version() -> None:
    with raises_exactly(ConversionError, 'unsupported CNI result version "9.9.9"'):
        empty_result("9.9.9")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "unexpected end of JSON input"),
        ('{"cniVersion":', "unexpected end of JSON input"),
        ("[]", "json: cannot unmarshal array into Go value of type Result"),
        ('{"cniVersion":1}',
         "json: cannot unmarshal number into Go struct field Result.cniVersion of type string"),
        ('{"cniVersion":"1.0.0","routes":[{"dst":"10.0.0.0/8","mtu":1.5}]}',
         "json: cannot unmarshal number 1.5 into Go struct field Result.routes.mtu of type int"),
        ('{"cniVersion":"1.0.0","routes":[{"dst":"10.0.0.0/8","table":"1"}]}',
         "json: cannot unmarshal string into Go struct field Result.routes.table of type int"),
        ('{"cniVersion":"1.0.0","ips":{}}',
         "json: cannot unmarshal object into Go struct field Result.ips of type []*IPConfig"),
        ('{"cniVersion":"1.0.0","ips":[{"address":null}]}', "invalid CIDR address: "),
        ('{"cniVersion":"1.0.0","ips":[{}]}', "invalid CIDR address: "),
        ('{"cniVersion":"1.0.0","dns":{"nameservers":[1]}}',
         "json: cannot unmarshal number into Go struct field Result.dns.nameservers of type "
         "string"),
        ("NaN", "invalid character 'N' looking for beginning of value"),
    ],
)  # fmt: skip
def test_decode_errors(data: str, message: str) -> None:
    with pytest.raises(ConversionError) as info:
        parse_result(data, "1.0.0")
    assert str(info.value) == message


def test_null_follows_go_semantics() -> None:
    # null into a Go string is a no-op (the earlier duplicate survives); into a slice/pointer
    # it clears; a null document decodes to an empty result.
    result = parse_result(
        '{"cniVersion":"1.0.0","CNIVERSION":null,"ips":[{"address":"10.0.0.2/24"}],"IPS":null,'
        '"dns":{"domain":"d","nameservers":null}}',
        "1.0.0",
    )
    assert result_to_dict(result) == {"cniVersion": "1.0.0", "dns": {"domain": "d"}}
    assert parse_result("null", "0.2.0").cni_version == "0.1.0"


# --------------------------------------------------------------------------- prevResult


def test_prev_result_explicit_empty_version_does_not_inherit() -> None:
    with pytest.raises(ConversionError) as info:
        parse_prev_result({"cniVersion": "", "ips": []}, "0.4.0")
    assert str(info.value) == (
        "could not parse prevResult: result type supports [0.3.0 0.3.1 0.4.0] but unmarshalled "
        'CNIVersion is ""'
    )
    # In the 0.2 family "" is acceptable and means 0.1.0.
    assert parse_prev_result({"cniVersion": ""}, "0.2.0").cni_version == "0.1.0"


def test_prev_result_injection_key_quirks() -> None:
    # Go injects the config version under "CNIVersion"; keys are then sorted, so a
    # "CNIVERSION" (sorting before it) loses to the injected value.
    assert parse_prev_result({"CNIVERSION": "0.3.0"}, "0.4.0").cni_version == "0.4.0"
    # A non-empty "CNIVersion" is kept and "cniVersion" (sorting after it) still wins.
    assert parse_prev_result({"CNIVersion": "0.3.0"}, "0.4.0").cni_version == "0.3.0"
    both = {"CNIVersion": "0.3.0", "cniVersion": "0.3.1"}
    assert parse_prev_result(both, "0.4.0").cni_version == "0.3.1"


def test_prev_result_errors_are_prefixed() -> None:
    with raises_exactly(
        ConversionError, "could not parse prevResult: invalid CIDR address: 1.2.3.4"
    ):
        parse_prev_result({"ips": [{"address": "1.2.3.4"}]}, "1.1.0")
    with raises_exactly(
        ConversionError, 'could not parse prevResult: unsupported CNI result version "7"'
    ):
        parse_prev_result({}, "7")


def test_prev_result_does_not_mutate_input() -> None:
    prev: dict[str, Any] = {"ips": [{"address": "10.0.0.2/24"}]}
    parse_prev_result(prev, "1.1.0")
    assert prev == {"ips": [{"address": "10.0.0.2/24"}]}


# --------------------------------------------------------------------------- helpers on models


def test_model_convenience_methods() -> None:
    old = parse_result(json.dumps(rich_040("0.3.1")), "0.3.1")
    current = old.to_current()
    assert isinstance(current, Result)
    assert current.cni_version == "1.1.0"
    assert current.to_dict() == out_100_from_040("1.1.0")
    assert old.convert_to("0.2.0").to_json() == go_indent(out_020_down("0.2.0"))
    assert current.to_json() == result_to_json(current)


def test_to_current_from_020() -> None:
    legacy = parse_result(json.dumps(rich_020("0.2.0")), "0.2.0")
    assert result_to_dict(to_current(legacy)) == out_100_from_020("1.1.0")


def test_conversion_does_not_alias_source() -> None:
    result = parse_result(json.dumps(rich_100("1.1.0")), "1.1.0")
    assert isinstance(result, Result)
    converted = convert_result(result, "1.0.0")
    assert isinstance(converted, Result)
    converted.routes[0].gw = "10.0.0.254"
    converted.ips.clear()
    assert result.routes[0].gw == "10.0.0.1"
    assert len(result.ips) == 3


def test_models_accept_field_names_and_aliases() -> None:
    by_alias = Interface.model_validate({"name": "e", "socketPath": "/s", "pciID": "p"})
    by_name = Interface(name="e", socket_path="/s", pci_id="p")
    assert by_alias == by_name
    assert Result.model_validate({"cniVersion": "1.1.0"}).cni_version == "1.1.0"
