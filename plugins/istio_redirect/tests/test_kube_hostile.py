"""istio-redirect's ADD against a hostile or broken Kubernetes API (``kube_stub.KubeStub``).

Each answer must give a clear CNI error naming the pod, at a bounded cost (time, bytes
read), never a traceback and never a skip of redirection. The pod namespace is a path that
does not exist: a pod the decision wants redirected then fails with "failed to open netns",
which the positive controls use to show the decision got that far; the hostile answers must
fail before it.
"""

from __future__ import annotations

import copy
import gzip
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from cnisdk_istio_redirect import IstioRedirect
from kube_stub import KubeStub, dripping, endless_body, injected_pod, raw_answer
from netns_traffic import plugin_conf, pod_args, pod_ref, write_kubeconfig

from cnisdk import CNIError
from cnisdk.testing import invoke

pytestmark = pytest.mark.anyio

POD = injected_pod()
NS, NAME = POD["metadata"]["namespace"], POD["metadata"]["name"]
REF = pod_ref(POD)
DECIDED_REDIRECT = "failed to open netns"
TRY_AGAIN_LATER, INTERNAL = 11, 999


@pytest.fixture
def netns() -> str:
    return f"/var/run/netns/cnisdk-absent-{secrets.token_hex(4)}"


class Outcome:
    def __init__(self, error: CNIError, stderr: str, elapsed: float) -> None:
        self.error, self.stderr, self.elapsed = error, stderr, elapsed
        self.code = int(error.code)
        self.text = f"{error.msg} {error.details or ''}"


async def add(
    stub: KubeStub,
    tmp_path: Path,
    netns: str,
    capsys: pytest.CaptureFixture[str],
    pod: dict[str, Any] = POD,
    args: dict[str, str] | None = None,
    **fields: Any,
) -> Outcome:
    """ADD for ``pod``; it must fail. Checks what every failure must satisfy."""
    conf = plugin_conf(write_kubeconfig(tmp_path, stub.url), netns, plugin_log_level="debug")
    conf.update(fields)
    start = time.monotonic()
    result = await invoke(
        IstioRedirect,
        "ADD",
        conf,
        netns=netns,
        args=pod_args(pod) if args is None else args,
        container_id="c0ffee",
    )
    elapsed = time.monotonic() - start
    stderr = capsys.readouterr().err
    assert result.exit_code == 1, result.stdout  # never a skip (which prints prevResult)
    outcome = Outcome(result.error, stderr, elapsed)
    assert REF in outcome.text
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return outcome


def assert_not_decided(outcome: Outcome) -> None:
    assert DECIDED_REDIRECT not in outcome.text, outcome.text


