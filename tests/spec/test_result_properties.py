"""Property tests: conversions and printing keep what each version can carry."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from cnisdk.spec import (
    DNS,
    Interface,
    IPConfig,
    Result,
    Result020,
    Route,
    convert_result,
    parse_result,
    result_to_json,
)

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
GO_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# 1.x output goes through float64 in Go, so exact JSON round trips need ints within 2**53.
JSON_SAFE_INT = st.integers(min_value=-(2**53), max_value=2**53)


@st.composite
def cidrs(draw: st.DrawFn) -> str:
    ip = draw(st.ip_addresses())
    prefix = draw(st.integers(min_value=0, max_value=ip.max_prefixlen))
    return f"{ip}/{prefix}"


@st.composite
def ips(draw: st.DrawFn) -> str:
    return str(draw(st.ip_addresses()))


def results(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Result]:
    text = st.text(max_size=12)
    interface = st.builds(
        Interface,
        name=text,
        mac=text,
        mtu=ints,
        sandbox=text,
        socket_path=text,
        pci_id=text,
    )
    ipc = st.builds(
        IPConfig,
        interface=st.none() | ints,
        address=cidrs(),
        gateway=st.none() | ips(),
    )
    route = st.builds(
        Route,
        dst=cidrs(),
        gw=st.none() | ips(),
        mtu=ints,
        advmss=ints,
        priority=ints,
        table=st.none() | ints,
        scope=st.none() | ints,
    )
    dns = st.builds(
        DNS,
        nameservers=st.lists(text, max_size=3),
        domain=text,
        search=st.lists(text, max_size=3),
        options=st.lists(text, max_size=3),
    )
    return st.builds(
        Result,
        cni_version=st.sampled_from(("1.0.0", "1.1.0")),
        interfaces=st.lists(interface, max_size=3),
        ips=st.lists(ipc, max_size=4),
        routes=st.lists(route, max_size=4),
        dns=dns,
    )


@settings(max_examples=200)
@given(results(GO_INT))
def test_current_to_040_and_back_keeps_what_040_carries(result: Result) -> None:
    original = result.model_copy(deep=True)
    back = convert_result(convert_result(result, "0.4.0"), "1.1.0")
    assert isinstance(back, Result)
    assert back.cni_version == "1.1.0"
    assert [(i.name, i.mac, i.sandbox) for i in back.interfaces] == [
        (i.name, i.mac, i.sandbox) for i in original.interfaces
    ]
    # The 1.1 interface fields do not exist in 0.4.0.
    assert all(i.mtu == 0 and i.socket_path == "" and i.pci_id == "" for i in back.interfaces)
    assert [(i.address, i.gateway, i.interface) for i in back.ips] == [
        (i.address, i.gateway, i.interface) for i in original.ips
    ]
    # Routes share one type in every family, so even the 1.1 route fields survive.
    assert back.routes == original.routes
    assert back.dns == original.dns
    # The source is left untouched.
    assert result == original


@settings(max_examples=200)
@given(results(JSON_SAFE_INT), st.sampled_from(VERSIONS))
def test_printed_result_parses_back_to_the_same_output(result: Result, version: str) -> None:
    try:
        converted = convert_result(result, version)
    except ValueError as exc:
        # Only results without any address cannot go below 0.3.0.
        assert version in ("0.1.0", "0.2.0")
        assert not result.ips
        assert str(exc) == "cannot convert: no valid IP addresses"
        return
    printed = result_to_json(converted)
    reparsed = parse_result(printed, version)
    assert type(reparsed) is type(converted)
    assert result_to_json(reparsed) == printed


@settings(max_examples=200)
@given(results(GO_INT))
def test_down_to_020_keeps_first_address_of_each_family(result: Result) -> None:
    if not result.ips:
        return
    legacy = convert_result(result, "0.2.0")
    assert isinstance(legacy, Result020)
    first4 = next((i for i in result.ips if i.is_ipv4()), None)
    first6 = next((i for i in result.ips if not i.is_ipv4()), None)
    assert (legacy.ip4.ip if legacy.ip4 else None) == (first4.address if first4 else None)
    assert (legacy.ip6.ip if legacy.ip6 else None) == (first6.address if first6 else None)
    for block, want_v4 in ((legacy.ip4, True), (legacy.ip6, False)):
        if block is None:
            continue
        expected = [(r.dst, r.gw) for r in result.routes if r.is_ipv4() == want_v4]
        assert [(r.dst, r.gw) for r in block.routes] == expected
        assert all(r.mtu == 0 and r.table is None for r in block.routes)


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_address_family_matches_go_to4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, ip.max_prefixlen)
    ipc = IPConfig(address=f"{ip}/{prefix}")
    is_v4_in_go = isinstance(ip, ipaddress.IPv4Address) or ip.ipv4_mapped is not None
    assert ipc.is_ipv4() == is_v4_in_go
