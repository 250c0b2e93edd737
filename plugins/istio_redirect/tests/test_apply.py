"""Applying and verifying the rules in real network namespaces (both iptables backends, nft)."""

from __future__ import annotations

import time
from dataclasses import replace

import anyio
import pytest
from cnisdk_istio_redirect._apply import (
    RedirectApplyError,
    apply_iptables,
    apply_nftables,
    remove_iptables,
    remove_nftables,
    verify_iptables,
    verify_nftables,
)
from cnisdk_istio_redirect._redirect import RedirectSpec
from istio_netns_kit import NetnsRunner

pytestmark = pytest.mark.netns

FULL = RedirectSpec(
    mode="TPROXY",
    dns_capture=True,
    invalid_drop=True,
    exclude_interfaces=("eth9",),
    include_outbound_cidrs=("10.0.0.0/8", "fd00::/8"),
    exclude_outbound_cidrs=("10.1.0.0/16",),
)
SPECS = {"default": RedirectSpec(), "dns": RedirectSpec(dns_capture=True), "full": FULL}
BACKENDS = ["nft", "legacy"]


def save(runner: NetnsRunner, backend: str, family: int = 4) -> str:
    tool = ("iptables" if family == 4 else "ip6tables") + f"-{backend}-save"
    code, out, err = runner.sync(tool)
    assert code == 0, err
    return out


def restores(runner: NetnsRunner) -> list[list[str]]:
    return [c for c in runner.calls if c[0].endswith("-restore")]


def rules(runner: NetnsRunner, backend: str, family: int = 4) -> list[str]:
    """Every rule and non-builtin chain in the family's tables (the test netns starts empty)."""
    return [
        line
        for line in save(runner, backend, family).splitlines()
        if line.startswith("-A ") or (line.startswith(":") and " - [" in line)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SPECS))
