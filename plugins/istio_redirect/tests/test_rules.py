"""Golden tests: our rule texts against Istio's own goldens, and loading them for real."""

from __future__ import annotations

import time
from dataclasses import replace

import anyio
import pytest
from cnisdk_istio_redirect._apply import verify_iptables
from cnisdk_istio_redirect._iptables_rules import build_rules, chains_in_order, render_iptables
from cnisdk_istio_redirect._netlink import link_state
from cnisdk_istio_redirect._nftables_rules import render_nftables
from cnisdk_istio_redirect._redirect import RedirectSpec
from istio_netns_kit import GOLDEN, NetnsRunner

# istio-iptables' bare defaults, which its capture/ and nftables goldens start from.
BARE = RedirectSpec(
    include_inbound_ports=(),
    include_outbound_cidrs=(),
    exclude_inbound_ports=(),
    exclude_outbound_ports=(),
)

IPTABLES_CASES: dict[str, tuple[RedirectSpec, tuple[int, ...]]] = {
    # istio-cni's own goldens (cni/pkg/plugin/testdata)
    "basic": (RedirectSpec(), (4, 6)),
    "custom-uid": (RedirectSpec(proxy_uid=1000670000, proxy_gid=1000670001), (4,)),
    "custom-uid-tproxy": (
        RedirectSpec(mode="TPROXY", proxy_uid=1000670000, proxy_gid=1000670001),
        (4,),
    ),
    "tproxy": (RedirectSpec(mode="TPROXY"), (4, 6)),
    "dns": (RedirectSpec(dns_capture=True), (4, 6)),
    "invalid-drop": (RedirectSpec(invalid_drop=True), (4,)),
    "include-exclude-ip": (
        RedirectSpec(
            include_outbound_cidrs=("127.0.0.0/8",), exclude_outbound_cidrs=("10.0.0.0/8",)
        ),
        (4,),
    ),
    "include-exclude-ports": (
        RedirectSpec(include_inbound_ports=("1111", "2222"), exclude_outbound_ports=(5555, 6666)),
        (4,),
    ),
    # istio-iptables capture goldens (tools/istio-iptables/pkg/capture/testdata)
    "capture-basic-exclude-nic": (replace(BARE, exclude_interfaces=("not-istio-nic",)), (4,)),
    "capture-ipnets-with-kube-virt-interfaces": (
        replace(
            BARE,
            include_outbound_cidrs=("10.0.0.0/8",),
            reroute_virtual_interfaces=("eth1", "eth2"),
        ),
        (4,),
    ),
    "capture-kube-virt-interfaces": (
        replace(BARE, include_outbound_cidrs=("*",), reroute_virtual_interfaces=("eth1", "eth2")),
        (4,),
    ),
    "capture-ipv6-virt-interfaces": (
        replace(
            BARE,
            include_inbound_ports=("4000", "5000"),
            reroute_virtual_interfaces=("eth0", "eth1"),
        ),
        (4, 6),
    ),
    "capture-ipv6-ipnets": (
        replace(
            BARE,
            include_inbound_ports=("4000", "5000"),
            exclude_inbound_ports=(6000, 7000),
            include_outbound_cidrs=("2001:db8::/32",),
            exclude_outbound_cidrs=("2001:db8::/32",),
            reroute_virtual_interfaces=("eth0", "eth1"),
        ),
        (4, 6),
    ),
    "capture-inbound-ports-tproxy": (
        replace(BARE, mode="TPROXY", include_inbound_ports=("32000", "31000")),
        (4,),
    ),
    "capture-inbound-ports-wildcard-tproxy": (
        replace(BARE, mode="TPROXY", include_inbound_ports=("*",)),
        (4,),
    ),
    "capture-ipv6-outbound-ports": (replace(BARE, include_outbound_ports=(32000, 31000)), (4, 6)),
    "capture-drop-invalid": (replace(BARE, invalid_drop=True), (4,)),
}

