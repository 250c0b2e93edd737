"""Secrets never travel in messages: kubeconfig errors, API errors, HTTP errors, logs.

The token of each test is random, so finding it (or a piece of it) anywhere in an error,
its traceback or the plugin's log output can only mean it leaked.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from cnisdk_istio_redirect import IstioRedirect
from cnisdk_istio_redirect._kube import (
    KubeConfig,
    KubeConfigError,
    KubeError,
    get_pod,
    load_kubeconfig,
)
from cnisdk_istio_redirect._redact import REDACTED, display_url, scrub
from kube_stub import KubeStub, injected_pod, raw_answer
from netns_traffic import plugin_conf, pod_args, write_kubeconfig

from cnisdk.testing import invoke

POD = injected_pod()
NS, NAME = POD["metadata"]["namespace"], POD["metadata"]["name"]
# A service account token has this shape (header.claims.signature, base64url).
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1ZS0VZIn0."
    "eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0."
    "SGVyZUlzQVNpZ25hdHVyZVRoYXRMb29rc1JlYWw"
)


@pytest.fixture
def token() -> str:
    return f"tk{secrets.token_hex(20)}"


def leaks(secret: str, *texts: str) -> list[str]:
    """The texts holding ``secret`` or a 8-character piece of it."""
    pieces = {secret[i : i + 8] for i in range(max(len(secret) - 7, 1))}
    return [t for t in texts if any(p in t for p in pieces)]


def error_texts(exc: BaseException) -> tuple[str, ...]:
    """Everything a log could print of ``exc``: message, repr, traceback with its chain."""
    return str(exc), repr(exc), "".join(traceback.format_exception(exc))


# --------------------------------------------------------------------------- scrub


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Authorization"),
        ("map[Authorization:[Bearer abcdefgh] Accept:[x]]", "abcdefgh", "Accept"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz", "Authorization"),
        ("cookie=sessionid12345; path=/", "sessionid12345", "path"),
        ('"token": "hunter2hunter2"', "hunter2hunter2", "token"),
        ("password=correct-horse", "correct-horse", "password"),
        (f"the JWT {JWT} is bad", JWT[:20], "the JWT"),
        ("https://admin:pa55word@10.0.0.1:6443/api", "pa55word", "10.0.0.1:6443"),
        ("https://admin:pa55word@10.0.0.1:6443/api", "admin", "https://"),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY----- tail",
            "MHcCAQEEIBkg",
            "tail",
        ),
        ("key Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpL end", "Zm9vYmFy", "end"),
    ],
)
def test_scrub_removes_credential_shapes(text: str, secret: str, kept: str) -> None:
    out = scrub(text)
    assert secret not in out and kept in out and REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        'pods "reviews-v1" is forbidden: User "system:serviceaccount:istio-system:istio-cni"',
        "uid 6f1b1c1e-3a0e-4a53-9d6e-2a8f0c7b9e11 differs",
        "/var/run/secrets/kubernetes.io/serviceaccount/token does not exist",
        "/var/lib/rancher/k3s/agent/etc/Cluster1/kubeconfig-Production2024",
        "ip-10-0-1-23.eu-west-1.compute.internal:6443",
        "token file /etc/x does not exist",
    ],
)
def test_scrub_keeps_ordinary_text(text: str) -> None:
    assert scrub(text) == text


def test_scrub_removes_known_secrets_before_cutting(token: str) -> None:
    text = "x" * 290 + token + " and its url form " + token.replace("k", "%6B")
    out = scrub(text, [token], limit=300)
    assert len(out) <= 300 and not leaks(token, out)
    assert scrub(f"q={token[:2]}%2B{token[2:]}", [f"{token[:2]}+{token[2:]}"]) == f"q={REDACTED}"


def test_scrub_neutralises_control_characters() -> None:
    out = scrub('line\n{"level":"error","msg":"forged"}\r\x1b[2Jend\u2028x')
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\u2028" not in out


def test_display_url_drops_userinfo_and_query() -> None:
    assert (
        display_url("https://u:p4ss@[fd00::1]:6443/k8s?token=abc#f") == "https://[fd00::1]:6443/k8s"
    )
    assert display_url("http://10.0.0.1") == "http://10.0.0.1"


# --------------------------------------------------------------------------- kubeconfig


def kubeconfig_text(token: str, *, user: str | None = None, cluster: str = "") -> str:
    user_body = user if user is not None else f"token: {token}"
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: local\n"
        "  cluster:\n"
        "    server: https://10.96.0.1:443\n"
        f"{cluster}"
        "users:\n"
        "- name: istio-cni\n"
        "  user:\n"
        f"    {user_body}\n"
        "contexts:\n"
        "- name: c\n"
        "  context: {cluster: local, user: istio-cni}\n"
        "current-context: c\n"
    )


def load_error(tmp_path: Path, text: str | bytes, name: str = "kubeconfig") -> KubeConfigError:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(KubeConfigError) as err:
        load_kubeconfig(path)
    assert str(path) in str(err.value)  # names the file
    return err.value


@pytest.mark.parametrize(
    ("user_line", "where"),
    [
        ("token: {t}: trailing", "line 10, column"),  # mapping values are not allowed here
        ("token: !{t} x", "line 10, column"),  # unknown tag: the parser quotes it
        ('token: "{t}\\q"', "line 10, column"),  # bad escape in a quoted scalar
        ("token: [{t}", "line 11, column"),  # unterminated flow sequence
        ("token: x\n\t{t}", "line 11, column"),  # a tab cannot start a token
    ],
    ids=["mapping", "tag", "escape", "flow", "tab"],
)
def test_yaml_syntax_error_names_the_position_never_the_line(
    tmp_path: Path, token: str, user_line: str, where: str
) -> None:
    text = kubeconfig_text(token, user=user_line.format(t=token))
    with pytest.raises(yaml.YAMLError) as raw:
        yaml.safe_load(text)
    assert leaks(token, str(raw.value))  # the parser's own message quotes the secret
    err = load_error(tmp_path, text)
    assert "invalid YAML" in str(err) and where in str(err), err
    assert not leaks(token, *error_texts(err))


def test_json_syntax_error_names_the_position(tmp_path: Path, token: str) -> None:
    text = json.dumps({"users": [{"name": "u", "user": {"token": token}}]})[:-2] + ", oops}"
    err = load_error(tmp_path, text)
    assert "invalid JSON at line 1, column" in str(err)
    assert not leaks(token, *error_texts(err))


@pytest.mark.parametrize(
    "text",
    ["[" * 20_000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 1200)), '{"a":' * 20_000],
    ids=["yaml-flow", "yaml-block", "json"],
)
def test_nesting_too_deep_is_an_error(tmp_path: Path, text: str) -> None:
    err = load_error(tmp_path, text)
    assert "nested too deeply to be a kubeconfig" in str(err)


@pytest.mark.parametrize(
    "secret", [JWT, "AbCdEfGh0123456789IjKlMnOpQrStUvWxYz98"], ids=["jwt", "opaque"]
)
def test_a_token_pasted_into_token_file_is_not_shown(tmp_path: Path, secret: str) -> None:
    err = load_error(tmp_path, kubeconfig_text("", user=f"tokenFile: {secret}"))
    assert "token file" in str(err) and "does not exist" in str(err)
    assert not leaks(secret, *error_texts(err))


def test_token_file_that_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "token-fifo"
    os.mkfifo(fifo)
    (tmp_path / "token-dir").mkdir()
    errors: list[BaseException] = []
    for target in ("token-fifo", "token-dir"):
        text = kubeconfig_text("", user=f"tokenFile: {target}")

        def load(text: str = text) -> None:
            try:
                load_error(tmp_path, text)
            except BaseException as exc:
                errors.append(exc)

        # A FIFO without a writer blocks a plain open() forever; this must not.
        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), f"reading {target} blocked"
        assert errors == []
    err = load_error(tmp_path, kubeconfig_text("", user="tokenFile: token-fifo"))
    assert "is not a regular file" in str(err)


def test_token_file_that_is_not_text_or_too_large(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe" + secrets.token_bytes(30))
    err = load_error(tmp_path, kubeconfig_text("", user="tokenFile: bin"))
    assert "is not UTF-8 text" in str(err)
    (tmp_path / "big").write_bytes(b"a" * (2 << 20))
    err = load_error(tmp_path, kubeconfig_text("", user="tokenFile: big"))
    assert "larger than" in str(err)


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ("    certificate-authority-data: {b64}%%%\n", "not base64-encoded PEM"),
        ("    certificate-authority-data: {pem_b64}\n", "not a valid PEM certificate"),
    ],
)
def test_bad_ca_data_names_the_field_not_the_data(
    tmp_path: Path, token: str, cluster: str, message: str
) -> None:
    key_pem = f"-----BEGIN PRIVATE KEY-----\n{token}\n-----END PRIVATE KEY-----\n"
    b64 = base64.b64encode(token.encode()).decode()
    pem_b64 = base64.b64encode(key_pem.encode()).decode()
    err = load_error(
        tmp_path, kubeconfig_text("t0ken", cluster=cluster.format(b64=b64, pem_b64=pem_b64))
    )
    assert message in str(err) and "certificate-authority-data" in str(err)
    assert not leaks(token, *error_texts(err)) and not leaks(b64, *error_texts(err))


def test_a_ca_file_holding_a_key_is_named_not_quoted(tmp_path: Path, token: str) -> None:
    (tmp_path / "ca.pem").write_text(
        f"-----BEGIN PRIVATE KEY-----\n{token}\n-----END PRIVATE KEY-----\n"
    )
    err = load_error(
        tmp_path, kubeconfig_text("t0ken", cluster="    certificate-authority: ca.pem\n")
    )
    assert "certificate-authority file" in str(err) and "ca.pem" in str(err)
    assert not leaks(token, *error_texts(err))


def test_server_url_with_credentials_is_refused_unquoted(tmp_path: Path) -> None:
    text = kubeconfig_text("t0ken").replace(
        "https://10.96.0.1:443", "https://admin:Hunter2Hunter2@10.96.0.1:443"
    )
    err = load_error(tmp_path, text)
    assert "carries credentials" in str(err)
    assert not leaks("Hunter2Hunter2", *error_texts(err))


def test_a_token_in_the_server_field_is_not_shown(tmp_path: Path) -> None:
    err = load_error(tmp_path, kubeconfig_text("t0ken").replace("https://10.96.0.1:443", JWT))
    assert "is not an http(s)://host URL" in str(err)
    assert not leaks(JWT, *error_texts(err))


def test_unsupported_client_key_is_named_not_quoted(tmp_path: Path, token: str) -> None:
    data = base64.b64encode(f"-----BEGIN PRIVATE KEY-----\n{token}\n".encode()).decode()
    user = f"client-certificate-data: {data}\n    client-key-data: {data}"
    err = load_error(tmp_path, kubeconfig_text("", user=user))
    assert "client-certificate-data" in str(err) and "not supported" in str(err)
    assert not leaks(data, *error_texts(err))


# --------------------------------------------------------------------------- API answers


@pytest.fixture
def token_stub(token: str) -> Iterator[KubeStub]:
    with KubeStub(token=token) as server:
        server.add_pod(injected_pod())
        yield server


def fetch_error(config: KubeConfig, attempts: int = 1) -> KubeError:
    async def main() -> None:
        await get_pod(config, NS, NAME, timeout=2.0, attempts=attempts, backoff=0)

    with pytest.raises(KubeError) as err:
        anyio.run(main)
    return err.value


@pytest.mark.parametrize("code", [400, 401, 403, 404, 429, 500, 503])
def test_an_api_error_echoing_the_headers_does_not_leak_the_token(
    token_stub: KubeStub, token: str, code: int
) -> None:
    token_stub.echo_status = code
    err = fetch_error(KubeConfig(server=token_stub.url, token=token), attempts=2)
    assert str(code) in str(err)
    assert not leaks(token, *error_texts(err)), str(err)
    if code != 401:  # the rest of the server's message is still shown
        assert "request rejected by the gateway" in str(err)
    else:
        assert "rejected" not in str(err)


def test_a_long_echo_cannot_leave_half_a_token(token_stub: KubeStub, token: str) -> None:
    # The token lands right where the message is cut.
    for pad in range(250, 300, 7):
        message = "x" * pad + f" {token}"
        body = json.dumps({"kind": "Status", "code": 500, "message": message}).encode()
        head = f"HTTP/1.1 500 Internal Server Error\r\nContent-Length: {len(body)}"
        token_stub.responders[(NS, NAME)] = raw_answer(head.encode(), body)
        err = fetch_error(KubeConfig(server=token_stub.url, token=token))
        assert not leaks(token, str(err)), str(err)


def test_a_text_error_body_echoing_the_token_is_scrubbed(token_stub: KubeStub, token: str) -> None:
    body = f"<html>bad gateway; you sent Authorization: Bearer {token}</html>".encode()
    head = f"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {len(body)}"
    token_stub.responders[(NS, NAME)] = raw_answer(head.encode(), body)
    err = fetch_error(KubeConfig(server=token_stub.url, token=token))
    assert "502" in str(err) and "bad gateway" in str(err)
    assert not leaks(token, *error_texts(err))


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nbroken header Authorization: Bearer {t}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{t}",
        b"HTTP/1.1 2OO {t}",
    ],
    ids=["header-line", "chunk-header", "status-line"],
)
def test_an_http_library_error_quoting_the_answer_is_scrubbed(
    token_stub: KubeStub, token: str, head: bytes
) -> None:
    token_stub.responders[(NS, NAME)] = raw_answer(head.replace(b"{t}", token.encode()))
    err = fetch_error(KubeConfig(server=token_stub.url, token=token))
    assert "broke the HTTP protocol" in str(err)
    assert not leaks(token, *error_texts(err)), str(err)


def test_a_server_url_with_userinfo_is_never_shown() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = fetch_error(KubeConfig(server=f"http://admin:Pa55w0rdPa55w0rd@127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in str(err) and "cannot reach" in str(err)
    assert not leaks("Pa55w0rdPa55w0rd", *error_texts(err))


# --------------------------------------------------------------------------- through the plugin


async def run_add(conf: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    netns = f"/var/run/netns/cnisdk-absent-{secrets.token_hex(4)}"
    result = await invoke(
        IstioRedirect, "ADD", conf, netns=netns, args=pod_args(POD), container_id="c0ffee"
    )
    captured = capsys.readouterr()
    return result.exit_code, result.stdout.decode(), captured.err + captured.out


@pytest.mark.anyio
async def test_plugin_output_and_log_hold_no_kubeconfig_secret(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text(token, user=f"token: {token}: broken"))
    conf = plugin_conf(str(path), "/x", plugin_log_level="debug")
    code, stdout, logs = await run_add(conf, capsys)
    assert code == 1 and "invalid YAML at line 10" in stdout and str(path) in stdout
    assert not leaks(token, stdout, logs), (stdout, logs)


@pytest.mark.anyio
@pytest.mark.parametrize("code", [401, 403, 500])
async def test_plugin_output_and_log_hold_no_token_echoed_by_the_api(
    token_stub: KubeStub,
    tmp_path: Path,
    token: str,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    token_stub.echo_status = code
    conf = plugin_conf(
        write_kubeconfig(tmp_path, token_stub.url, token=token),
        "/x",
        plugin_log_level="debug",
        kube_api_attempts=2,
        kube_api_backoff=0,
    )
    exit_code, stdout, logs = await run_add(conf, capsys)
    assert exit_code == 1 and str(code) in stdout
    assert token_stub.headers and token_stub.headers[0]["Authorization"] == f"Bearer {token}"
    assert not leaks(token, stdout, logs), (stdout, logs)