def test_apply_twice_second_is_noop(runner: NetnsRunner, backend: str, name: str) -> None:
    spec = SPECS[name]
    anyio.run(apply_iptables, runner, spec, (4, 6), backend)
    assert len(restores(runner)) == 2  # exactly one restore per family
    assert anyio.run(verify_iptables, runner, spec, (4, 6), backend) == []
    runner.calls.clear()
    anyio.run(apply_iptables, runner, spec, (4, 6), backend)
    assert restores(runner) == []
    assert len(runner.calls) == 2  # one save per family, nothing else


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_rule_is_reported_and_repaired(runner: NetnsRunner, backend: str) -> None:
    spec = RedirectSpec()
    anyio.run(apply_iptables, runner, spec, (4,), backend)
    code, _, err = runner.sync(
        f"iptables-{backend}",
        "-t",
        "nat",
        "-D",
        "ISTIO_INBOUND",
        "-p",
        "tcp",
        "--dport",
        "15021",
        "-j",
        "RETURN",
    )
    assert code == 0, err
    problems = anyio.run(verify_iptables, runner, spec, (4,), backend)
    assert problems == [
        "IPv4 nat/ISTIO_INBOUND: missing: -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN"
    ]
    anyio.run(apply_iptables, runner, spec, (4,), backend)
    assert anyio.run(verify_iptables, runner, spec, (4,), backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_extra_chain_and_old_spec_replaced(runner: NetnsRunner, backend: str) -> None:
    anyio.run(apply_iptables, runner, FULL, (4,), backend)
    runner.sync(f"iptables-{backend}", "-t", "nat", "-N", "ISTIO_STALE")
    runner.sync(f"iptables-{backend}", "-t", "nat", "-A", "OUTPUT", "-j", "ISTIO_STALE")
    spec = RedirectSpec()
    problems = anyio.run(verify_iptables, runner, spec, (4,), backend)
    assert "IPv4 nat: unexpected chain ISTIO_STALE" in problems
    assert any("mangle: unexpected chain ISTIO_TPROXY" in p for p in problems)
    anyio.run(apply_iptables, runner, spec, (4,), backend)
    assert anyio.run(verify_iptables, runner, spec, (4,), backend) == []
    text = save(runner, backend)
    assert (
        "ISTIO_STALE" not in text
        and "ISTIO_TPROXY" not in text
        and "*raw" not in text.split("ISTIO")[0]
    ) or "ISTIO_OUTPUT_DNS" not in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_install_replaced_without_chain_exists(runner: NetnsRunner, backend: str) -> None:
    # What a crashed earlier attempt or istio-cni's own "Chain already exists" case leaves.
    partial = "*nat\n-N ISTIO_INBOUND\n-N ISTIO_OUTPUT\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n"
    code, _, err = runner.sync(f"iptables-{backend}-restore", "--noflush", input=partial.encode())
    assert code == 0, err
    spec = RedirectSpec(dns_capture=True)
    anyio.run(apply_iptables, runner, spec, (4,), backend)
    assert anyio.run(verify_iptables, runner, spec, (4,), backend) == []
    assert save(runner, backend).count("-A OUTPUT -j ISTIO_OUTPUT\n") == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prior", [None, "default"])
def test_failed_apply_leaves_no_istio_chains(
    runner: NetnsRunner, backend: str, prior: str | None
) -> None:
    if prior:
        anyio.run(apply_iptables, runner, SPECS[prior], (4, 6), backend)
    # 99999 is no port: the restore fails (after mangle would have been fine in TPROXY mode).
    bad = RedirectSpec(mode="TPROXY", include_inbound_ports=("99999",))
    with pytest.raises(RedirectApplyError) as info:
        anyio.run(apply_iptables, runner, bad, (4, 6), backend)
    assert "restore" in str(info.value) and "99999" in str(info.value)
    for fam in (4, 6):
        assert rules(runner, backend, fam) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_rejection_mid_blob_is_cleaned_up(runner: NetnsRunner, backend: str) -> None:
    """A failure in a later table after an earlier one committed: cleanup removes it all.

    A chain named like ours but referenced from a foreign chain cannot be deleted (``-X``), so
    the nat block fails in the kernel after the mangle block has committed.
    """
    runner.sync(f"iptables-{backend}", "-t", "nat", "-N", "ISTIO_OLD")
    runner.sync(f"iptables-{backend}", "-t", "nat", "-N", "FOREIGN")
    runner.sync(f"iptables-{backend}", "-t", "nat", "-A", "FOREIGN", "-j", "ISTIO_OLD")
    with pytest.raises(RedirectApplyError):
        anyio.run(apply_iptables, runner, RedirectSpec(mode="TPROXY"), (4,), backend)
    # The committed mangle block is gone, its builtin-chain marks included; only the
    # foreign chain and what it holds remain.
    assert sorted(rules(runner, backend)) == [
        "-A FOREIGN -j ISTIO_OLD",
        ":FOREIGN - [0:0]",
        ":ISTIO_OLD - [0:0]",
    ]


def test_backend_detection_follows_existing_legacy_rules(runner: NetnsRunner) -> None:
    # A fresh namespace: nft, as Istio picks it.
    anyio.run(apply_iptables, runner, RedirectSpec(), (4,))
    assert [c[0] for c in restores(runner)] == ["iptables-nft-restore"]
    anyio.run(remove_iptables, runner, RedirectSpec(), (4,))
    # Legacy rules already there (say from another chained plugin): legacy, for both the
    # removal and the install, so a pod's rules never span two backends. IPv6 has no legacy
    # rules, so it stays on nft.
    anyio.run(apply_iptables, runner, RedirectSpec(), (4,), "legacy")
    runner.calls.clear()
    anyio.run(apply_iptables, runner, RedirectSpec(dns_capture=True), (4, 6))
    assert [c[0] for c in restores(runner)] == ["iptables-legacy-restore", "ip6tables-nft-restore"]
    assert "ISTIO" not in save(runner, "nft", 4)
    assert anyio.run(verify_iptables, runner, RedirectSpec(dns_capture=True), (4,), "legacy") == []
    # A repeated auto-detected apply is a no-op; the legacy probe doubles as the dump.
    runner.calls.clear()
    anyio.run(apply_iptables, runner, RedirectSpec(dns_capture=True), (4,))
    assert runner.calls == [["iptables-legacy-save"]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SPECS))
