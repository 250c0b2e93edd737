"""Istio's skip rules and NewRedirect, on pods shaped like real injected pods."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from cnisdk_istio_redirect._decision import (
    ANNOTATION_EXCLUDE_INBOUND_PORTS as EXCL_IN,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_EXCLUDE_INTERFACES as EXCL_IF,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES as EXCL_CIDR,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS as EXCL_OUT,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_INCLUDE_INBOUND_PORTS as INCL_IN,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES as INCL_CIDR,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_INCLUDE_OUTBOUND_PORTS as INCL_OUT,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_INTERCEPTION_MODE as MODE,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_KUBEVIRT_INTERFACES as KUBEVIRT,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_REROUTE_VIRTUAL_INTERFACES as REROUTE,
)
from cnisdk_istio_redirect._decision import (
    ANNOTATION_STATUS as STATUS,
)
from cnisdk_istio_redirect._decision import (
    InvalidAnnotationError,
    decide_from_annotations,
    parse_go_bool,
    redirect_spec_for,
    skip_reason,
)
from cnisdk_istio_redirect._pod import PodFormatError, PodInfo, pod_info_from_api
from cnisdk_istio_redirect._redirect import RedirectSpec
from kube_stub import INJECTED_POD, injected_pod

INJECT = "sidecar.istio.io/inject"
POD_REF = "bookinfo/reviews-v1-5b9d6c7f4-x8k2p"


def info(**changes: Any) -> PodInfo:
    return pod_info_from_api(injected_pod(**changes))


# --------------------------------------------------------------------------- PodInfo


def test_pod_info_from_injected_pod() -> None:
    pod = pod_info_from_api(INJECTED_POD)
    assert pod.ref == POD_REF
    assert pod.containers == ("istio-validation", "reviews", "istio-proxy")
    assert pod.labels["app"] == "reviews"
    assert pod.annotations[STATUS].startswith('{"initContainers":["istio-validation"]')
    assert pod.proxy_type == "sidecar"
    assert pod.proxy_args[:2] == ("proxy", "sidecar")
    assert (pod.proxy_uid, pod.proxy_gid) == (1337, 1337)
    assert pod.proxy_env["ISTIO_META_INTERCEPTION_MODE"] == "REDIRECT"
    # valueFrom entries are present with an empty value, as Go's EnvVar.Value is.
    assert pod.proxy_env["POD_NAME"] == ""


def test_pod_info_native_sidecar() -> None:
    pod = info(native_sidecar=True, proxy_env={"ISTIO_META_DNS_CAPTURE": "true"})
    assert pod.containers == ("istio-validation", "istio-proxy", "reviews")
    assert pod.proxy_type == "sidecar"
    assert pod.proxy_env["ISTIO_META_DNS_CAPTURE"] == "true"
    assert skip_reason(pod) is None


def test_pod_info_reads_nulls_as_go_does() -> None:
    pod = pod_info_from_api(
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": None, "annotations": None},
            "spec": {
                "initContainers": None,
                "containers": [
                    {"image": "no-name"},
                    None,
                    {
                        "name": "istio-proxy",
                        "env": [None, {"name": "A", "value": None}, {"name": None}],
                        "args": None,
                        "ports": None,
                        "securityContext": {"runAsUser": None, "runAsGroup": 0},
                    },
                ],
            },
        }
    )
    assert pod.containers == ("", "", "istio-proxy")
    assert pod.labels == {} and pod.annotations == {} and pod.proxy_env == {"A": "", "": ""}
    assert pod.proxy_args == () and pod.proxy_type == ""
    assert pod.proxy_uid is None and pod.proxy_gid == 0
    assert pod_info_from_api({}) == PodInfo()
    assert pod_info_from_api({"metadata": None, "spec": None}) == PodInfo()
    with pytest.raises(TypeError):
        pod_info_from_api([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"metadata": []}, "field metadata is an array, not an object"),
        ({"metadata": {"annotations": ["a"]}}, "field metadata.annotations is an array"),
        (
            {"metadata": {"labels": {"sidecar.istio.io/inject": False}}},
            'field metadata.labels["sidecar.istio.io/inject"] is a bool, not a string',
        ),
        ({"metadata": {"name": 1}}, "field metadata.name is a number, not a string"),
        ({"spec": {"containers": {"a": 1}}}, "field spec.containers is an object, not an array"),
        ({"spec": {"initContainers": ["istio-init"]}}, "field spec.initContainers[0] is a string"),
        (
            {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}},
            "field spec.containers[0].ports[0].containerPort is a string, not an int32",
        ),
        (
            {"spec": {"containers": [{"name": "a", "ports": [{"hostPort": 1 << 31}]}]}},
            "field spec.containers[0].ports[0].hostPort is a number, not an int32",
        ),
        (
            {"spec": {"containers": [{"name": "istio-proxy", "env": [{"name": "X", "value": 1}]}]}},
            "field spec.containers[0].env[0].value is a number",
        ),
        (
            {"spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", ["x"]]}]}},
            "field spec.containers[0].args[1] is an array, not a string",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {"name": "istio-proxy", "securityContext": {"runAsUser": 1337.0}}
                    ]
                }
            },
            "field spec.containers[0].securityContext.runAsUser is a number, not an int64",
        ),
    ],
)
def test_pod_info_refuses_fields_of_the_wrong_type(obj: dict[str, Any], message: str) -> None:
    # Go's decoder refuses such a Pod; reading the field as empty could turn "redirect" into
    # "skip" (no status annotation, no istio-proxy container).
    with pytest.raises(PodFormatError) as err:
        pod_info_from_api(obj)
    assert message in str(err.value)


def test_pod_format_error_never_shows_the_value() -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    with pytest.raises(PodFormatError) as err:
        pod_info_from_api({"metadata": {"annotations": {"a": [secret]}}})
    assert "a" in str(err.value) and secret[:10] not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *((t, True) for t in ("1", "t", "T", "TRUE", "true", "True")),
        *((f, False) for f in ("0", "f", "F", "FALSE", "false", "False")),
        *((bad, None) for bad in ("", "yes", "no", "tRUE", " true", "true ", "2", "on")),
    ],
)
def test_parse_go_bool(text: str, expected: bool | None) -> None:
    assert parse_go_bool(text) is expected


# --------------------------------------------------------------------------- skip rules

SKIP_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("injected", {}, None),
    ("native sidecar", {"native_sidecar": True}, None),
    ("istio-init", {"with_istio_init": True}, "istio-init container"),
    ("DISABLE_ENVOY=true", {"proxy_env": {"DISABLE_ENVOY": "true"}}, "DISABLE_ENVOY=true"),
    ("DISABLE_ENVOY=1", {"proxy_env": {"DISABLE_ENVOY": "1"}}, "DISABLE_ENVOY=1"),
    ("DISABLE_ENVOY=True", {"proxy_env": {"DISABLE_ENVOY": "True"}}, "DISABLE_ENVOY"),
    ("DISABLE_ENVOY=false", {"proxy_env": {"DISABLE_ENVOY": "false"}}, None),
    ("DISABLE_ENVOY=yes (unparsable)", {"proxy_env": {"DISABLE_ENVOY": "yes"}}, None),
    ("no istio-proxy", {"without_proxy": True}, "no istio-proxy container"),
    (
        "gateway (proxy router)",
        {"proxy_args": ["proxy", "router", "--domain", "x"]},
        "proxy type 'router'",
    ),
    ("args without a type", {"proxy_args": ["proxy"]}, None),
    ("no args", {"proxy_args": []}, None),
    ("args not starting with proxy", {"proxy_args": ["sidecar", "router"]}, None),
    ("inject annotation false", {"annotations": {INJECT: "false"}}, "by annotation"),
    *(
        (f"inject annotation {v}", {"annotations": {INJECT: v}}, "injection disabled")
        for v in ("0", "f", "F", "FALSE", "False")
    ),
    ("inject annotation true", {"annotations": {INJECT: "true"}}, None),
    ("inject annotation unparsable", {"annotations": {INJECT: "no"}}, None),
    ("inject label false", {"labels": {INJECT: "false"}}, "by label"),
    (
        "label true beats annotation false",
        {"labels": {INJECT: "true"}, "annotations": {INJECT: "false"}},
        None,
    ),
    (
        "label false beats annotation true",
        {"labels": {INJECT: "false"}, "annotations": {INJECT: "true"}},
        "by label sidecar.istio.io/inject=false",
    ),
    (
        "empty label still beats annotation false",
        {"labels": {INJECT: ""}, "annotations": {INJECT: "false"}},
        None,
    ),
    (
        "unparsable label beats annotation false",
        {"labels": {INJECT: "off"}, "annotations": {INJECT: "false"}},
        None,
    ),
    ("no status annotation", {"annotations": {STATUS: None}}, "no sidecar.istio.io/status"),
    # Order: the first matching rule names the reason.
    (
        "istio-init before missing status",
        {"with_istio_init": True, "annotations": {STATUS: None}},
        "istio-init",
    ),
    (
        "DISABLE_ENVOY before gateway",
        {"proxy_env": {"DISABLE_ENVOY": "true"}, "proxy_args": ["proxy", "router"]},
        "DISABLE_ENVOY",
    ),
    (
        "gateway before inject=false",
        {"proxy_args": ["proxy", "router"], "annotations": {INJECT: "false"}},
        "router",
    ),
    (
        "inject=false before missing status",
        {"annotations": {INJECT: "false", STATUS: None}},
        "injection disabled",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in SKIP_CASES], ids=[c[0] for c in SKIP_CASES]
)
def test_skip_reason(changes: dict[str, Any], expected: str | None) -> None:
    reason = skip_reason(info(**changes))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize("changes", [c[1] for c in SKIP_CASES], ids=[c[0] for c in SKIP_CASES])
def test_fast_path_never_contradicts_full_decision(changes: dict[str, Any]) -> None:
    pod = info(**changes)
    verdict = decide_from_annotations(dict(pod.annotations))
    if verdict.decided:
        assert skip_reason(pod) is not None


# --------------------------------------------------------------------------- NewRedirect


def spec_with(annotations: dict[str, str | None], **changes: Any) -> RedirectSpec:
    return redirect_spec_for(info(annotations=annotations, **changes))


def test_injected_pod_gets_istio_defaults() -> None:
    assert redirect_spec_for(pod_info_from_api(INJECTED_POD)) == RedirectSpec()


def test_bare_status_annotation_gets_defaults() -> None:
    # Without the injector's traffic annotations, NewRedirect's own defaults apply.
    pod = PodInfo(name="p", namespace="ns", containers=("istio-proxy",), annotations={STATUS: "{}"})
    assert skip_reason(pod) is None
    assert redirect_spec_for(pod) == RedirectSpec()


BASE = RedirectSpec()

SPEC_CASES: list[tuple[str, dict[str, str | None], RedirectSpec]] = [
    ("TPROXY", {MODE: "TPROXY"}, replace(BASE, mode="TPROXY")),
    ("REDIRECT", {MODE: "REDIRECT"}, BASE),
    ("mode default", {MODE: None}, BASE),
    (
        "include CIDRs",
        {INCL_CIDR: "10.0.0.0/8,192.168.0.0/16,fd00::/8"},
        replace(BASE, include_outbound_cidrs=("10.0.0.0/8", "192.168.0.0/16", "fd00::/8")),
    ),
    (
        "include CIDR host bits",
        {INCL_CIDR: "10.1.2.3/8"},
        replace(BASE, include_outbound_cidrs=("10.1.2.3/8",)),
    ),
    ("include CIDRs empty", {INCL_CIDR: ""}, replace(BASE, include_outbound_cidrs=())),
    ("include CIDRs default", {INCL_CIDR: None}, BASE),
    (
        "exclude CIDRs",
        {EXCL_CIDR: "169.254.169.254/32,::1/128"},
        replace(BASE, exclude_outbound_cidrs=("169.254.169.254/32", "::1/128")),
    ),
    ("exclude CIDRs empty", {EXCL_CIDR: ""}, BASE),
    (
        "include inbound ports",
        {INCL_IN: "80,443"},
        replace(BASE, include_inbound_ports=("80", "443")),
    ),
    (
        "include inbound ports spaces",
        {INCL_IN: " 80 , 0443 "},
        replace(BASE, include_inbound_ports=("80", "443")),
    ),
    ("include inbound empty", {INCL_IN: ""}, replace(BASE, include_inbound_ports=())),
    ("include inbound default", {INCL_IN: None}, BASE),
    (
        "exclude inbound appended",
        {EXCL_IN: "8080,9090"},
        replace(BASE, exclude_inbound_ports=(8080, 9090, 15020, 15021, 15090)),
    ),
    (
        "exclude inbound deduped",
        {EXCL_IN: "15021,8080,15021"},
        replace(BASE, exclude_inbound_ports=(15021, 8080, 15020, 15090)),
    ),
    ("exclude inbound empty", {EXCL_IN: ""}, BASE),
    ("exclude inbound blank", {EXCL_IN: "   "}, BASE),
    ("exclude inbound default", {EXCL_IN: None}, BASE),
    (
        "exclude inbound '*' is ignored with an include list",
        {EXCL_IN: "*", INCL_IN: "8080"},
        replace(BASE, include_inbound_ports=("8080",)),
    ),
    (
        "exclude outbound replaces 15020",
        {EXCL_OUT: "5555,6666"},
        replace(BASE, exclude_outbound_ports=(5555, 6666)),
    ),
    ("exclude outbound empty", {EXCL_OUT: ""}, replace(BASE, exclude_outbound_ports=())),
    (
        "include outbound ports",
        {INCL_OUT: "3306,5432"},
        replace(BASE, include_outbound_ports=(3306, 5432)),
    ),
    ("port 0 and 65535", {INCL_OUT: "0,65535"}, replace(BASE, include_outbound_ports=(0, 65535))),
    (
        "exclude interfaces",
        {EXCL_IF: "eth1, net1"},
        replace(BASE, exclude_interfaces=("eth1", "net1")),
    ),
    ("exclude interfaces empty", {EXCL_IF: ""}, BASE),
    (
        "reroute virtual interfaces",
        {REROUTE: "k6t-eth0,tap0"},
        replace(BASE, reroute_virtual_interfaces=("k6t-eth0", "tap0")),
    ),
    (
        "deprecated kubevirtInterfaces",
        {KUBEVIRT: "k6t-eth0"},
        replace(BASE, reroute_virtual_interfaces=("k6t-eth0",)),
    ),
    (
        "reroute beats kubevirt",
        {REROUTE: "net1", KUBEVIRT: "k6t-eth0"},
        replace(BASE, reroute_virtual_interfaces=("net1",)),
    ),
    ("empty reroute still beats kubevirt", {REROUTE: "", KUBEVIRT: "k6t-eth0"}, BASE),
    (
        "reroute present skips kubevirt validation",
        {REROUTE: "net1", KUBEVIRT: "bad name"},
        replace(BASE, reroute_virtual_interfaces=("net1",)),
    ),
]


@pytest.mark.parametrize(
    ("annotations", "expected"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_redirect_spec(annotations: dict[str, str | None], expected: RedirectSpec) -> None:
    assert spec_with(annotations) == expected


INVALID_CASES: list[tuple[str, dict[str, str], str]] = [
    ("mode lower case", {MODE: "tproxy"}, MODE),
    ("mode empty", {MODE: ""}, MODE),
    ("mode NONE", {MODE: "NONE"}, MODE),
    *(
        (f"include CIDR {v!r}", {INCL_CIDR: v}, INCL_CIDR)
        for v in (
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "010.0.0.0/8",
            "10.0.0.0/8, 192.168.0.0/16",
            "10.0.0.0/8,",
            "*,10.0.0.0/8",
            "fe80::1%eth0/64",
            "::/129",
            "abc/8",
            "1.2.3.4/255.255.255.0",
            " ",
        )
    ),
    ("exclude CIDR '*'", {EXCL_CIDR: "*"}, EXCL_CIDR),
    ("exclude CIDR no prefix", {EXCL_CIDR: "169.254.169.254"}, EXCL_CIDR),
    *(
        (f"include inbound {v!r}", {INCL_IN: v}, INCL_IN)
        for v in ("http", "65536", "-1", "+80", "80;443", "80,,443", "80,", " * ", " ")
    ),
    ("exclude inbound '*' with include '*'", {EXCL_IN: "*"}, EXCL_IN),
    ("exclude inbound trailing comma", {EXCL_IN: "8080,"}, EXCL_IN),
    ("exclude inbound word", {EXCL_IN: "metrics"}, EXCL_IN),
    ("exclude outbound '*'", {EXCL_OUT: "*"}, EXCL_OUT),
    ("exclude outbound blank", {EXCL_OUT: "  "}, EXCL_OUT),
    ("exclude outbound bad", {EXCL_OUT: "70000"}, EXCL_OUT),
    ("include outbound '*'", {INCL_OUT: "*"}, INCL_OUT),
    ("include outbound blank", {INCL_OUT: " "}, INCL_OUT),
    ("include outbound bad", {INCL_OUT: "1_000"}, INCL_OUT),
    *(
        (f"exclude interfaces {v!r}", {EXCL_IF: v}, EXCL_IF)
        for v in ("1eth", "eth1,", "eth 1", "eth1;eth2", "a-very-long-ifname0", " ")
    ),
    ("reroute bad", {REROUTE: "k6t eth0"}, REROUTE),
    ("kubevirt bad", {KUBEVIRT: "k6t eth0"}, KUBEVIRT),
    # Istio validates in a fixed order; the first bad annotation is the one reported.
    ("order: mode first", {MODE: "X", INCL_CIDR: "bad", EXCL_OUT: "bad"}, MODE),
    ("order: CIDRs before ports", {INCL_CIDR: "bad", EXCL_OUT: "bad"}, INCL_CIDR),
    ("order: syntax before unloadable", {EXCL_OUT: "*", EXCL_IF: "1bad"}, EXCL_IF),
]


@pytest.mark.parametrize(
    ("annotations", "key"), [c[1:] for c in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_annotation(annotations: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidAnnotationError) as err:
        spec_with(dict(annotations))
    exc = err.value
    assert isinstance(exc, ValueError)
    assert exc.annotation == key
    assert exc.value == annotations[key]
    assert exc.pod == POD_REF
    message = str(exc)
    assert key in message and repr(annotations[key]) in message and POD_REF in message


@pytest.mark.parametrize(
    ("security_context", "uid", "gid"),
    [
        ({"runAsUser": 1000, "runAsGroup": 2000}, 1000, 2000),
        ({"runAsUser": 1000}, 1000, 1337),
        ({"runAsUser": 0, "runAsGroup": 0}, 1337, 1337),
        ({}, 1337, 1337),
    ],
)
def test_proxy_uid_gid(security_context: dict[str, Any], uid: int, gid: int) -> None:
    spec = spec_with({}, proxy_security_context=security_context)
    assert (spec.proxy_uid, spec.proxy_gid) == (uid, gid)


def test_proxy_without_security_context() -> None:
    pod = injected_pod()
    del pod["spec"]["containers"][1]["securityContext"]
    spec = redirect_spec_for(pod_info_from_api(pod))
    assert (spec.proxy_uid, spec.proxy_gid) == (1337, 1337)


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ("ISTIO_META_DNS_CAPTURE", "dns_capture"),
        ("ISTIO_DUAL_STACK", "dual_stack"),
        ("INVALID_DROP", "invalid_drop"),
    ],
)
@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False)])
def test_env_flags(env: str, field: str, value: str, expected: bool) -> None:
    spec = spec_with({}, proxy_env={env: value})
    assert getattr(spec, field) is expected
    others = {"dns_capture", "dual_stack", "invalid_drop"} - {field}
    assert not any(getattr(spec, other) for other in others)


def test_env_flag_unparsable_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        spec = spec_with({}, proxy_env={"ISTIO_META_DNS_CAPTURE": "yes"})
    assert spec.dns_capture is False
    assert "ISTIO_META_DNS_CAPTURE" in caplog.text and POD_REF in caplog.text


def test_env_flag_from_value_from_is_false() -> None:
    pod = injected_pod()
    pod["spec"]["containers"][1]["env"].append(
        {"name": "ISTIO_DUAL_STACK", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}
    )
    assert redirect_spec_for(pod_info_from_api(pod)).dual_stack is False


# --------------------------------------------------------------------------- fast path

FAST_CASES: list[tuple[str, object, bool]] = [
    ("absent", None, False),
    ("not a mapping", ["sidecar.istio.io/status"], False),
    ("non-string value", {"a": 1}, False),
    ("empty", {}, False),
    ("not injected", {"kubernetes.io/config.source": "api"}, True),
    ("inject false, not injected", {INJECT: "false", "kubernetes.io/config.seen": "x"}, True),
    ("injected", dict(INJECTED_POD["metadata"]["annotations"]), False),
    ("injected, inject false", {STATUS: "{}", INJECT: "false"}, False),
    ("injected, invalid mode", {STATUS: "{}", MODE: "bogus"}, False),
]


@pytest.mark.parametrize(
    ("annotations", "decided"), [c[1:] for c in FAST_CASES], ids=[c[0] for c in FAST_CASES]
)
def test_decide_from_annotations(annotations: object, decided: bool) -> None:
    verdict = decide_from_annotations(annotations)
    assert verdict.decided is decided
    assert (verdict.skip_reason is None) != (verdict.lookup_reason is None)
    if decided:
        assert verdict.skip_reason is not None and STATUS in verdict.skip_reason
