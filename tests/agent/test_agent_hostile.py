"""The agent under hostile clients: random bytes, truncated and oversized frames, deeply nested
and wrongly typed headers, stalled senders and many bad clients at once. Each bad connection
gets a bounded cost and at most a ``bad-request`` answer; the agent keeps serving, and good
requests sent meanwhile succeed."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from agent_kit import AgentProcess, chained_config, cni_env, run_plugin, write_shims

from cnisdk._agent_protocol import MAX_ENV, MAX_HEADER, MAX_STDIN, encode_frame, parse_env
from cnisdk._agent_protocol import request_health as health

READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def agent(sock_dir: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(sock_dir / "agent.sock", args=["--read-timeout", str(READ_TIMEOUT)])
    proc.wait_ready()
    yield proc
    assert proc.stop() == 0, proc.log()
    assert "Traceback" not in proc.log()


@pytest.fixture(scope="module")
def good(sock_dir: Path, agent: AgentProcess, compiled_shim: Path) -> list[Path]:
    """A Python and a compiled shim for passthrough, failing instead of falling back."""
    shims = []
    for kind, binary in (("python", None), ("compiled", compiled_shim)):
        bin_dir = sock_dir / f"bin-{kind}"
        write_shims(bin_dir, agent.socket_path, ["passthrough"], "fail", shim_binary=binary)
        shims.append(bin_dir / "passthrough")
    return shims


def good_add(shim: Path, container_id: str = "good") -> float:
    """One passthrough ADD through the agent; its wall time. Fails the test on any error."""
    started = time.monotonic()
    done = run_plugin(
        shim, cni_env("ADD", CNI_CONTAINERID=container_id), chained_config("passthrough")
    )
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ips"][0]["address"] == "10.1.2.3/24"
    return time.monotonic() - started


def exchange(agent: AgentProcess, data: bytes, *, close: bool = True) -> bytes:
    """Send raw bytes (then half-close), return everything the agent answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(READ_TIMEOUT + 10)
        sock.connect(str(agent.socket_path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def bad_request(answer: bytes) -> str:
    """The message of a version 2 ``bad-request`` answer."""
    size = int.from_bytes(answer[:4], "big")
    head = answer[4 : 4 + size].decode()
    status, _, message = head.partition(" ")
    assert status == "bad-request", head
    assert len(answer) == 4 + size  # nothing after a refusal
    return message


def assert_alive(agent: AgentProcess, pid: int) -> None:
    assert agent.proc.poll() is None, agent.log()
    assert health(agent.socket_path)["pid"] == pid


def v2_request(header: bytes, env: bytes = b"CNI_COMMAND=VERSION\0", stdin: bytes = b"") -> bytes:
    return encode_frame(header) + encode_frame(env) + encode_frame(stdin)


def test_random_bytes(agent: AgentProcess, good: list[Path]) -> None:
    pid = health(agent.socket_path)["pid"]
    rng = random.Random(20261203)
    for _ in range(40):
        size = rng.choice([0, 1, 3, 4, 5, 17, 300, 4096, 70000])
        data = rng.randbytes(size)
        if rng.random() < 0.5:
            # A plausible length prefix in front of the noise gets past the first check.
            data = encode_frame(data[: rng.randrange(size + 1)]) + data
        answer = exchange(agent, data)
        assert answer == b"" or bad_request(answer)
    assert_alive(agent, pid)
    good_add(good[0])


def test_truncated_frames(agent: AgentProcess) -> None:
    pid = health(agent.socket_path)["pid"]
    header = b'{"v":2,"op":"request","type":"passthrough"}'
    for data in (
        b"\x00\x00",  # half a length prefix
        (100).to_bytes(4, "big") + b"0123456789",  # a header cut short
        encode_frame(header) + (50).to_bytes(4, "big") + b"CNI_",  # an environment cut short
        encode_frame(header) + encode_frame(b"A=b\0") + (9).to_bytes(4, "big") + b"{",
        encode_frame(header) + encode_frame(b"A=b\0"),  # no stdin frame at all
    ):
        message = bad_request(exchange(agent, data))
        assert message == "the client closed the connection before a complete request"
    assert_alive(agent, pid)


@pytest.mark.parametrize(
    ("request_bytes", "what", "limit"),
    [
        (b"\xff\xff\xff\xff", "header", MAX_HEADER),
        (
            encode_frame(b'{"v":2,"op":"request","type":"passthrough"}') + b"\xff\xff\xff\xff",
            "environment",
            MAX_ENV,
        ),
        (
            encode_frame(b'{"v":2,"op":"request","type":"passthrough"}')
            + encode_frame(b"")
            + (MAX_STDIN + 1).to_bytes(4, "big"),
            "stdin",
            MAX_STDIN,
        ),
        (
            encode_frame(b'{"v":1,"op":"request","type":"passthrough","env":{}}')
            + (MAX_STDIN + 1).to_bytes(4, "big"),
            "stdin",
            MAX_STDIN,
        ),
    ],
    ids=["header", "environment", "stdin", "stdin-v1"],
)
def test_oversized_length_prefixes_are_refused_unread(
    agent: AgentProcess, request_bytes: bytes, what: str, limit: int
) -> None:
    started = time.monotonic()
    answer = exchange(agent, request_bytes, close=False)
    assert time.monotonic() - started < READ_TIMEOUT  # answered at once, nothing awaited
    size = int.from_bytes(request_bytes[-4:], "big")
    expected = f"{what} frame of {size} bytes exceeds the limit of {limit}"
    if what == "stdin" and b'"v":1' in request_bytes:
        head = json.loads(answer[4:])
        assert head == {"v": 1, "status": "bad-request", "error": expected}
    else:
        assert bad_request(answer) == expected


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_deeply_nested_headers(agent: AgentProcess, good: list[Path], depth: int) -> None:
    pid = health(agent.socket_path)["pid"]
    for header in (
        b"[" * depth + b"]" * depth,
        b'{"v":2,"op":"request","type":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
    ):
        message = bad_request(exchange(agent, v2_request(header)))
        if len(header) > MAX_HEADER:
            assert message.startswith("header frame of ")
        else:
            assert message in (
                "the header is nested too deeply",
                "the header is not a JSON object",
            )
    assert_alive(agent, pid)
    good_add(good[1])


WRONG_HEADERS = {
    '{"v":"2","op":"request","type":"t"}': "unsupported protocol version '2'",
    '{"v":2.0,"op":"request","type":"t"}': "unsupported protocol version 2.0",
    '{"v":true,"op":"request","type":"t"}': "unsupported protocol version True",
    '{"v":null,"op":"request","type":"t"}': "unsupported protocol version None",
    '{"v":[2],"op":"request","type":"t"}': "unsupported protocol version [2]",
    '{"op":"request","type":"t"}': "unsupported protocol version None",
    '{"v":2,"op":1,"type":"t"}': "unknown op 1",
    '{"v":2,"op":["request"],"type":"t"}': "unknown op ['request']",
    '{"v":2,"op":null}': "unknown op None",
    '{"v":2,"op":"request","type":1}': "no plugin type",
    '{"v":2,"op":"request","type":""}': "no plugin type",
    '{"v":2,"op":"request","type":{}}': "no plugin type",
    '{"v":2,"op":"request","type":"' + "x" * 300 + '"}': "plugin type too long",
    '{"v":2,"op":"request","type":"t","stdin_errno":"9"}': "stdin_errno must be an errno",
    '{"v":2,"op":"request","type":"t","stdin_errno":-1}': "stdin_errno must be an errno",
    '{"v":2,"op":"request","type":"t","stdin_errno":1.5}': "stdin_errno must be an errno",
    '{"v":2,"op":"request","type":"t","stdin_errno":true}': "stdin_errno must be an errno",
    '{"v":2,"op":"request","type":"t","stdin_errno":99999}': "stdin_errno must be an errno",
    '"just a string"': "the header is not a JSON object",
    '{"v":2,"op":"request","type":"t"} trailing': "the header is not JSON",
    '{"v":2,"op":"request","type":"\\ud800"}': "",  # lone surrogate: a type nobody serves
}


@pytest.mark.parametrize("header", sorted(WRONG_HEADERS))
def test_wrong_types_in_every_header_field(agent: AgentProcess, header: str) -> None:
    answer = exchange(agent, v2_request(header.encode()))
    expected = WRONG_HEADERS[header]
    if not expected:
        assert answer[4:].startswith(b"unserved plugin type")
        return
    assert bad_request(answer).startswith(expected)


def test_wrong_types_in_a_version_1_environment(agent: AgentProcess) -> None:
    for env in ("[]", '{"A":1}', '"A=1"', '{"A":null}'):
        header = f'{{"v":1,"op":"request","type":"passthrough","env":{env}}}'.encode()
        answer = exchange(agent, encode_frame(header) + encode_frame(b""))
        head = json.loads(answer[4:])
        assert head == {
            "v": 1,
            "status": "bad-request",
            "error": "env must be an object of strings",
        }


def test_environment_frames_decode_as_os_environ_does() -> None:
    raw = b"A=1\0A=2\0NO-EQUALS\0B=x=y\0C=\xff\xfe\0=lead\0\0"
    assert parse_env(raw) == {"A": "1", "B": "x=y", "C": "\udcff\udcfe", "": "lead"}


def test_slowloris_is_bounded_and_others_are_served(agent: AgentProcess, good: list[Path]) -> None:
    stalled = []
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(READ_TIMEOUT + 10)
        sock.connect(str(agent.socket_path))
        sock.sendall((64).to_bytes(4, "big") + b'{"v":2,')  # half a header, then silence
        stalled.append(sock)
    started = time.monotonic()
    try:
        for shim in good:
            assert good_add(shim, "beside-slowloris") < READ_TIMEOUT
        for sock in stalled:
            data = sock.recv(65536)
            assert bad_request(data) == f"the request was not complete within {READ_TIMEOUT:g} s"
        # Cut off by the read timeout: not earlier, and not much later.
        assert READ_TIMEOUT * 0.9 <= time.monotonic() - started < READ_TIMEOUT + 5
    finally:
        for sock in stalled:
            sock.close()


def test_many_concurrent_bad_clients_while_good_requests_succeed(
    agent: AgentProcess, good: list[Path]
) -> None:
    pid = health(agent.socket_path)["pid"]
    rng = random.Random(7)
    bad_inputs = [
        rng.randbytes(512),
        b"\xff\xff\xff\xff",
        v2_request(b"[" * 50_000 + b"]" * 50_000),
        v2_request(b'{"v":2,"op":"request","type":7}'),
        (80).to_bytes(4, "big") + b"{",  # stalls until the read timeout
    ]
    stop = threading.Event()
    errors: list[BaseException] = []

    def pester(data: bytes) -> None:
        while not stop.is_set():
            try:
                exchange(agent, data, close=data[:4] != (80).to_bytes(4, "big"))
            except OSError as exc:  # the agent must never stop answering
                errors.append(exc)
                return

    with ThreadPoolExecutor(40) as pool:
        pests = [pool.submit(pester, bad_inputs[i % len(bad_inputs)]) for i in range(20)]
        try:
            adds = [pool.submit(good_add, good[i % 2], f"busy-{i}") for i in range(20)]
            for add in adds:
                add.result(60)
        finally:
            stop.set()
        for pest in pests:
            pest.result(60)
    assert errors == []
    assert_alive(agent, pid)