NFT_CASES: dict[str, tuple[RedirectSpec, bool]] = {
    "empty": (BARE, False),
    "inbound-ports-wildcard": (replace(BARE, include_inbound_ports=("*",)), False),
    "drop-invalid": (replace(BARE, invalid_drop=True), False),
    "inbound-ports-wildcard-tproxy": (
        replace(BARE, include_inbound_ports=("*",), mode="TPROXY"),
        False,
    ),
    "inbound-ports-tproxy": (
        replace(BARE, include_inbound_ports=("32000", "31000"), mode="TPROXY"),
        False,
    ),
    "inbound-ports-empty-tproxy": (replace(BARE, mode="TPROXY"), False),
    "ipv6-ipnets": (
        replace(
            BARE,
            include_inbound_ports=("4000", "5000"),
            exclude_inbound_ports=(6000, 7000),
            include_outbound_cidrs=("2001:db8::/32",),
            exclude_outbound_cidrs=("2001:db8::/32",),
            reroute_virtual_interfaces=("eth0", "eth1"),
        ),
        True,
    ),
    "basic-exclude-nic": (replace(BARE, exclude_interfaces=("not-istio-nic",)), False),
    "kube-virt-interfaces": (
        replace(BARE, include_outbound_cidrs=("*",), reroute_virtual_interfaces=("eth1", "eth2")),
        False,
    ),
    "ipnets-with-kube-virt-interfaces": (
        replace(
            BARE,
            include_outbound_cidrs=("10.0.0.0/8",),
            reroute_virtual_interfaces=("eth1", "eth2"),
        ),
        False,
    ),
    "ipv6-outbound-ports": (replace(BARE, include_outbound_ports=(32000, 31000)), True),
    "ipv6-virt-interfaces": (
        replace(
            BARE,
            include_inbound_ports=("4000", "5000"),
            reroute_virtual_interfaces=("eth0", "eth1"),
        ),
        True,
    ),
    "ipv6-inbound-ports": (replace(BARE, include_inbound_ports=("4000", "5000")), True),
    "ipv6-empty-inbound-ports": (BARE, True),
    "ipnets": (replace(BARE, include_outbound_cidrs=("10.0.0.0/8",)), False),
}

# Specs the CNI really produces but Istio has no nft golden for: load-tested only.
NFT_LOAD_ONLY: dict[str, tuple[RedirectSpec, bool]] = {
    "cni-default": (RedirectSpec(), True),
    "cni-dns": (RedirectSpec(dns_capture=True), True),
    "cni-tproxy": (RedirectSpec(mode="TPROXY", dns_capture=True, invalid_drop=True), True),
    "cni-everything": (
        RedirectSpec(
            exclude_interfaces=("eth9",),
            reroute_virtual_interfaces=("k6t-eth0",),
            include_outbound_cidrs=("10.0.0.0/8", "fd00::/8", "127.0.0.1/32"),
            exclude_outbound_cidrs=("10.1.0.0/16", "fd00:1::/32"),
            include_outbound_ports=(8443,),
            dns_capture=True,
        ),
        True,
    ),
}

IPT_PARAMS = [
    pytest.param(name, fam, id=f"{name}.v{fam}")
    for name, (_, fams) in IPTABLES_CASES.items()
    for fam in fams
]


def golden_ipt(name: str, family: int) -> str:
    return (GOLDEN / "iptables" / f"{name}.v{family}").read_text()


@pytest.mark.parametrize(("name", "family"), IPT_PARAMS)
def test_iptables_matches_istio_golden(name: str, family: int) -> None:
    spec, _ = IPTABLES_CASES[name]
    assert render_iptables(spec, family) == golden_ipt(name, family)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(NFT_CASES))
def test_nftables_matches_istio_golden(name: str) -> None:
    spec, ipv6 = NFT_CASES[name]
    assert render_nftables(spec, ipv6) == (GOLDEN / "nftables" / f"{name}.nft").read_text()


def test_every_golden_file_is_used() -> None:
    ipt = {p.name for p in (GOLDEN / "iptables").iterdir()}
    assert ipt == {f"{n}.v{f}" for n, (_, fams) in IPTABLES_CASES.items() for f in fams}
    nft = {p.stem for p in (GOLDEN / "nftables").iterdir()}
    assert nft == set(NFT_CASES)


