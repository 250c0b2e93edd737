"""The node agent: every installed plugin served in one long-running process over a Unix socket.

A CNI runtime still execs a file in its bin dir; in agent mode that file is a shim launcher
(:func:`cnisdk._launcher.render_shim_launcher`) that imports only the standard library, forwards
the request here and prints the answer. The agent runs the exec pipeline
(:func:`cnisdk._skel.handle_request`) in-process, so a request costs no interpreter start and no
imports, and plugins can keep state between requests (:meth:`cnisdk.Plugin.serve`).

Protocol (version 1)
--------------------

One request per connection. Every message is a sequence of *frames*; a frame is a 4-byte
unsigned big-endian length followed by that many bytes.

Request, client to agent: two frames.

1. a JSON object, the header: ``{"v": 1, "op": "request", "type": TYPE, "env": {NAME: VALUE}}``
   — ``env`` is the shim's whole environment (the ``CNI_*`` variables and whatever else the
   runtime set: a plugin's delegates inherit it in exec mode too). Values that held undecodable
   bytes travel as lone surrogates (``\\udcXX``), exactly as Python's ``os.environ`` holds them.
   ``{"v": 1, "op": "health"}`` asks for the health document instead.
2. the stdin bytes (empty when the shim did not read stdin: VERSION, no ``CNI_COMMAND``).

The client then keeps its end open and waits; closing it (the runtime killed the shim)
cancels the request, as killing an exec-mode plugin would stop it.

Response, agent to client: three frames.

1. a JSON header ``{"v": 1, "status": STATUS, ...}``;
2. the plugin's stdout bytes;
3. the plugin's stderr bytes (its request log and any about text).

``STATUS`` is

- ``"ok"`` with ``"exit_code"``: the request ran; frames 2 and 3 are exactly what the plugin
  binary would have written in exec mode.
- ``"unserved"`` with ``"error"``: this agent does not serve the type; the request did not run
  (a shim falls back as if the agent were unreachable).
- ``"bad-request"`` with ``"error"``: the request could not be read; it did not run.
- for ``op: health``: ``"ok"`` with ``"types"``, ``"in_flight"``, ``"served"``,
  ``"uptime_s"``, ``"pid"``.

A request that exceeds ``--request-timeout`` is cancelled and answered ``"ok"`` with exit
code 1 and a CNI error of code 11 ("try again later"): the runtime treats it as a failed ADD
(and cleans up with DEL) or retries the DEL, which is what it does for a plugin that fails.

Health: the ``health`` op above, and with ``--health HOST:PORT`` an HTTP ``GET /healthz``
answering 200 with the same JSON document while serving (503 while shutting down).

Logs: one JSON object per line on stderr: ``event`` (``start``, ``listening``, ``request``,
``timeout``, ``disconnect``, ``error``, ``shutdown``, ``stopped``), a timestamp ``ts`` and for
requests ``id``, ``type``, ``command``, ``container_id``, ``duration_ms``, ``exit_code``.

Shutdown on SIGTERM/SIGINT: stop accepting, remove the socket (new requests find no agent and
fall back), let in-flight requests finish (each is bounded by the request timeout), exit the
plugins' ``serve()`` contexts. A second signal cancels the in-flight requests at once.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from cnisdk._plugin import Plugin
from cnisdk._skel import Response, handle_request
from cnisdk.spec._errors import CNIError, ErrorCode

__all__ = [
    "PROTOCOL_VERSION",
    "Agent",
    "AgentError",
    "decode_frame_length",
    "encode_frame",
    "load_plugins",
    "request_health",
]

PROTOCOL_VERSION = 1
MAX_HEADER = 4 << 20
"""Largest header frame accepted: an environment is a few KiB."""
MAX_STDIN = 64 << 20
"""Largest stdin accepted: a config with its prevResult is a few KiB."""
_READ_TIMEOUT = 10.0
"""Seconds a client gets to send its whole request (a shim sends it at once)."""
_FRAME = 4


class AgentError(Exception):
    """The agent cannot start: the socket path is taken, or a plugin does not load."""


def encode_frame(data: bytes) -> bytes:
    """``data`` as one frame: a 4-byte big-endian length, then the bytes."""
    return len(data).to_bytes(_FRAME, "big") + data


def decode_frame_length(prefix: bytes) -> int:
    """The length a 4-byte frame prefix announces."""
    return int.from_bytes(prefix, "big")


async def _read_frame(reader: BufferedByteReceiveStream, limit: int) -> bytes:
    size = decode_frame_length(await reader.receive_exactly(_FRAME))
    if size > limit:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {limit}")
    return await reader.receive_exactly(size) if size else b""


def _header(**fields: Any) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, **fields}, separators=(",", ":")).encode()


def load_plugins(
    types: list[str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, Plugin[Any]]:
    """One instance of each installed plugin type (or of ``types``), plus ``extra``.

    :param types: only these types (each must be installed); ``None``: every installed one.
    :param extra: ``TYPE -> "module:Class"`` for plugins not registered as entry points.
    :raises AgentError: when a requested type is unknown or a plugin does not load.
    """
    from cnisdk._discovery import PluginLoadError, find_plugins, import_plugin_class

    classes: dict[str, type[Plugin[Any]]] = {}
    try:
        installed = find_plugins() if types is None or types else {}
        wanted = list(installed) if types is None else types
        for plugin_type in wanted:
            if plugin_type not in installed:
                known = ", ".join(installed) or "none"
                raise AgentError(f"no plugin of type {plugin_type!r} installed ({known})")
            classes[plugin_type] = installed[plugin_type].load()
        for plugin_type, target in (extra or {}).items():
            module, sep, attr = target.partition(":")
            if not sep or not module or not attr:
                raise AgentError(f"{plugin_type}={target}: expected TYPE=module:Class")
            classes[plugin_type] = import_plugin_class(module, attr, plugin_type)
    except PluginLoadError as exc:
        raise AgentError(str(exc)) from exc
    return {name: cls() for name, cls in classes.items()}


@dataclass
class _Stats:
    started: float
    in_flight: int = 0
    served: int = 0
    idle: anyio.Event | None = None
    """Set when ``in_flight`` drops to 0 while a shutdown waits for it."""


class Agent:
    """Serve ``plugins`` (type -> instance) on the Unix socket ``socket_path``.

    :param request_timeout: seconds a request may run before it is cancelled.
    :param health_address: ``(host, port)`` for HTTP ``GET /healthz``, or ``None``.
    :param log_stream: where the JSON-lines log goes (default: ``sys.stderr``).
    :param handle_signals: stop on SIGTERM/SIGINT (only possible in the main thread).
    """

    def __init__(
        self,
        plugins: Mapping[str, Plugin[Any]],
        socket_path: str | os.PathLike[str],
        *,
        request_timeout: float = 60.0,
        health_address: tuple[str, int] | None = None,
        log_stream: IO[str] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        self.plugins = dict(plugins)
        self.socket_path = Path(socket_path)
        self.request_timeout = request_timeout
        self.health_address = health_address
        self.health_port: int | None = None
        """The bound health port (useful with port 0), once listening."""
        self._log_stream = log_stream if log_stream is not None else sys.stderr
        self._handle_signals = handle_signals
        self._ids = itertools.count(1)
        self._stats = _Stats(time.monotonic())
        self._stopping = False
        self._control: anyio.CancelScope | None = None
        self._requests: anyio.CancelScope | None = None
        self.ready = anyio.Event()
        """Set once the socket accepts connections."""

    # -- logging ----------------------------------------------------------------------------

    def log(self, event: str, **fields: Any) -> None:
        """Write one JSON log line."""
        record = {"ts": round(time.time(), 6), "event": event, **fields}
        try:
            self._log_stream.write(json.dumps(record, default=str) + "\n")
            self._log_stream.flush()
        except (OSError, ValueError):
            pass  # a closed log pipe must not take requests down

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown (as SIGTERM does); a second call cancels in-flight work."""
        if self._stopping:
            if self._requests is not None:
                self._requests.cancel()
            return
        self._stopping = True
        if self._control is not None:
            self._control.cancel()

    def health(self, *, asking: int = 0) -> dict[str, Any]:
        """The health document (see the module docstring).

        :param asking: connections to leave out of ``in_flight`` (the health request itself).
        """
        return {
            "status": "stopping" if self._stopping else "ok",
            "types": sorted(self.plugins),
            "in_flight": self._stats.in_flight - asking,
            "served": self._stats.served,
            "uptime_s": round(time.monotonic() - self._stats.started, 3),
            "pid": os.getpid(),
        }

    async def serve(self) -> None:
        """Run until :meth:`stop` or a signal, then shut down gracefully.

        :raises AgentError: if the socket path is served by a live agent or is not a socket.
        """
        sock = _bind(self.socket_path)
        identity = os.stat(self.socket_path)
        listener = await anyio.abc.SocketListener.from_socket(sock)
        self.log(
            "start",
            pid=os.getpid(),
            socket=str(self.socket_path),
            types=sorted(self.plugins),
            request_timeout=self.request_timeout,
        )
        try:
            async with anyio.create_task_group() as outer, contextlib.AsyncExitStack() as stack:
                # One signal receiver for the whole run: the first signal drains, a second
                # cancels in-flight work (the default action would kill us mid-drain).
                if self._handle_signals:
                    outer.start_soon(self._watch_signals)
                for plugin in self.plugins.values():
                    await stack.enter_async_context(plugin.serve())
                async with anyio.create_task_group() as requests:
                    self._requests = requests.cancel_scope
                    async with anyio.create_task_group() as control:
                        self._control = control.cancel_scope
                        if self._stopping:
                            control.cancel_scope.cancel()
                        if self.health_address is not None:
                            await control.start(self._serve_health, self.health_address)
                        control.start_soon(self._accept, listener, requests)
                        self.ready.set()
                        self.log(
                            "listening", socket=str(self.socket_path), health_port=self.health_port
                        )
                    # Stop accepting first: new requests find no socket and fall back.
                    await listener.aclose()
                    _unlink_if_same(self.socket_path, identity)
                    self.log("shutdown", in_flight=self._stats.in_flight)
                    await _wait_idle(self._stats)
                outer.cancel_scope.cancel()  # only the signal watcher is left
        finally:
            await listener.aclose()
            _unlink_if_same(self.socket_path, identity)
            self.log("stopped", served=self._stats.served)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                action = "cancel in-flight" if self._stopping else "drain"
                self.log("signal", signal=signal.Signals(signum).name, action=action)
                self.stop()

    async def _accept(
        self, listener: anyio.abc.SocketListener, requests: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                self.log("error", where="accept", error=str(exc))
                await anyio.sleep(0.1)
                continue
            # Counted before the task starts so a shutdown right now still waits for it.
            self._stats.in_flight += 1
            requests.start_soon(self._connection, stream)

    # -- one connection ---------------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        rid = next(self._ids)
        try:
            async with stream:
                await self._exchange(rid, stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.log("disconnect", id=rid, error=str(exc) or type(exc).__name__)
        finally:
            self._stats.in_flight -= 1
            if self._stats.in_flight == 0 and self._stats.idle is not None:
                self._stats.idle.set()

    async def _exchange(self, rid: int, stream: anyio.abc.ByteStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(_READ_TIMEOUT):
                header = json.loads(await _read_frame(reader, MAX_HEADER))
                if not isinstance(header, dict):
                    raise ValueError("the header is not a JSON object")
                if header.get("op") == "health":
                    await stream.send(
                        encode_frame(_header(**self.health(asking=1)))
                        + encode_frame(b"")
                        + encode_frame(b"")
                    )
                    return
                stdin = await _read_frame(reader, MAX_STDIN)
        except (ValueError, TimeoutError, anyio.IncompleteRead, anyio.EndOfStream) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.log("error", id=rid, where="read request", error=error)
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(encode_frame(_header(status="bad-request", error=error)))
            return
        plugin_type = header.get("type")
        env = header.get("env")
        problem = _check_request(header, plugin_type, env)
        if problem:
            self.log("error", id=rid, where="request", error=problem)
            await stream.send(encode_frame(_header(status="bad-request", error=problem)))
            return
        assert isinstance(plugin_type, str) and isinstance(env, dict)
        plugin = self.plugins.get(plugin_type)
        if plugin is None:
            error = f"plugin type {plugin_type!r} is not served by this agent"
            self.log("unserved", id=rid, type=plugin_type)
            await stream.send(encode_frame(_header(status="unserved", error=error)))
            return
        response = await self._run(rid, plugin_type, plugin, env, stdin, reader)
        if response is not None:
            await stream.send(
                encode_frame(_header(status="ok", exit_code=response.exit_code))
                + encode_frame(response.stdout)
                + encode_frame(response.stderr)
            )

    async def _run(
        self,
        rid: int,
        plugin_type: str,
        plugin: Plugin[Any],
        env: dict[str, str],
        stdin: bytes,
        reader: BufferedByteReceiveStream,
    ) -> Response | None:
        """Run one request; ``None`` if the client went away (the request was cancelled)."""
        command = env.get("CNI_COMMAND", "")
        fields = {
            "id": rid,
            "type": plugin_type,
            "command": command,
            "container_id": env.get("CNI_CONTAINERID", ""),
        }
        started = time.monotonic()
        log_buffer = io.StringIO()
        response: Response | None = None
        gone = False
        timed_out = False

        async def watch_client(scope: anyio.CancelScope) -> None:
            # The client sends nothing after its request: any read returning means it closed
            # its end (or broke the protocol), so the work is no longer wanted.
            nonlocal gone
            with contextlib.suppress(Exception):
                await reader.receive()
            gone = True
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_client, tg.cancel_scope)
            with anyio.move_on_after(self.request_timeout) as deadline:
                response = await handle_request(plugin, env, stdin, log_stream=log_buffer)
            timed_out = deadline.cancelled_caught
            tg.cancel_scope.cancel()
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        self._stats.served += 1
        if gone and response is None:
            self.log("disconnect", **fields, duration_ms=duration_ms, cancelled=True)
            return None
        logged = log_buffer.getvalue().encode("utf-8", "backslashreplace")
        if timed_out or response is None:
            error = CNIError(
                ErrorCode.TRY_AGAIN_LATER,
                f"cnisdk agent: {plugin_type} {command} timed out after "
                f"{self.request_timeout:g} s and was cancelled",
            )
            response = Response(error.to_json(), logged, 1)
            self.log("timeout", **fields, duration_ms=duration_ms, exit_code=1)
            return response
        self.log("request", **fields, duration_ms=duration_ms, exit_code=response.exit_code)
        return Response(response.stdout, logged + response.stderr, response.exit_code)

    # -- HTTP health ------------------------------------------------------------------------

    async def _serve_health(
        self,
        address: tuple[str, int],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host=address[0], local_port=address[1])
        self.health_port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        task_status.started()
        async with listener:
            await listener.serve(self._health_http)

    async def _health_http(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(5):
                while b"\r\n\r\n" not in data and len(data) < 8192:
                    try:
                        data += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            parts = data.split(b"\r\n", 1)[0].split()
            if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD") and parts[1] == b"/healthz":
                doc = self.health()
                code = b"200 OK" if doc["status"] == "ok" else b"503 Service Unavailable"
                body = json.dumps(doc).encode() + b"\n"
            else:
                code, body = b"404 Not Found", b"not found\n"
            head = (
                b"HTTP/1.1 " + code + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(head + (body if parts[:1] != [b"HEAD"] else b""))


def _check_request(header: dict[str, Any], plugin_type: Any, env: Any) -> str:
    if header.get("v") != PROTOCOL_VERSION:
        return f"unsupported protocol version {header.get('v')!r} (this agent speaks 1)"
    if header.get("op") != "request":
        return f"unknown op {header.get('op')!r}"
    if not isinstance(plugin_type, str) or not plugin_type:
        return "no plugin type"
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        return "env must be an object of strings"
    return ""


async def _wait_idle(stats: _Stats) -> None:
    if stats.in_flight > 0:
        stats.idle = anyio.Event()
        await stats.idle.wait()


def _bind(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0600; a missing parent is created with mode 0700.

    :raises AgentError: if a live agent answers at ``path``, or ``path`` is not a socket.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise AgentError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # stale: left by an agent that died
        except OSError as exc:
            raise AgentError(f"cannot tell whether {path} is in use: {exc}") from exc
        else:
            raise AgentError(f"an agent is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask makes bind() create the socket 0600 already: no window in which another
        # user could connect before a chmod. The agent starts single-threaded, so changing
        # the process umask briefly is safe here.
        previous = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        sock.listen(512)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _unlink_if_same(path: Path, identity: os.stat_result) -> None:
    # Remove the socket only if it is still ours: a new agent may have replaced it.
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == (identity.st_dev, identity.st_ino):
            path.unlink()


def request_health(socket_path: str | os.PathLike[str], timeout: float = 5.0) -> dict[str, Any]:
    """Ask the agent at ``socket_path`` for its health document (blocking).

    :raises OSError: if the agent is unreachable; ``ValueError`` for a malformed answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(socket_path))
        sock.sendall(encode_frame(_header(op="health")))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if len(data) < _FRAME:
        raise ValueError("short health answer")
    size = decode_frame_length(data[:_FRAME])
    doc = json.loads(data[_FRAME : _FRAME + size])
    if not isinstance(doc, dict):
        raise ValueError("health answer is not a JSON object")
    return doc
