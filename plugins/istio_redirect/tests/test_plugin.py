"""The istio-redirect plugin end to end, in-process, against a stand-in Kubernetes API.

Every ADD/CHECK/DEL goes through the same pipeline a launcher uses (``cnisdk.testing.invoke``
→ ``handle_request``) and applies rules in a real, throw-away network namespace. The API is
:class:`kube_stub.KubeStub` on 127.0.0.1, so the number of requests the plugin made can be
asserted (0 on every path that must not look the pod up).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cnisdk_istio_redirect import IstioRedirect
from kube_stub import KubeStub, injected_pod
from netns_traffic import (
    clean_state,
    iptables_state,
    nft_handles,
    nft_istio_tables,
    ns_exec,
    plugin_conf,
    pod_args,
    pod_ref,
    policy_routing,
    prev_result,
    write_kubeconfig,
)

from cnisdk.testing import Invocation, invoke, require_netns, temporary_netns

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

POD = injected_pod()
REF = pod_ref(POD)
DUAL_IPS = ("10.9.0.5/24", "fd00:9::5/64")


@pytest.fixture
def kubeconfig(stub: KubeStub, tmp_path: Path) -> str:
    return write_kubeconfig(tmp_path, stub.url)


@pytest.fixture
def ns() -> Iterator[str]:
    """A fresh pod namespace (``lo`` down, as a runtime hands it before its loopback setup)."""
    require_netns()
    with temporary_netns("cnisdk-irp-") as path:
        yield path


def lo_up(path: str) -> None:
    subprocess.run(["ip", "-n", os.path.basename(path), "link", "set", "lo", "up"], check=True)


async def call(
    command: str,
    conf: dict[str, Any],
    netns: str,
    pod: dict[str, Any] = POD,
    args: dict[str, str] | None = None,
) -> Invocation:
    return await invoke(
        IstioRedirect,
        command,
        conf,
        netns=netns,
        args=pod_args(pod) if args is None else args,
        container_id="c0ffee",
    )


def assert_passthrough(result: Invocation, conf: dict[str, Any]) -> None:
    """ADD printed prevResult unchanged, in the config's version."""
    assert result.exit_code == 0, result.stdout
    assert without_empty_dns(result.json()) == without_empty_dns(conf["prevResult"])
    assert result.json()["cniVersion"] == conf["cniVersion"]


def without_empty_dns(doc: dict[str, Any]) -> dict[str, Any]:
    # 1.0.0 results print an empty "dns" not at all, as Go's types100 does; 0.x print "{}".
    return {k: v for k, v in doc.items() if not (k == "dns" and v == {})}


def assert_fails(result: Invocation, *needles: str, code: int | None = None) -> str:
    assert result.exit_code == 1, result.stdout
    error = result.error
    text = f"{error.msg} {error.details or ''}"
    for needle in needles:
        assert needle in text, text
    if code is not None:
        assert int(error.code) == code, error
    return text