def test_ipv6_cidr_split_drops_the_other_family() -> None:
    spec = RedirectSpec(
        include_outbound_cidrs=("fd00::/8",), exclude_outbound_cidrs=("10.0.0.0/8",)
    )
    v4, v6 = render_iptables(spec, 4), render_iptables(spec, 6)
    assert "ISTIO_OUTPUT -j ISTIO_REDIRECT" not in v4
    assert "-d fd00::/8 -j ISTIO_REDIRECT" not in v4 and "10.0.0.0/8" not in v6
    assert "-A ISTIO_OUTPUT -d fd00::/8 -j ISTIO_REDIRECT" in v6
    assert "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN" in v4


def test_empty_includes_capture_nothing() -> None:
    text = render_iptables(BARE, 4)
    assert "PREROUTING" not in text and "-j ISTIO_REDIRECT" not in text


def test_wildcard_exclude_is_rejected() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        render_iptables(RedirectSpec(exclude_outbound_cidrs=("*",)), 4)


def test_chains_in_istio_order() -> None:
    assert chains_in_order(build_rules(RedirectSpec(), 4)) == {
        "mangle": [],
        "nat": ["ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"],
        "raw": [],
    }
    spec = RedirectSpec(mode="TPROXY", dns_capture=True, invalid_drop=True)
    chains = chains_in_order(build_rules(spec, 6))
    assert chains["mangle"] == ["ISTIO_DROP", "ISTIO_DIVERT", "ISTIO_TPROXY", "ISTIO_INBOUND"]
    assert chains["raw"] == ["ISTIO_OUTPUT_DNS", "ISTIO_INBOUND"]


def test_tproxy_netlink_needs() -> None:
    spec = RedirectSpec(mode="TPROXY")
    state = link_state(spec, (4, 6))
    assert [(r.family, r.fwmark, r.table) for r in state.rules] == [(4, 1337, 133), (6, 1337, 133)]
    assert [(r.destination, r.device, r.table) for r in state.routes] == [
        ("0.0.0.0/0", "lo", 133),
        ("::/0", "lo", 133),
    ]
    assert [(a.address, a.device) for a in state.addresses] == [("::6/128", "lo")]
    # REDIRECT needs no policy routing; TPROXY without inbound capture neither.
    assert not link_state(RedirectSpec(), (4,))
    assert not link_state(replace(spec, include_inbound_ports=()), (4,))
    only_v6_address = link_state(RedirectSpec(), (4, 6))
    assert only_v6_address.rules == () and only_v6_address.routes == ()
    assert [a.address for a in only_v6_address.addresses] == ["::6/128"]


# ---------------------------------------------------------------- loading for real


def _restore(runner: NetnsRunner, backend: str, family: int, text: str) -> float:
    tool = ("iptables" if family == 4 else "ip6tables") + f"-{backend}-restore"
    start = time.perf_counter()
    code, _, err = runner.sync(tool, "--noflush", input=text.encode())
    elapsed = time.perf_counter() - start
    assert code == 0, err
    return elapsed


@pytest.mark.netns
@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize(("name", "family"), IPT_PARAMS)
def test_golden_loads_and_verifies(
    runner: NetnsRunner, name: str, family: int, backend: str
) -> None:
    """Each golden loads with real *-restore --noflush, and our verifier then finds it exact.

    The second half is what makes the save-output normaliser in ``_apply`` trustworthy: every
    rule shape we emit round-trips through the kernel and iptables-save for both backends.
    """
    _restore(runner, backend, family, golden_ipt(name, family))
    spec, _ = IPTABLES_CASES[name]
    problems = anyio.run(verify_iptables, runner, spec, (family,), backend)
    assert problems == []


@pytest.mark.netns
@pytest.mark.parametrize("name", list(NFT_CASES))
def test_nft_golden_loads_twice(runner: NetnsRunner, name: str) -> None:
    script = (GOLDEN / "nftables" / f"{name}.nft").read_text()
    for _ in range(2):  # add + flush makes the second load a no-op in effect
        code, _, err = runner.sync("nft", "-f", "-", input=script.encode())
        assert code == 0, err
    code, out, _ = runner.sync("nft", "list", "tables")
    assert "istio-proxy-nat" in out


@pytest.mark.netns
@pytest.mark.parametrize("name", list(NFT_LOAD_ONLY))
def test_nft_cni_specs_load(runner: NetnsRunner, name: str) -> None:
    spec, ipv6 = NFT_LOAD_ONLY[name]
    code, _, err = runner.sync("nft", "-f", "-", input=render_nftables(spec, ipv6).encode())
    assert code == 0, err