async def test_control_a_good_answer_is_decided_as_redirect(
    stub: KubeStub, tmp_path: Path, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = await add(stub, tmp_path, netns, capsys)
    assert DECIDED_REDIRECT in outcome.text


# --------------------------------------------------------------------------- bodies


NOT_A_POD = (INTERNAL, 1)  # final: not retried
BROKEN_HTTP = (TRY_AGAIN_LATER, 2)  # retried: a proxy may recover


@pytest.mark.parametrize(
    ("answer", "message", "expected"),
    [
        (raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0"), "the body is empty", NOT_A_POD),
        (raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"hello"), "not JSON", NOT_A_POD),
        (raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3", b"\xff\xfe{"), "not JSON", NOT_A_POD),
        (raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2", b"[]"), "not an object", NOT_A_POD),
        (
            raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 24", b'{"kind":"Status","x":1} '),
            "its kind is 'Status'",
            NOT_A_POD,
        ),
        (
            raw_answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 200000", b"[" * 100_000 + b"]" * 100_000
            ),
            "nested too deeply",
            NOT_A_POD,
        ),
        (
            raw_answer(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 33",
                gzip.compress(b"{}", mtime=0)[:33],
            ),
            "gzip-encoded, which was not asked for",
            NOT_A_POD,
        ),
        (
            raw_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"zz-not-hex\r\n{}\r\n"),
            "broke the HTTP protocol",
            BROKEN_HTTP,
        ),
        (
            raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100", b'{"kind":'),
            "broke the HTTP protocol",
            BROKEN_HTTP,
        ),
        (raw_answer(b"HTTP/1.1 2OO OK"), "broke the HTTP protocol", BROKEN_HTTP),
        (raw_answer(b"garbage that is not HTTP at all"), "broke the HTTP protocol", BROKEN_HTTP),
    ],
    ids=[
        "empty",
        "text",
        "not-utf8",
        "array",
        "other-kind",
        "deep",
        "gzip",
        "chunked-garbage",
        "truncated",
        "bad-status-line",
        "not-http",
    ],
)
async def test_a_broken_answer_fails_clearly(
    stub: KubeStub,
    tmp_path: Path,
    netns: str,
    capsys: pytest.CaptureFixture[str],
    answer: Any,
    message: str,
    expected: tuple[int, int],
) -> None:
    code, requests = expected
    stub.responders[(NS, NAME)] = answer
    outcome = await add(stub, tmp_path, netns, capsys, kube_api_attempts=2, kube_api_backoff=0)
    assert message in outcome.text and outcome.code == code
    assert len(stub.requests) == requests
    if code == INTERNAL:
        assert "without a Pod object" in outcome.text
    else:
        assert "gave up after 2 attempts" in outcome.text


@pytest.mark.parametrize("announce", [64 << 20, None], ids=["announced", "chunked"])
async def test_a_huge_body_is_not_read_past_the_cap(
    stub: KubeStub,
    tmp_path: Path,
    netns: str,
    capsys: pytest.CaptureFixture[str],
    announce: int | None,
) -> None:
    stub.responders[(NS, NAME)] = endless_body(announce=announce)
    outcome = await add(stub, tmp_path, netns, capsys, kube_api_timeout=10.0)
    assert "larger than 4194304 bytes" in outcome.text and outcome.code == INTERNAL
    # An announced size over the cap is refused before reading; otherwise reading stops
    # soon after the cap (socket buffers hold what the server wrote ahead).
    assert stub.sent < 16 << 20
    assert outcome.elapsed < 10


async def test_a_slow_drip_is_bounded_by_the_per_call_timeout(
    stub: KubeStub, tmp_path: Path, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.responders[(NS, NAME)] = dripping(0.05)
    outcome = await add(
        stub,
        tmp_path,
        netns,
        capsys,
        kube_api_timeout=0.5,
        kube_api_attempts=2,
        kube_api_backoff=0,
    )
    assert "no complete answer" in outcome.text and "within 0.5 s" in outcome.text
    assert outcome.code == TRY_AGAIN_LATER and len(stub.requests) == 2
    assert outcome.elapsed < 0.5 * 2 + 2.0  # each attempt stopped at its timeout


async def test_a_redirect_to_another_host_is_not_followed(
    stub: KubeStub, tmp_path: Path, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with KubeStub(token=None) as elsewhere:
        elsewhere.add_pod(injected_pod())
        location = (
            f"{elsewhere.url.replace('127.0.0.1', 'localhost')}/api/v1/namespaces/{NS}/pods/{NAME}"
        )
        for code in (301, 302, 307, 308):
            stub.responders[(NS, NAME)] = raw_answer(
                f"HTTP/1.1 {code} Moved\r\nLocation: {location}\r\nContent-Length: 0".encode()
            )
            outcome = await add(stub, tmp_path, netns, capsys, kube_api_attempts=3)
            assert f"redirect ({code}), which is not followed" in outcome.text
            assert outcome.code == INTERNAL
            assert_not_decided(outcome)
        assert elsewhere.requests == [] and elsewhere.headers == []


# --------------------------------------------------------------------------- pod objects


def _mutated(change: Any) -> dict[str, Any]:
    pod = copy.deepcopy(POD)
    change(pod)
    return pod


def _proxy(pod: dict[str, Any]) -> dict[str, Any]:
    proxy: dict[str, Any] = pod["spec"]["containers"][1]
    return proxy


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda p: p["metadata"].__setitem__("annotations", ["sidecar.istio.io/status"]),
            "metadata.annotations",
        ),
        (lambda p: p["metadata"].__setitem__("annotations", "x"), "metadata.annotations"),
        (
            lambda p: p["metadata"]["annotations"].__setitem__(
                "traffic.sidecar.istio.io/excludeInboundPorts", 15020
            ),
            'metadata.annotations["traffic.sidecar.istio.io/excludeInboundPorts"]',
        ),
        (
            lambda p: p["metadata"]["labels"].__setitem__("sidecar.istio.io/inject", False),
            "metadata.labels",
        ),
        (lambda p: p["metadata"]["labels"].__setitem__("app", {"name": "x"}), "metadata.labels"),
        (lambda p: p["spec"].__setitem__("containers", {"istio-proxy": {}}), "spec.containers"),
        (lambda p: p["spec"].__setitem__("initContainers", "istio-init"), "spec.initContainers"),
        (lambda p: p["spec"]["containers"].append("istio-init"), "spec.containers[2]"),
        (lambda p: p["spec"]["containers"][0].__setitem__("name", 7), "spec.containers[0].name"),
        (
            lambda p: p["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", "9080"),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            lambda p: p["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", 9080.5),
            "containerPort",
        ),
        (lambda p: p["spec"]["containers"][0].__setitem__("ports", {"http": 80}), "ports"),
        (
            lambda p: _proxy(p).__setitem__("env", {"DISABLE_ENVOY": "true"}),
            "spec.containers[1].env",
        ),
        (lambda p: _proxy(p)["env"].append({"name": "ISTIO_DUAL_STACK", "value": True}), ".value"),
        (lambda p: _proxy(p).__setitem__("args", ["proxy", 1]), "spec.containers[1].args[1]"),
        (
            lambda p: _proxy(p)["securityContext"].__setitem__("runAsUser", "1337"),
            "securityContext.runAsUser",
        ),
        (
            lambda p: _proxy(p)["securityContext"].__setitem__("runAsGroup", True),
            "securityContext.runAsGroup",
        ),
        (lambda p: _proxy(p).__setitem__("securityContext", [1337]), "securityContext"),
        (lambda p: p.__setitem__("spec", []), "field spec "),
    ],
)
async def test_a_field_of_the_wrong_type_fails_add(
    stub: KubeStub,
    tmp_path: Path,
    netns: str,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    field: str,
) -> None:
    pod = _mutated(change)
    stub.add_pod(pod)
    outcome = await add(stub, tmp_path, netns, capsys, pod=pod)
    assert "cannot read the pod" in outcome.text and field in outcome.text
    assert outcome.code == INTERNAL
    assert_not_decided(outcome)


async def test_nulls_read_as_go_reads_them(
    stub: KubeStub, tmp_path: Path, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # null is Go's zero value, not a type error: this pod is still redirected.
    def nulls(pod: dict[str, Any]) -> None:
        pod["spec"]["initContainers"] = None
        pod["spec"]["containers"][0]["ports"] = None
        _proxy(pod)["env"].append({"name": "EMPTY", "value": None})
        pod["metadata"]["labels"]["app"] = None

    pod = _mutated(nulls)
    stub.add_pod(pod)
    assert DECIDED_REDIRECT in (await add(stub, tmp_path, netns, capsys, pod=pod)).text


# --------------------------------------------------------------------------- identity


def _served_as_requested(stub: KubeStub, obj: Any) -> None:
    body = json.dumps(obj).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    stub.responders[(NS, NAME)] = raw_answer(head.encode(), body)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p["metadata"].__setitem__("namespace", "other"), 'it is pod "other"/'),
        (lambda p: p["metadata"].__setitem__("name", "reviews-v2"), '/"reviews-v2"'),
        (lambda p: p["metadata"].__setitem__("uid", "0000-old"), 'its uid is "0000-old"'),
        (lambda p: p["metadata"].pop("uid"), "its uid is (none)"),
        (lambda p: p.pop("metadata"), "the object has no metadata"),
        (lambda p: p.__setitem__("metadata", None), "the object has no metadata"),
    ],
    ids=["namespace", "name", "uid", "no-uid", "no-metadata", "null-metadata"],
)
async def test_another_pod_in_the_answer_fails_add(
    stub: KubeStub,
    tmp_path: Path,
    netns: str,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    reason: str,
) -> None:
    # Every one of these would otherwise be decided; some (no metadata) as "skip".
    _served_as_requested(stub, _mutated(change))
    outcome = await add(stub, tmp_path, netns, capsys, kube_api_attempts=3)
    assert "answered with another pod" in outcome.text and reason in outcome.text
    assert "nothing is decided from it" in outcome.text
    assert outcome.code == TRY_AGAIN_LATER
    assert len(stub.requests) == 1  # the API's current view: not asked again
    assert_not_decided(outcome)


async def test_without_a_runtime_uid_name_and_namespace_still_decide(
    stub: KubeStub, tmp_path: Path, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {k: v for k, v in pod_args(POD).items() if k != "K8S_POD_UID"}
    _served_as_requested(stub, _mutated(lambda p: p["metadata"].__setitem__("uid", "any")))
    assert DECIDED_REDIRECT in (await add(stub, tmp_path, netns, capsys, args=args)).text
    _served_as_requested(stub, _mutated(lambda p: p["metadata"].__setitem__("name", "x")))
    outcome = await add(stub, tmp_path, netns, capsys, args=args)
    assert "answered with another pod" in outcome.text and outcome.code == TRY_AGAIN_LATER
