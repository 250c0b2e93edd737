"""The HTTP health endpoint the agent and the installer serve probes from."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from cnisdk._health import MAX_HEAD_BYTES, Answer, HealthServer, answer_request


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "head, status",
    [
        (b"GET /readyz HTTP/1.1\r\nHost: x", 200),
        (b"GET /readyz?verbose=1 HTTP/1.1", 200),
        (b"HEAD /readyz HTTP/1.0", 200),
        (b"GET /other HTTP/1.1", 404),
        (b"POST /readyz HTTP/1.1", 405),
        (b"GET /readyz", 400),
        (b"\x00\xff garbage", 400),
        (b"", 400),
    ],
)
def test_answers(head: bytes, status: int) -> None:
    response = answer_request(head, {"/readyz": lambda: Answer(True, b"ok\n")})
    assert status_of(response) == status
    assert b"\r\nConnection: close\r\n" in response
    if head.startswith(b"HEAD"):
        assert response.endswith(b"\r\n\r\n")


def test_unhealthy_is_503_with_the_routes_body() -> None:
    response = answer_request(
        b"GET /healthz HTTP/1.1", {"/healthz": lambda: Answer(False, b"{}", "application/json")}
    )
    assert status_of(response) == 503
    assert b"Content-Type: application/json" in response and response.endswith(b"\r\n\r\n{}")


def exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


State = dict[str, bool]


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, State]]:
    state = {"ready": False}
    health = HealthServer(
        ("127.0.0.1", 0),
        {"/readyz": lambda: Answer(state["ready"], b"x\n")},
        read_timeout=0.5,
        max_connections=2,
    )
    yield health, state
    health.close()


def test_serves_from_its_own_thread(served: tuple[HealthServer, State]) -> None:
    server, state = served
    assert status_of(exchange(server.port, b"GET /readyz HTTP/1.1\r\n\r\n")) == 503
    state["ready"] = True
    assert status_of(exchange(server.port, b"GET /readyz HTTP/1.1\r\n\r\n")) == 200


def test_oversized_head_is_431(served: tuple[HealthServer, State]) -> None:
    server, _ = served
    answer = exchange(server.port, b"GET /readyz HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES)
    assert status_of(answer) == 431


def test_connections_over_the_limit_are_closed_unanswered() -> None:
    routes = {"/readyz": lambda: Answer(True, b"x\n")}
    health = HealthServer(("127.0.0.1", 0), routes, read_timeout=60, max_connections=2)
    idle = [socket.create_connection(("127.0.0.1", health.port)) for _ in range(2)]
    try:
        # Connections are taken in order, so the two idle ones hold both places.
        assert exchange(health.port, b"GET /readyz HTTP/1.1\r\n\r\n") == b""
    finally:
        for sock in idle:
            sock.close()
        health.close()


def test_a_client_that_sends_nothing_is_dropped(served: tuple[HealthServer, State]) -> None:
    server, _ = served  # read timeout 0.5 s
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        idle.settimeout(30)
        assert idle.recv(100) == b""  # closed, unanswered
    assert status_of(exchange(server.port, b"GET /readyz HTTP/1.1\r\n\r\n")) == 503


def test_close_ends_the_thread_and_frees_the_port() -> None:
    before = set(threading.enumerate())
    health = HealthServer(("127.0.0.1", 0), {})
    port = health.port
    health.close()
    assert set(threading.enumerate()) <= before
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing listens there any more


def test_bind_failure_is_an_oserror_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            HealthServer(taken.getsockname(), {})
    assert set(threading.enumerate()) <= before
