"""A small HTTP endpoint for health and readiness probes, as kubelet's ``httpGet`` asks them.

``cnisdk agent --health`` serves ``/healthz`` with it, ``cnisdk install --watch
--ready-address`` serves ``/readyz`` and ``/healthz``. It speaks only what a probe needs:
``GET`` or ``HEAD`` of a known path answers 200 (healthy) or 503 with a short body; an unknown
path is 404, another method 405; every answer closes the connection.

It runs on the same bytes from anyone who can reach the port, so every cost is bounded: the
request head is read within ``read_timeout`` seconds and up to :data:`MAX_HEAD_BYTES` (431
beyond), and at most ``max_connections`` are served at once (more are closed unanswered).

:class:`HealthListener` serves from an anyio task (the agent); :class:`HealthServer` runs one
in a thread of its own for a program that is not async (the installer's watch loop).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import anyio
import anyio.abc
import anyio.from_thread

__all__ = ["MAX_HEAD_BYTES", "Answer", "HealthListener", "HealthServer", "Route"]

MAX_HEAD_BYTES = 8192
"""The largest request head read (request line and headers)."""


@dataclass(frozen=True)
class Answer:
    """What a probe gets: 200 when ``ok``, else 503, with ``body``."""

    ok: bool
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Answer]
"""Computes the answer for one path, on the serving thread; it must not block."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(status: int, body: bytes, content_type: str, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + body


def answer_request(head: bytes, routes: Mapping[str, Route]) -> bytes:
    """The response bytes for one request head (request line and headers)."""
    parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response(400, b"bad request\n", "text/plain", False)
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    route = routes.get(target.decode("ascii", "replace"))
    if route is None:
        return _response(404, b"not found\n", "text/plain", method == b"HEAD")
    if method not in (b"GET", b"HEAD"):
        return _response(405, b"method not allowed\n", "text/plain", False)
    answer = route()
    status = 200 if answer.ok else 503
    return _response(status, answer.body, answer.content_type, method == b"HEAD")


class HealthListener:
    """A bound health endpoint; :meth:`serve` answers until cancelled."""

    def __init__(
        self,
        listener: anyio.abc.Listener[anyio.abc.SocketStream],
        routes: Mapping[str, Route],
        *,
        read_timeout: float,
        max_connections: int,
    ) -> None:
        self._listener = listener
        self._routes = dict(routes)
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._active = 0

    @classmethod
    async def bind(
        cls,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        *,
        read_timeout: float = 5.0,
        max_connections: int = 32,
    ) -> HealthListener:
        """Listen on ``address`` (port 0: any free port, see :attr:`port`).

        :raises OSError: the address cannot be bound.
        """
        listener = await anyio.create_tcp_listener(local_host=address[0], local_port=address[1])
        return cls(listener, routes, read_timeout=read_timeout, max_connections=max_connections)

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        return int(self._listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(self) -> None:
        """Answer probes until cancelled."""
        await self._listener.serve(self._handle)

    async def aclose(self) -> None:
        """Stop listening."""
        await self._listener.aclose()

    async def __aenter__(self) -> HealthListener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            if self._active >= self._max_connections:
                return
            self._active += 1
            try:
                head = await self._read_head(stream)
                if head is None:
                    return
                if len(head) > MAX_HEAD_BYTES:
                    response = _response(431, b"request head too large\n", "text/plain", False)
                else:
                    response = answer_request(head, self._routes)
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stream.send(response)
            finally:
                self._active -= 1

    async def _read_head(self, stream: anyio.abc.SocketStream) -> bytes | None:
        """The request head, longer than the cap when it does not end within it; ``None``
        when the client went away or was too slow."""
        data = b""
        with anyio.move_on_after(self._read_timeout):
            while len(data) <= MAX_HEAD_BYTES:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    end = data.find(b"\n\n")
                if end >= 0:
                    return data[:end]
                try:
                    data += await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return None
            return data
        return None


class HealthServer:
    """A :class:`HealthListener` served from a thread of its own, for a program that is not
    async. Routes are called on that thread.

    :raises OSError: the address cannot be bound.
    """

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        *,
        read_timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        self._portal_context = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_context.__enter__()
        try:
            bind = functools.partial(
                HealthListener.bind,
                address,
                routes,
                read_timeout=read_timeout,
                max_connections=max_connections,
            )
            self._listener = self._portal.call(bind)
        except BaseException:
            self._portal_context.__exit__(None, None, None)
            raise
        self._serving = self._portal.start_task_soon(self._listener.serve)

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        return self._listener.port

    def close(self) -> None:
        """Stop serving and end the thread."""
        self._serving.cancel()
        with contextlib.suppress(Exception):
            self._portal.call(self._listener.aclose)
        self._portal_context.__exit__(None, None, None)
