"""The pod lookup against a Kubernetes API stand-in over real HTTP(S), and config loading."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from cnisdk_istio_redirect._kube import (
    KubeConfig,
    KubeConfigError,
    KubeError,
    PodIdentityError,
    get_pod,
    load_incluster_config,
    load_kubeconfig,
    retry_waits,
)
from kube_stub import KubeStub, TLSFiles, injected_pod, make_tls_files

NS, NAME = "bookinfo", "reviews-v1-5b9d6c7f4-x8k2p"
REF = f"{NS}/{NAME}"
UID = injected_pod()["metadata"]["uid"]
TOKEN = "good-token"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_stub(tls: TLSFiles) -> Iterator[KubeStub]:
    with KubeStub(token=TOKEN, tls=tls) as server:
        server.add_pod(injected_pod())
        yield server


def fetch(
    config: KubeConfig,
    namespace: str = NS,
    name: str = NAME,
    *,
    timeout: float = 2.0,
    attempts: int = 3,
    backoff: float = 0.01,
    uid: str = "",
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        return await get_pod(
            config,
            namespace,
            name,
            timeout=timeout,
            attempts=attempts,
            backoff=backoff,
            uid=uid,
        )

    return anyio.run(main)


def fetch_error(config: KubeConfig, **kwargs: Any) -> KubeError:
    with pytest.raises(KubeError) as err:
        fetch(config, **kwargs)
    assert REF in str(err.value)
    assert err.value.pod == REF
    return err.value


# --------------------------------------------------------------------------- HTTP


def test_get_pod_ok(stub: KubeStub) -> None:
    pod = fetch(KubeConfig(server=stub.url, token=TOKEN))
    assert pod["metadata"]["name"] == NAME
    assert pod["spec"]["containers"][1]["name"] == "istio-proxy"
    assert stub.requests == [f"/api/v1/namespaces/{NS}/pods/{NAME}"]


def test_server_path_prefix_is_kept(stub: KubeStub) -> None:
    err = fetch_error(KubeConfig(server=stub.url + "/k8s/clusters/c-1", token=TOKEN))
    assert err.status_code == 404
    assert stub.requests == [f"/k8s/clusters/c-1/api/v1/namespaces/{NS}/pods/{NAME}"]


@pytest.mark.parametrize("token", ["expired-token", None])
def test_401_is_not_retried(stub: KubeStub, token: str | None) -> None:
    err = fetch_error(KubeConfig(server=stub.url, token=token, source="/k/config"))
    assert err.status_code == 401 and err.attempts == 1 and not err.retryable
    assert "invalid or expired" in str(err) and "/k/config" in str(err)
    assert len(stub.requests) == 1


def test_404_unknown_pod(stub: KubeStub) -> None:
    with pytest.raises(KubeError) as err:
        fetch(KubeConfig(server=stub.url, token=TOKEN), NS, "gone")
    assert err.value.status_code == 404
    assert "bookinfo/gone" in str(err.value) and "not found" in str(err.value)
    assert len(stub.requests) == 1


def test_403_rbac(stub: KubeStub) -> None:
    stub.forbidden_namespaces.add(NS)
    err = fetch_error(KubeConfig(server=stub.url, token=TOKEN))
    assert err.status_code == 403 and err.attempts == 1
    assert "RBAC" in str(err) and "'get' on 'pods'" in str(err)
    assert "cannot get resource" in str(err)  # the API server's own message
    assert len(stub.requests) == 1


def test_5xx_then_success(stub: KubeStub) -> None:
    stub.failures[(NS, NAME)] = [500, 503]
    pod = fetch(KubeConfig(server=stub.url, token=TOKEN), attempts=3)
    assert pod["metadata"]["namespace"] == NS
    assert len(stub.requests) == 3


def test_5xx_gives_up_after_attempts(stub: KubeStub) -> None:
    stub.failures[(NS, NAME)] = [500, 500, 503, 500]
    err = fetch_error(KubeConfig(server=stub.url, token=TOKEN), attempts=3)
    assert err.status_code == 503 and err.attempts == 3
    assert "gave up after 3 attempts" in str(err) and "injected failure 503" in str(err)
    assert len(stub.requests) == 3


def test_429_is_retried(stub: KubeStub) -> None:
    stub.failures[(NS, NAME)] = [429]
    assert fetch(KubeConfig(server=stub.url, token=TOKEN), attempts=2)["kind"] == "Pod"
    assert len(stub.requests) == 2


@pytest.mark.parametrize("attempts", [1, 3])
def test_slow_server_times_out_per_attempt(stub: KubeStub, attempts: int) -> None:
    stub.delay = 5.0
    start = time.monotonic()
    err = fetch_error(
        KubeConfig(server=stub.url, token=TOKEN), timeout=0.15, attempts=attempts, backoff=0.01
    )
    elapsed = time.monotonic() - start
    assert err.status_code is None and err.attempts == attempts
    assert "within 0.15 s" in str(err)
    assert elapsed < 0.15 * attempts + 1.0
    assert len(stub.requests) == attempts


def test_connection_refused_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = fetch_error(KubeConfig(server=f"http://127.0.0.1:{port}"), attempts=2)
    assert err.attempts == 2 and "cannot reach" in str(err) and "gave up after 2" in str(err)


def test_200_without_a_pod(stub: KubeStub) -> None:
    stub.pods[(NS, NAME)] = {"kind": "Status", "status": "Success"}
    err = fetch_error(KubeConfig(server=stub.url, token=TOKEN))
    assert "without a Pod" in str(err) and len(stub.requests) == 1


# --------------------------------------------------------------------------- backoff


def test_retry_waits_double_up_to_a_cap() -> None:
    assert retry_waits(0.5, 1) == []
    assert retry_waits(0.5, 5) == [0.5, 1.0, 2.0, 4.0]
    assert retry_waits(0.5, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_waits(0, 3) == [0, 0]
    assert retry_waits(25, 3) == [25, 25]  # a first wait over the cap is kept as given


@pytest.mark.parametrize(
    ("attempts", "backoff", "waits"),
    [(5, 0.5, [0.5, 1.0, 2.0, 4.0]), (3, 2.0, [2.0, 4.0]), (1, 0.5, [])],
)
def test_get_pod_waits_double_between_attempts(
    stub: KubeStub, attempts: int, backoff: float, waits: list[float]
) -> None:
    stub.failures[(NS, NAME)] = [503] * attempts
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        with pytest.raises(KubeError) as err:
            await get_pod(
                KubeConfig(server=stub.url, token=TOKEN),
                NS,
                NAME,
                timeout=2.0,
                attempts=attempts,
                backoff=backoff,
                sleep=record,
            )
        assert err.value.attempts == attempts

    anyio.run(main)
    assert slept == waits
    assert len(stub.requests) == attempts


def test_get_pod_does_not_wait_after_a_final_error(stub: KubeStub) -> None:
    stub.failures[(NS, NAME)] = [503, 404]
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        with pytest.raises(KubeError, match="404"):
            await get_pod(
                KubeConfig(server=stub.url, token=TOKEN),
                NS,
                NAME,
                timeout=2.0,
                attempts=5,
                backoff=0.5,
                sleep=record,
            )

    anyio.run(main)
    assert slept == [0.5]


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(namespace="other"), 'it is pod "other"/"reviews-v1'),
        (lambda m: m.update(name="other"), 'it is pod "bookinfo"/"other"'),
        (lambda m: m.update(uid="old-uid"), 'its uid is "old-uid", the runtime\'s K8S_POD_UID is'),
        (lambda m: m.pop("uid"), "its uid is (none)"),
        (lambda m: m.clear(), "it is pod (none)/(none)"),
    ],
)
def test_an_answer_for_another_pod_is_refused(stub: KubeStub, change: Any, reason: str) -> None:
    served = injected_pod()
    change(served["metadata"])
    stub.pods[(NS, NAME)] = served
    with pytest.raises(PodIdentityError) as err:
        fetch(KubeConfig(server=stub.url, token=TOKEN), uid=UID, attempts=3)
    assert reason in str(err.value) and REF in str(err.value)
    assert err.value.retryable and err.value.attempts == 1 and err.value.status_code == 200
    assert len(stub.requests) == 1


def test_an_answer_without_metadata_is_refused(stub: KubeStub) -> None:
    stub.pods[(NS, NAME)] = {"kind": "Pod", "spec": injected_pod()["spec"]}
    with pytest.raises(PodIdentityError, match="the object has no metadata"):
        fetch(KubeConfig(server=stub.url, token=TOKEN))


def test_uid_is_checked_only_when_the_runtime_gives_one(stub: KubeStub) -> None:
    config = KubeConfig(server=stub.url, token=TOKEN)
    assert fetch(config, uid=UID)["metadata"]["uid"] == UID
    assert fetch(config, uid="")["metadata"]["uid"] == UID


def test_argument_checks() -> None:
    with pytest.raises(ValueError):
        fetch(KubeConfig(server="http://127.0.0.1:1"), "", NAME)
    with pytest.raises(ValueError):
        fetch(KubeConfig(server="http://127.0.0.1:1"), attempts=0)


# --------------------------------------------------------------------------- HTTPS


def test_https_with_ca_data(tls_stub: KubeStub, tls: TLSFiles) -> None:
    assert tls_stub.url.startswith("https://127.0.0.1:")
    pod = fetch(KubeConfig(server=tls_stub.url, token=TOKEN, ca_pem=tls.ca_pem))
    assert pod["metadata"]["name"] == NAME


def test_https_wrong_ca_fails_without_retry(tls_stub: KubeStub, tls: TLSFiles) -> None:
    config = KubeConfig(server=tls_stub.url, token=TOKEN, ca_pem=tls.wrong_ca_pem, source="kc")
    err = fetch_error(config, attempts=3)
    assert "TLS verification" in str(err) and "certificate authority in kc" in str(err)
    assert err.attempts == 1 and not err.retryable
    assert tls_stub.requests == []


def test_https_system_store_does_not_trust_test_ca(tls_stub: KubeStub) -> None:
    err = fetch_error(KubeConfig(server=tls_stub.url, token=TOKEN))
    assert "TLS verification" in str(err)


def test_https_insecure_skip_verify(tls_stub: KubeStub) -> None:
    config = KubeConfig(server=tls_stub.url, token=TOKEN, insecure_skip_tls_verify=True)
    assert fetch(config)["kind"] == "Pod"


def test_https_to_plain_http_port(stub: KubeStub) -> None:
    config = KubeConfig(server=stub.url.replace("http:", "https:"), token=TOKEN)
    err = fetch_error(config, attempts=3)
    assert "TLS handshake" in str(err) and err.attempts == 1


def test_kubeconfig_end_to_end(tls_stub: KubeStub, tls: TLSFiles, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, server=tls_stub.url, ca_data=tls.ca_pem, token=TOKEN)
    assert fetch(load_kubeconfig(path))["metadata"]["namespace"] == NS


# --------------------------------------------------------------------------- kubeconfig


def kubeconfig_doc(
    *,
    server: str = "https://10.96.0.1:443",
    ca_data: str | None = None,
    cluster_extra: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca_data is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data.encode()).decode()
    cluster.update(cluster_extra or {})
    user_body = dict(user or {})
    if token is not None:
        user_body["token"] = token
    # The shape Istio's install-cni writes.
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "istio-cni", "user": user_body}],
        "contexts": [
            {"name": "istio-cni-context", "context": {"cluster": "local", "user": "istio-cni"}},
            {"name": "other", "context": {"cluster": "local"}},
        ],
        "current-context": "istio-cni-context",
        "preferences": {},
    }


def write_kubeconfig(tmp_path: Path, *, as_json: bool = False, **kwargs: Any) -> Path:
    doc = kubeconfig_doc(**kwargs)
    path = tmp_path / ("kubeconfig.json" if as_json else "istio-cni-kubeconfig")
    path.write_text(json.dumps(doc, indent=2) if as_json else yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_kubeconfig_token_and_ca_data(tmp_path: Path, tls: TLSFiles, as_json: bool) -> None:
    path = write_kubeconfig(tmp_path, as_json=as_json, ca_data=tls.ca_pem, token="s3cr3t\n")
    config = load_kubeconfig(path)
    assert config.server == "https://10.96.0.1:443"
    assert config.token == "s3cr3t"
    assert config.ca_pem == tls.ca_pem
    assert not config.insecure_skip_tls_verify
    assert config.source == str(path)
    assert "s3cr3t" not in repr(config)


def test_kubeconfig_token_file_and_ca_file_relative(tmp_path: Path, tls: TLSFiles) -> None:
    (tmp_path / "token").write_text("from-file\n")
    (tmp_path / "ca.pem").write_text(tls.ca_pem)
    path = write_kubeconfig(
        tmp_path,
        cluster_extra={"certificate-authority": "ca.pem"},
        user={"tokenFile": "token"},
        token="inline",
    )
    config = load_kubeconfig(path)
    assert config.token == "from-file"  # tokenFile wins, as in client-go
    assert config.ca_pem == tls.ca_pem


def test_kubeconfig_insecure_and_http(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, cluster_extra={"insecure-skip-tls-verify": True})
    config = load_kubeconfig(path)
    assert config.insecure_skip_tls_verify and config.token is None and config.ca_pem is None
    path = write_kubeconfig(tmp_path, server="http://127.0.0.1:8080/")
    assert load_kubeconfig(path).server == "http://127.0.0.1:8080"


def test_kubeconfig_context_override(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, token="tok")
    assert load_kubeconfig(path).token == "tok"
    assert load_kubeconfig(path, context="other").token is None


def _bad(tmp_path: Path, mutate: Any) -> Path:
    doc = kubeconfig_doc(token="tok")
    mutate(doc)
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(doc))
    return path


def _set_cluster(key: str, value: Any) -> Any:
    return lambda d: d["clusters"][0]["cluster"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("current-context"), "no current-context"),
        (lambda d: d.__setitem__("current-context", "nope"), "context 'nope' not found"),
        (lambda d: d["contexts"][0]["context"].__setitem__("cluster", "x"), "cluster 'x'"),
        (lambda d: d["contexts"][0]["context"].__setitem__("user", "x"), "user 'x' not found"),
        (lambda d: d.pop("clusters"), "clusters is missing"),
        (_set_cluster("server", "ftp://host"), "not an http(s)://host URL"),
        (_set_cluster("server", ""), "no server URL"),
        (_set_cluster("certificate-authority-data", "%%%"), "not base64"),
        (
            _set_cluster("certificate-authority-data", base64.b64encode(b"hello").decode()),
            "not a valid PEM",
        ),
        (_set_cluster("certificate-authority", "missing.pem"), "does not exist"),
        (_set_cluster("insecure-skip-tls-verify", True), None),  # valid: insecure alone
        (
            lambda d: d["users"][0].__setitem__("user", {"tokenFile": "missing-token"}),
            "token file",
        ),
        (
            lambda d: d["users"][0].__setitem__("user", {"client-certificate-data": "x"}),
            "not supported",
        ),
        (
            lambda d: d["users"][0].__setitem__("user", {"exec": {"command": "aws"}}),
            "exec, which is not supported",
        ),
    ],
)
def test_kubeconfig_errors(tmp_path: Path, mutate: Any, message: str | None) -> None:
    path = _bad(tmp_path, mutate)
    if message is None:
        load_kubeconfig(path)
        return
    with pytest.raises(KubeConfigError) as err:
        load_kubeconfig(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_kubeconfig_ca_and_insecure_conflict(tmp_path: Path, tls: TLSFiles) -> None:
    path = write_kubeconfig(
        tmp_path, ca_data=tls.ca_pem, cluster_extra={"insecure-skip-tls-verify": True}
    )
    with pytest.raises(KubeConfigError, match="mutually exclusive"):
        load_kubeconfig(path)


def test_kubeconfig_empty_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    path = write_kubeconfig(tmp_path, user={"tokenFile": "token"})
    with pytest.raises(KubeConfigError, match="is empty"):
        load_kubeconfig(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("clusters: [", "invalid YAML"), ("{not json", "invalid JSON"), ("- a\n- b\n", "mapping")],
)
def test_kubeconfig_unparsable(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(KubeConfigError, match=message):
        load_kubeconfig(path)


def test_kubeconfig_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="does not exist"):
        load_kubeconfig(tmp_path / "nope")


# --------------------------------------------------------------------------- in-cluster


def sa_dir(tmp_path: Path, tls: TLSFiles, *, token: str | None = "sa-token\n") -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    if token is not None:
        (directory / "token").write_text(token)
    (directory / "ca.crt").write_text(tls.ca_pem)
    return directory


def test_incluster(tmp_path: Path, tls: TLSFiles) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_incluster_config(service_account_dir=sa_dir(tmp_path, tls), environ=env)
    assert config.server == "https://10.96.0.1:443"
    assert config.token == "sa-token" and config.ca_pem == tls.ca_pem
    assert config.source == "in-cluster"


def test_incluster_ipv6(tmp_path: Path, tls: TLSFiles) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_incluster_config(service_account_dir=sa_dir(tmp_path, tls), environ=env)
    assert config.server == "https://[fd00:10:96::1]:443"


def test_incluster_against_stub(tls_stub: KubeStub, tls: TLSFiles, tmp_path: Path) -> None:
    port = tls_stub.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    config = load_incluster_config(
        service_account_dir=sa_dir(tmp_path, tls, token=TOKEN), environ=env
    )
    assert fetch(config)["metadata"]["name"] == NAME


def test_incluster_errors(tmp_path: Path, tls: TLSFiles) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_incluster_config(service_account_dir=tmp_path, environ={})
    with pytest.raises(KubeConfigError, match=r"token file .* does not exist"):
        load_incluster_config(service_account_dir=sa_dir(tmp_path, tls, token=None), environ=env)
    with pytest.raises(KubeConfigError, match=r"CA file .* does not exist"):
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "token").write_text("t")
        load_incluster_config(service_account_dir=empty, environ=env)