# --------------------------------------------------------------------------- skip paths


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
async def test_no_kubernetes_args_skips_and_passes_prev_result_through(
    version: str, stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    conf = plugin_conf(kubeconfig, ns, version=version)
    result = await call("ADD", conf, ns, args={"IgnoreUnknown": "1"})
    assert_passthrough(result, conf)
    assert stub.requests == []
    assert clean_state(ns) == []


@pytest.mark.parametrize("shape", ["flat", "legacy"])
async def test_excluded_namespace_skips_without_lookup(
    shape: str, stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    if shape == "flat":
        conf = plugin_conf(kubeconfig, ns, exclude_namespaces=["kube-system", "bookinfo"])
    else:
        conf = plugin_conf(
            None, ns, kubernetes={"kubeconfig": kubeconfig, "exclude_namespaces": ["bookinfo"]}
        )
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert stub.requests == []
    assert clean_state(ns) == []


async def test_own_node_agent_pod_skips_without_lookup(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    conf = plugin_conf(kubeconfig, ns, pod_namespace="istio-system")
    agent = {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": "istio-system",
        "K8S_POD_NAME": "istio-cni-node-7xk2q",
    }
    assert_passthrough(await call("ADD", conf, ns, args=agent), conf)
    # Same prefix in another namespace is an ordinary pod: it is looked up (and not found).
    other = {**agent, "K8S_POD_NAMESPACE": "default"}
    assert_fails(await call("ADD", conf, ns, args=other), "default/istio-cni-node-7xk2q", "404")
    assert len(stub.requests) == 1


async def test_fast_path_annotations_without_status_skip_without_lookup(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    annotations = {"kubernetes.io/config.source": "api", "prometheus.io/scrape": "true"}
    conf = plugin_conf(
        kubeconfig, ns, runtimeConfig={"io.kubernetes.cri.pod-annotations": annotations}
    )
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert stub.requests == []
    assert clean_state(ns) == []


async def test_fast_path_annotations_with_status_still_look_the_pod_up(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    annotations = dict(POD["metadata"]["annotations"])
    conf = plugin_conf(
        kubeconfig, ns, runtimeConfig={"io.kubernetes.cri.pod-annotations": annotations}
    )
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert stub.requests == [f"/api/v1/namespaces/bookinfo/pods/{POD['metadata']['name']}"]
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in "\n".join(
        iptables_state(ns)["iptables-nft-save"]
    )


@pytest.mark.parametrize(
    "pod",
    [
        injected_pod(with_istio_init=True),
        injected_pod(without_proxy=True),
        injected_pod(labels={"sidecar.istio.io/inject": "false"}),
        injected_pod(proxy_env={"DISABLE_ENVOY": "true"}),
        injected_pod(proxy_args=["proxy", "router"]),
        injected_pod(annotations={"sidecar.istio.io/status": None}),
    ],
    ids=[
        "istio-init",
        "no-istio-proxy",
        "inject-label-false",
        "disable-envoy",
        "gateway",
        "no-status",
    ],
)
async def test_pod_skipped_by_the_decision(
    pod: dict[str, Any], stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    stub.add_pod(pod)
    conf = plugin_conf(kubeconfig, ns, version="0.4.0")
    assert_passthrough(await call("ADD", conf, ns, pod=pod), conf)
    assert len(stub.requests) == 1
    assert clean_state(ns) == []


# --------------------------------------------------------------------------- fail closed


async def test_unauthorized_fails_add_naming_the_pod(
    stub: KubeStub, tmp_path: Path, ns: str
) -> None:
    conf = plugin_conf(write_kubeconfig(tmp_path, stub.url, token="expired"), ns)
    text = assert_fails(await call("ADD", conf, ns), REF, "401")
    assert int((await call("ADD", conf, ns)).error.code) != 11, text  # final, not retryable
    assert clean_state(ns) == []


async def test_pod_not_found_fails_add(stub: KubeStub, kubeconfig: str, ns: str) -> None:
    missing = injected_pod()
    missing["metadata"]["name"] = "gone-7d9f8b6c5-zzzzz"
    result = await call("ADD", plugin_conf(kubeconfig, ns), ns, pod=missing)
    assert_fails(result, "bookinfo/gone-7d9f8b6c5-zzzzz", "404")
    assert int(result.error.code) != 11
    assert clean_state(ns) == []


async def test_server_error_fails_add_as_retryable(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    stub.failures[("bookinfo", POD["metadata"]["name"])] = [500, 500]
    conf = plugin_conf(kubeconfig, ns, kube_api_attempts=2, kube_api_backoff=0)
    assert_fails(await call("ADD", conf, ns), REF, "500", code=11)
    assert len(stub.requests) == 2
    assert clean_state(ns) == []


async def test_api_timeout_fails_add_as_retryable(stub: KubeStub, kubeconfig: str, ns: str) -> None:
    stub.delay = 5.0
    conf = plugin_conf(kubeconfig, ns, kube_api_timeout=0.2)
    assert_fails(await call("ADD", conf, ns), REF, code=11)
    assert clean_state(ns) == []


async def test_invalid_annotation_fails_add(stub: KubeStub, kubeconfig: str, ns: str) -> None:
    stub.add_pod(injected_pod(annotations={"sidecar.istio.io/interceptionMode": "BOGUS"}))
    result = await call("ADD", plugin_conf(kubeconfig, ns), ns)
    text = assert_fails(result, REF, "sidecar.istio.io/interceptionMode", "BOGUS", code=7)
    assert text.count(REF) == 1, text
    assert clean_state(ns) == []


async def test_rules_the_kernel_rejects_fail_add_and_leave_nothing(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    conf = plugin_conf(kubeconfig, ns)
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert iptables_state(ns)["iptables-nft-save"]
    # The pod is re-created as TPROXY with a uid iptables cannot express: the mangle rules
    # would load, the nat ones not. The earlier rules must go too: no half-redirected pod.
    stub.add_pod(
        injected_pod(
            annotations={"sidecar.istio.io/interceptionMode": "TPROXY"},
            proxy_security_context={"runAsUser": 2**33, "runAsGroup": 1337},
        )
    )
    text = assert_fails(await call("ADD", conf, ns), REF, "iptables", "8589934592")
    assert "--uid-owner" in text
    assert clean_state(ns) == []


async def test_netns_that_is_not_a_namespace_fails_add(
    stub: KubeStub, kubeconfig: str, tmp_path: Path
) -> None:
    require_netns()
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    conf = plugin_conf(kubeconfig, str(bogus))
    assert_fails(await call("ADD", conf, str(bogus)), REF, str(bogus))


async def test_failed_policy_routing_rolls_back_everything(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    # TPROXY on a dual-stack pod whose lo is down: the v4 and v6 rules load, the IPv6 local
    # route cannot be added. ADD must fail and take its rules, ip rules and ::6 away again.
    stub.add_pod(
        injected_pod(
            annotations={"sidecar.istio.io/interceptionMode": "TPROXY"},
            proxy_env={"ISTIO_DUAL_STACK": "true"},
        )
    )
    result = await call("ADD", plugin_conf(kubeconfig, ns, ips=DUAL_IPS), ns)
    assert_fails(result, REF, "ip -6 route add local ::/0 dev lo table 133")
    assert clean_state(ns) == []
    assert "::6" not in ns_exec(ns, "ip", "-6", "addr", "show", "dev", "lo")


# --------------------------------------------------------------------------- idempotency, CHECK


@pytest.mark.parametrize("mode", ["REDIRECT", "TPROXY"])
async def test_repeated_add_is_a_no_op(mode: str, stub: KubeStub, kubeconfig: str, ns: str) -> None:
    lo_up(ns)
    stub.add_pod(
        injected_pod(
            annotations={"sidecar.istio.io/interceptionMode": mode},
            proxy_env={"ISTIO_DUAL_STACK": "true", "ISTIO_META_DNS_CAPTURE": "true"},
        )
    )
    conf = plugin_conf(kubeconfig, ns, ips=DUAL_IPS)
    assert_passthrough(await call("ADD", conf, ns), conf)
    before = (nft_handles(ns), iptables_state(ns), policy_routing(ns))
    assert "ISTIO_OUTPUT" in before[0] and "ip6 nat" in before[0]
    assert_passthrough(await call("ADD", conf, ns), conf)
    # Same rule handles: nothing was re-applied, not even an identical ruleset.
    assert (nft_handles(ns), iptables_state(ns), policy_routing(ns)) == before
    assert (await call("CHECK", conf, ns)).exit_code == 0


async def test_check_fails_after_a_rule_is_deleted_and_add_repairs_it(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    conf = plugin_conf(kubeconfig, ns)
    assert_passthrough(await call("ADD", conf, ns), conf)
    ok = await call("CHECK", conf, ns)
    assert ok.exit_code == 0 and ok.stdout == b""
    ns_exec(ns, "iptables-nft", "-t", "nat", "-D", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT")
    text = assert_fails(
        await call("CHECK", conf, ns), REF, "not as ADD installed", "ISTIO_OUTPUT", "ISTIO_REDIRECT"
    )
    assert "missing" in text
    # A further ADD replaces the drifted state (never "Chain already exists").
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert (await call("CHECK", conf, ns)).exit_code == 0


async def test_check_covers_tproxy_policy_routing(stub: KubeStub, kubeconfig: str, ns: str) -> None:
    lo_up(ns)
    stub.add_pod(injected_pod(annotations={"sidecar.istio.io/interceptionMode": "TPROXY"}))
    conf = plugin_conf(kubeconfig, ns)
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert (await call("CHECK", conf, ns)).exit_code == 0
    ns_exec(ns, "ip", "rule", "del", "fwmark", "1337", "lookup", "133")
    assert_fails(await call("CHECK", conf, ns), REF, "ip rule add fwmark 1337 lookup 133")


async def test_check_fails_when_add_never_ran(stub: KubeStub, kubeconfig: str, ns: str) -> None:
    assert_fails(await call("CHECK", plugin_conf(kubeconfig, ns), ns), REF, "chain ISTIO_OUTPUT")


# --------------------------------------------------------------------------- DEL


async def test_del_succeeds_also_when_the_namespace_is_gone(
    stub: KubeStub, kubeconfig: str
) -> None:
    require_netns()
    with temporary_netns("cnisdk-irp-") as path:
        conf = plugin_conf(kubeconfig, path)
        assert_passthrough(await call("ADD", conf, path), conf)
        assert (await call("DEL", conf, path)).exit_code == 0
    for netns in (path, ""):
        gone = await call("DEL", conf, netns)
        assert (gone.exit_code, gone.stdout) == (0, b"")


# --------------------------------------------------------------------------- config shapes


async def test_legacy_config_shape_works_with_only_type_changed(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    # Istio 1.21-1.23's entry, as install-cni wrote it, "type" changed.
    conf: dict[str, Any] = {
        "cniVersion": "0.3.1",
        "name": "istio-cni",
        "type": "istio-redirect",
        "log_level": "info",
        "log_uds_address": "/var/run/istio-cni/log.sock",
        "cni_event_address": "/var/run/istio-cni/pluginevent.sock",
        "kubernetes": {
            "kubeconfig": kubeconfig,
            "cni_bin_dir": "/opt/cni/bin",
            "exclude_namespaces": ["istio-system", "kube-system"],
        },
        "prevResult": prev_result("0.3.1", ns),
    }
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert any("ISTIO_REDIRECT" in line for line in iptables_state(ns)["iptables-nft-save"])
    # Its exclusion list applies.
    system = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "istio-system", "K8S_POD_NAME": "x"}
    assert_passthrough(await call("ADD", conf, ns, args=system), conf)
    assert len(stub.requests) == 1


async def test_current_install_cni_entry_with_implicit_kubeconfig(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    # install-cni's sorted keys, "ipam"/"dns" included; the kubeconfig is found at
    # <cni_agent_run_dir>/istio-cni-kubeconfig as Istio does.
    conf: dict[str, Any] = {
        "ambient_enabled": False,
        "cniVersion": "1.0.0",
        "cni_agent_run_dir": os.path.dirname(kubeconfig),
        "dns": {},
        "exclude_namespaces": ["kube-system"],
        "ipam": {},
        "name": "k8s-pod-network",
        "native_nftables": False,
        "plugin_log_level": "debug",
        "pod_namespace": "istio-system",
        "type": "istio-redirect",
        "prevResult": prev_result("1.0.0", ns),
    }
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert len(stub.requests) == 1
    assert (await call("CHECK", conf, ns)).exit_code == 0


async def test_native_nftables_installs_inet_istio_proxy_tables(
    stub: KubeStub, kubeconfig: str, ns: str
) -> None:
    stub.add_pod(injected_pod(proxy_env={"ISTIO_META_DNS_CAPTURE": "true"}))
    conf = plugin_conf(kubeconfig, ns, native_nftables=True)
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert nft_istio_tables(ns) == ["istio-proxy-nat", "istio-proxy-raw"]
    assert all(not any("ISTIO_" in line for line in lines) for lines in iptables_state(ns).values())
    ruleset = ns_exec(ns, "nft", "list", "table", "inet", "istio-proxy-nat")
    assert "redirect to :15001" in ruleset and "redirect to :15053" in ruleset
    assert (await call("CHECK", conf, ns)).exit_code == 0
    listing = ns_exec(ns, "nft", "list", "ruleset")
    assert_passthrough(await call("ADD", conf, ns), conf)
    assert ns_exec(ns, "nft", "list", "ruleset") == listing
    ns_exec(ns, "nft", "flush", "chain", "inet", "istio-proxy-nat", "istio-redirect")
    assert_fails(await call("CHECK", conf, ns), REF, "istio-proxy-nat", "15001")


async def test_config_errors_are_reported_before_anything_runs(ns: str) -> None:
    conf = plugin_conf("relative/kubeconfig", ns)
    result = await call("ADD", conf, ns)
    assert result.exit_code == 1
    assert "absolute path" in json.dumps(result.json())