def test_remove_iptables_removes_exactly_what_apply_installed(
    runner: NetnsRunner, backend: str, name: str
) -> None:
    foreign = (
        "*mangle\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"
        "*nat\n-A PREROUTING -i eth7 -j ACCEPT\nCOMMIT\n"
    )
    for family in (4, 6):
        tool = ("iptables" if family == 4 else "ip6tables") + f"-{backend}-restore"
        code, _, err = runner.sync(tool, "--noflush", input=foreign.encode())
        assert code == 0, err
    before = {family: rules(runner, backend, family) for family in (4, 6)}
    spec = SPECS[name]
    anyio.run(apply_iptables, runner, spec, (4, 6), backend)
    anyio.run(remove_iptables, runner, spec, (4, 6), backend)
    # Builtin-chain rules that name no ISTIO_ chain (TPROXY's marks, excluded interfaces)
    # go too; the foreign rules stay.
    assert {family: rules(runner, backend, family) for family in (4, 6)} == before
    # What is already gone is tolerated: nothing left of ours, so no restore runs at all.
    runner.calls.clear()
    anyio.run(remove_iptables, runner, spec, (4, 6), backend)
    assert restores(runner) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_remove_iptables_after_a_partial_removal(runner: NetnsRunner, backend: str) -> None:
    anyio.run(apply_iptables, runner, FULL, (4,), backend)
    gone = "*mangle\n-D OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark\nCOMMIT\n"
    code, _, err = runner.sync(f"iptables-{backend}-restore", "--noflush", input=gone.encode())
    assert code == 0, err
    anyio.run(remove_iptables, runner, FULL, (4,), backend)
    assert rules(runner, backend) == []


def test_restore_timing(runner: NetnsRunner) -> None:
    """Not a benchmark: records apply cost so regressions are visible in -s output."""
    start = time.perf_counter()
    anyio.run(apply_iptables, runner, RedirectSpec(), (4,), "nft")
    first = time.perf_counter() - start
    start = time.perf_counter()
    anyio.run(apply_iptables, runner, RedirectSpec(), (4,), "nft")
    second = time.perf_counter() - start
    print(  # noqa: T201 - the measurement is the point of this test
        f"apply v4 default (nft): first {first * 1000:.1f} ms, no-op {second * 1000:.1f} ms"
    )
    assert second < 5


# ---------------------------------------------------------------- nftables


@pytest.mark.parametrize("name", list(SPECS))
def test_nft_apply_twice_and_verify(runner: NetnsRunner, name: str) -> None:
    spec = SPECS[name]
    anyio.run(apply_nftables, runner, spec, True)
    anyio.run(apply_nftables, runner, spec, True)
    assert anyio.run(verify_nftables, runner, spec, True) == []
    _, out, _ = runner.sync("nft", "list", "tables")
    assert "cnisdk-verify" not in out  # scratch tables are gone


FOREIGN_NFT = """\
table inet foreign {
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\toifname "lo" counter return
\t}
}
"""


@pytest.mark.parametrize("name", list(SPECS))
def test_remove_nftables_removes_exactly_what_apply_installed(
    runner: NetnsRunner, name: str
) -> None:
    code, _, err = runner.sync("nft", "-f", "-", input=FOREIGN_NFT.encode())
    assert code == 0, err
    _, before, _ = runner.sync("nft", "list", "ruleset")
    anyio.run(apply_nftables, runner, SPECS[name], True)
    anyio.run(remove_nftables, runner)
    assert runner.sync("nft", "list", "ruleset")[1] == before
    # Tables already gone, all or some, are tolerated.
    anyio.run(remove_nftables, runner)
    anyio.run(apply_nftables, runner, SPECS[name], True)
    runner.sync("nft", "delete", "table", "inet", "istio-proxy-nat")
    anyio.run(remove_nftables, runner)
    assert runner.sync("nft", "list", "ruleset")[1] == before


def test_nft_drift_detected_and_stale_table_removed(runner: NetnsRunner) -> None:
    anyio.run(apply_nftables, runner, FULL, True)
    spec = RedirectSpec()
    problems = anyio.run(verify_nftables, runner, spec, True)
    assert "unexpected table inet istio-proxy-mangle" in problems
    anyio.run(apply_nftables, runner, spec, True)
    assert anyio.run(verify_nftables, runner, spec, True) == []
    _, out, _ = runner.sync("nft", "list", "tables")
    assert "istio-proxy-mangle" not in out and "istio-proxy-raw" not in out
    runner.sync("nft", "flush", "chain", "inet", "istio-proxy-nat", "istio-redirect")
    problems = anyio.run(verify_nftables, runner, spec, True)
    assert any("redirect to :15001" in p for p in problems), problems


def test_nft_failure_raises_with_stderr(runner: NetnsRunner) -> None:
    with pytest.raises(RedirectApplyError, match="nft -f -"):
        bad = replace(RedirectSpec(), dns_capture=True, dns_port=99999)
        anyio.run(apply_nftables, runner, bad, False)
    _, out, _ = runner.sync("nft", "list", "tables")
    assert "istio" not in out
