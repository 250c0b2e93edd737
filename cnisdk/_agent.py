"""The node agent: every installed plugin served in one long-running process over a Unix socket.

A CNI runtime still execs a file in its bin dir; in agent mode that file is a shim
(:mod:`cnisdk._launcher`: a Python script or the compiled shim) that forwards the request here
and prints the answer. The agent runs the exec pipeline (:func:`cnisdk._skel.handle_request`)
in-process, so a request costs no interpreter start and no imports, and plugins can keep state
between requests (:meth:`cnisdk.Plugin.serve`). The wire protocol is in
:mod:`cnisdk._agent_protocol`.

Who may connect: the socket is created mode 0600 (0666 when ``allow_uids`` names other users)
and every connection's peer credentials (``SO_PEERCRED``) are checked: root, the agent's own
uid and ``allow_uids`` are served; any other peer is answered ``refused`` and logged, before
anything is read from it.

Hostile input: every read is bounded in size (per frame) and time (the whole request within
:data:`READ_TIMEOUT`), a header's nesting is bounded, and whatever goes wrong with one
connection ends that connection only, never the agent.

A request that exceeds ``--request-timeout`` is cancelled and answered ``ok`` with exit
code 1 and a CNI error of code 11 ("try again later"): the runtime treats it as a failed ADD
(and cleans up with DEL) or retries the DEL, which is what it does for a plugin that fails.

Health: the ``health`` op of the protocol, and with ``--health HOST:PORT`` an HTTP ``GET
/healthz`` answering 200 with the same JSON document while serving (503 while shutting down).

Logs: one JSON object per line on stderr: ``event`` (``start``, ``listening``, ``request``,
``timeout``, ``disconnect``, ``refused``, ``error``, ``shutdown``, ``stopped``), a timestamp
``ts`` and for requests ``id``, ``type``, ``command``, ``container_id``, ``duration_ms``,
``exit_code``.

Shutdown on SIGTERM/SIGINT: stop accepting, remove the socket (new requests find no agent and
fall back), let in-flight requests finish (each is bounded by the request timeout), exit the
plugins' ``serve()`` contexts. A second signal cancels the in-flight requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from cnisdk._agent_protocol import (
    FRAME_PREFIX,
    MAX_ENV,
    MAX_FRAME,
    MAX_HEADER,
    MAX_STDIN,
    BadRequest,
    Header,
    answer_head,
    decode_frame_length,
    encode_frame,
    health_answer,
    parse_env,
    parse_header,
)
from cnisdk._health import Answer, HealthListener
from cnisdk._plugin import Plugin
from cnisdk._skel import Response, StdinSource, handle_request
from cnisdk.spec._errors import CNIError, ErrorCode

__all__ = [
    "READ_TIMEOUT",
    "Agent",
    "AgentError",
    "load_plugins",
]

READ_TIMEOUT = 10.0
"""Seconds a client gets to send its whole request (a shim sends it at once)."""
_PEERCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class AgentError(Exception):
    """The agent cannot start: the socket path is taken, or a plugin does not load."""


async def _read_frame(reader: BufferedByteReceiveStream, limit: int, what: str) -> bytes:
    size = decode_frame_length(await reader.receive_exactly(FRAME_PREFIX))
    if size > limit:
        raise BadRequest(f"{what} frame of {size} bytes exceeds the limit of {limit}")
    return await reader.receive_exactly(size) if size else b""


@dataclass
class _Request:
    header: Header
    env: dict[str, str]
    stdin: bytes


async def _read_request(reader: BufferedByteReceiveStream) -> _Request:
    """Read and validate one request (any protocol version).

    :raises BadRequest: malformed or oversized; ``anyio.IncompleteRead``/``EndOfStream``
        when the client stops early.
    """
    header = parse_header(await _read_frame(reader, MAX_HEADER, "header"))
    if header.op == "health":
        return _Request(header, {}, b"")
    try:
        if header.version == 1:
            env = header.env
        else:
            env = parse_env(await _read_frame(reader, MAX_ENV, "environment"))
        stdin = await _read_frame(reader, MAX_STDIN, "stdin")
    except BadRequest as exc:
        raise BadRequest(str(exc), header.version) from None
    return _Request(header, env, stdin)


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
    :param allow_uids: peer uids served besides root and the agent's own uid.
    :param read_timeout: seconds a client has to send its whole request.
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
        allow_uids: Collection[int] = (),
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        if request_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        self.read_timeout = read_timeout
        self.allow_uids = frozenset({0, os.geteuid(), *allow_uids})
        """Peer uids this agent serves."""
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
        others = self.allow_uids - {0, os.geteuid()}
        sock = _bind(self.socket_path, 0o666 if others else 0o600)
        identity = os.stat(self.socket_path)
        listener = await anyio.abc.SocketListener.from_socket(sock)
        self.log(
            "start",
            pid=os.getpid(),
            socket=str(self.socket_path),
            types=sorted(self.plugins),
            request_timeout=self.request_timeout,
            allow_uids=sorted(self.allow_uids),
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

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        rid = next(self._ids)
        try:
            async with stream:
                if self._admitted(rid, stream):
                    await self._exchange(rid, stream)
                else:
                    error = "peer uid is not allowed to use this agent (cnisdk agent --allow-uid)"
                    await stream.send(answer_head(2, "refused", error=error))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.log("disconnect", id=rid, error=str(exc) or type(exc).__name__)
        except Exception as exc:  # one connection must never take the agent down
            self.log("error", id=rid, where="connection", error=_describe(exc))
        finally:
            self._stats.in_flight -= 1
            if self._stats.in_flight == 0 and self._stats.idle is not None:
                self._stats.idle.set()

    def _admitted(self, rid: int, stream: anyio.abc.SocketStream) -> bool:
        """Whether the peer's uid (``SO_PEERCRED``, taken at connect time) may be served."""
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        pid, uid, gid = _PEERCRED.unpack(
            raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid in self.allow_uids:
            return True
        self.log("refused", id=rid, pid=pid, uid=uid, gid=gid)
        return False

    async def _exchange(self, rid: int, stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(self.read_timeout):
                request = await _read_request(reader)
        except (BadRequest, TimeoutError, anyio.IncompleteRead, anyio.EndOfStream) as exc:
            error = (
                f"the request was not complete within {self.read_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else _describe(exc)
            )
            self.log("error", id=rid, where="read request", error=error)
            version = exc.version if isinstance(exc, BadRequest) else 2
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(answer_head(version, "bad-request", error=error))
            return
        header = request.header
        if header.op == "health":
            await stream.send(health_answer(self.health(asking=1)))
            return
        plugin = self.plugins.get(header.plugin_type)
        if plugin is None:
            error = f"plugin type {header.plugin_type!r} is not served by this agent"
            self.log("unserved", id=rid, type=header.plugin_type)
            await stream.send(answer_head(header.version, "unserved", error=error))
            return
        stdin: StdinSource = request.stdin
        if header.stdin_errno:
            # The shim could not read its stdin: the pipeline answers what exec mode answers
            # where it reads stdin (code 5, Go's wording), after its checks of the environment.
            failed = OSError(header.stdin_errno, os.strerror(header.stdin_errno))

            def stdin_failed() -> bytes:
                raise failed

            stdin = stdin_failed
        client = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        response = await self._run(
            rid, header.plugin_type, plugin, request.env, stdin, reader, client
        )
        if response is not None:
            await stream.send(
                answer_head(header.version, "ok", exit_code=response.exit_code)
                + encode_frame(response.stdout)
                + encode_frame(response.stderr)
            )

    async def _run(
        self,
        rid: int,
        plugin_type: str,
        plugin: Plugin[Any],
        env: dict[str, str],
        stdin: StdinSource,
        reader: BufferedByteReceiveStream,
        client: socket.socket,
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
        # The client sends nothing after its request: its socket turning readable means it
        # closed its end (or broke the protocol), so the work is no longer wanted. A reader
        # callback on the event loop (the agent runs on asyncio) costs a fraction of a task
        # watching the socket, for every request.
        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as client_scope:
            if reader.buffer:
                client_scope.cancel()
            loop.add_reader(client.fileno(), client_scope.cancel)
            try:
                with anyio.move_on_after(self.request_timeout) as deadline:
                    response = await handle_request(plugin, env, stdin, log_stream=log_buffer)
            finally:
                loop.remove_reader(client.fileno())
        gone = client_scope.cancel_called
        timed_out = deadline.cancelled_caught
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
        return _fitted(Response(response.stdout, logged + response.stderr, response.exit_code))

    # -- HTTP health ------------------------------------------------------------------------

    async def _serve_health(
        self,
        address: tuple[str, int],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        health = await HealthListener.bind(address, {"/healthz": self._health_answer})
        self.health_port = health.port
        task_status.started()
        async with health:
            await health.serve()

    def _health_answer(self) -> Answer:
        doc = self.health()
        return Answer(doc["status"] == "ok", json.dumps(doc).encode() + b"\n", "application/json")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, BadRequest):
        return text
    if isinstance(exc, anyio.IncompleteRead | anyio.EndOfStream):
        return "the client closed the connection before a complete request"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fitted(response: Response) -> Response:
    """``response`` within the frame size a shim accepts: a log is cut, a result refused."""
    stderr = response.stderr
    if len(stderr) > MAX_FRAME:
        stderr = stderr[: MAX_FRAME - 64] + b"\n[cnisdk agent: log cut to fit the answer]\n"
    if len(response.stdout) > MAX_FRAME:
        error = CNIError(
            ErrorCode.INTERNAL, f"cnisdk agent: the plugin's output exceeds {MAX_FRAME} bytes"
        )
        return Response(error.to_json(), stderr, 1)
    return Response(response.stdout, stderr, response.exit_code)


async def _wait_idle(stats: _Stats) -> None:
    if stats.in_flight > 0:
        stats.idle = anyio.Event()
        await stats.idle.wait()


def _bind(path: Path, mode: int = 0o600) -> socket.socket:
    """A listening socket at ``path`` with ``mode``; a missing parent is created with mode
    0700 (0755 for a socket others may use).

    :raises AgentError: if a live agent answers at ``path``, or ``path`` is not a socket.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o755 if mode & 0o077 else 0o700, parents=True)
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
        os.chmod(path, mode)
        # Room for every pod of a node starting at once; the kernel caps it at somaxconn.
        sock.listen(4096)
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
