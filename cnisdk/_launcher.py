"""Launchers: the small executables a runtime finds in its CNI bin directory.

An exec-mode launcher starts the interpreter cnisdk is installed in, imports the plugin class
directly (no entry-point scan at exec time) and hands it to :func:`cnisdk.run`.

A *shim* (agent mode) instead forwards the request to a ``cnisdk agent`` over its Unix socket
(protocol in :mod:`cnisdk._agent_protocol`). There are two, with the same wire protocol, timeouts,
fallback rules and error texts:

- the Python shim (:func:`render_shim_launcher`): a script run with ``-I -S`` that imports
  only modules built into the interpreter (``posix``, ``_socket``, ``time``), so it costs
  little more than the interpreter's own start;
- the compiled shim (:mod:`cnisdk._compiled_shim`): a static executable, one copy per plugin
  type with its configuration in a trailer, for nodes where no Python start-up is cheap enough.

When the agent cannot be reached, or answers that it did not run the request, a shim falls
back to exec mode (``"exec"``) or answers CNI error 11 (``"fail"``). When the agent dies
*after* the request was sent (the connection closes, breaks or stays silent before a complete
answer), the request may have run in part:

- ADD is never re-run: the shim answers CNI error 11 ("try again later"). The runtime then
  treats the ADD as failed, tears the attachment down with DEL and retries the sandbox, so a
  pod is never left half-configured by a second, racing ADD of a plugin that is not
  idempotent. (istio-redirect's ADD is idempotent, but the shim cannot know that of others.)
- DEL, CHECK, GC, STATUS and VERSION are repeatable by the spec (DEL of what is gone succeeds),
  so they take the configured fallback: re-run in exec mode, or error 11.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cnisdk._discovery import PluginEntry

__all__ = [
    "ANSWER_TIMEOUT",
    "CONNECT_TIMEOUT",
    "LAUNCHER_MARKER",
    "AgentEntry",
    "Fallback",
    "exec_code",
    "is_launcher",
    "launcher_bytes",
    "render_launcher",
    "render_shim_launcher",
    "request_header_prefix",
    "write_launcher",
]

LAUNCHER_MARKER = "# cnisdk launcher"
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

CONNECT_TIMEOUT = 10.0
"""Seconds a shim gives connecting to the agent and sending its request, together."""
ANSWER_TIMEOUT = 150.0
"""Seconds a shim waits by default for the whole answer once its request is sent: above the
agent's default ``--request-timeout`` (60 s), so the agent's own timeout answer comes first."""

Fallback = Literal["exec", "fail"]


@dataclass(frozen=True)
class AgentEntry(PluginEntry):
    """A plugin entry whose launcher is an agent-mode shim.

    :func:`render_launcher` (and so :func:`write_launcher` and the node install, which call
    it) renders a shim for it; everything that takes a :class:`PluginEntry` accepts it.
    ``shim_binary`` is the compiled shim to copy (``None``: the Python shim);
    ``answer_timeout`` the seconds the shim waits for an answer once its request is sent.
    """

    socket_path: str = "/run/cnisdk/agent.sock"
    fallback: Fallback = "exec"
    shim_binary: str | None = None
    answer_timeout: float = ANSWER_TIMEOUT

    @classmethod
    def of(
        cls,
        entry: PluginEntry,
        socket_path: str,
        fallback: Fallback = "exec",
        shim_binary: str | None = None,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> AgentEntry:
        """``entry`` served through the agent at ``socket_path``."""
        return cls(
            entry.type,
            entry.module,
            entry.attr,
            entry.distribution,
            entry.version,
            socket_path=socket_path,
            fallback=fallback,
            shim_binary=shim_binary,
            answer_timeout=answer_timeout,
        )


def _checked(entry: PluginEntry, interpreter: str) -> tuple[str, str]:
    for name in (entry.module, entry.attr):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not an importable name: {name!r}")
    if any(ch.isspace() for ch in interpreter) or not interpreter:
        raise ValueError(f"interpreter path must not contain whitespace: {interpreter!r}")
    owner, _, rest = entry.attr.partition(".")
    return owner, (f"{owner}.{rest}" if rest else owner)


def exec_code(entry: PluginEntry, python: str | None = None) -> str:
    """The exec-mode program for ``entry``: what a launcher (or a shim falling back) runs.

    It imports only the public API (``cnisdk.run``) and the plugin class.
    """
    owner, target = _checked(entry, python or sys.executable)
    return f"from cnisdk import run\nfrom {entry.module} import {owner}\nrun({target})\n"


def _about(entry: PluginEntry, mode: str = "") -> str:
    return (
        f"{LAUNCHER_MARKER} for CNI plugin type {entry.type!r} "
        f"({entry.distribution} {entry.version}){mode}; written by `cnisdk install`."
    )


def render_launcher(entry: PluginEntry, python: str | None = None) -> str:
    """The launcher script for one plugin type (the Python shim for an :class:`AgentEntry`).

    ``-I`` keeps the environment of the runtime (``PYTHONPATH``, the working directory, user
    site-packages) from changing what a root-run plugin imports.
    """
    if isinstance(entry, AgentEntry):
        return render_shim_launcher(entry, python)
    interpreter = python or sys.executable
    return f"#!{interpreter} -I\n{_about(entry)}\n{exec_code(entry, interpreter)}"


def launcher_bytes(entry: PluginEntry, python: str | None = None) -> bytes:
    """The launcher file for ``entry``: a script, or a copy of the compiled shim with its
    configuration (for an :class:`AgentEntry` with ``shim_binary``)."""
    if isinstance(entry, AgentEntry) and entry.shim_binary is not None:
        from cnisdk._compiled_shim import render_compiled_shim

        return render_compiled_shim(entry, python or sys.executable)
    return render_launcher(entry, python).encode()


def request_header_prefix(entry: PluginEntry) -> bytes:
    """The request header a shim sends, without its closing brace (protocol version 2).

    A shim appends ``,"stdin_errno":N`` when reading its stdin failed, then ``}``.
    """
    return b'{"v":2,"op":"request","type":' + json.dumps(entry.type).encode()


def _checked_agent(entry: AgentEntry) -> None:
    if entry.fallback not in ("exec", "fail"):
        raise ValueError(f"fallback must be 'exec' or 'fail', not {entry.fallback!r}")
    path = entry.socket_path
    if not os.path.isabs(path) or any(ch in path for ch in "\n\0"):
        raise ValueError(f"agent socket must be an absolute path: {path!r}")
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ValueError(f"agent socket path longer than {_MAX_SOCKET_PATH} bytes: {path!r}")
    if not 1 <= entry.answer_timeout <= 86400:
        raise ValueError(f"shim answer timeout must be 1 to 86400 s, not {entry.answer_timeout}")


# The body of the Python shim. Only modules built into the interpreter: it runs with -S (no
# site-packages, so no cnisdk either) and without `os`, `json`, `struct` or `socket`, whose
# imports would cost more than everything else it does. What happens when something goes
# wrong is in _SHIM_ERRORS, compiled only when needed: compiling it costs more than running
# the rest. Each step mirrors what the compiled shim (cnisdk/_shim.c) does, message for message.
_SHIM_BODY = r"""import _socket
import posix
from time import monotonic


def frame(data):
    return len(data).to_bytes(4, "big") + data


def receive(sock, size, deadline):
    data = bytearray()
    while len(data) < size:
        left = deadline - monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def receive_frame(sock, limit, deadline):
    size = int.from_bytes(receive(sock, 4, deadline), "big")
    if size > limit:
        raise ValueError
    return receive(sock, size, deadline)


def put(fd, data):
    try:
        while data:
            data = data[posix.write(fd, data) :]
    except OSError:
        pass


def trouble(*args):
    exec(ERRORS, globals())
    handle(*args)


def main():
    environ = posix.environ  # bytes to bytes, what os.environb is made from
    command = environ.get(b"CNI_COMMAND", b"")
    stdin = None
    header = HEADER + b"}"
    # Exec mode reads no stdin for VERSION or without a command; nor does the shim, so a
    # terminal never blocks it. A failed read is the agent's to answer, as exec mode would.
    if command and command != b"VERSION":
        chunks = []
        try:
            while True:
                chunk = posix.read(0, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            stdin = b"".join(chunks)
        except OSError as exc:
            header = HEADER + b',"stdin_errno":%d}' % (exc.errno or 5)
    env = b"".join([key + b"=" + value + b"\0" for key, value in environ.items()])
    request = frame(header) + frame(env) + frame(stdin or b"")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    deadline = monotonic() + CONNECT_TIMEOUT
    step = b"connect"
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(SOCKET)
        step = b"send"
        view = memoryview(request)
        while view:
            left = deadline - monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            view = view[sock.send(view) :]
    except OSError as exc:
        return trouble("unsent", command, stdin, sock, step, exc)
    deadline = monotonic() + ANSWER_TIMEOUT
    try:
        status, _, rest = receive_frame(sock, MAX_HEAD, deadline).partition(b" ")
        if status != b"ok" or not (rest.isdigit() and len(rest) <= 3 and int(rest) <= 255):
            return trouble("answer", command, stdin, status, rest)
        out = receive_frame(sock, MAX_FRAME, deadline)
        err = receive_frame(sock, MAX_FRAME, deadline)
    except (OSError, EOFError, ValueError) as exc:
        return trouble("broken", command, stdin, exc)
    put(2, err)
    put(1, out)
    posix._exit(int(rest))


main()
"""

_SHIM_ERRORS = r"""NOT_RUN = (b"unserved", b"bad-request", b"refused")


def go_string(text):
    # A JSON string as Go's encoder writes it: invalid UTF-8 as \ufffd, HTML-safe.
    table = {c: "\\u%04x" % c for c in range(32)}
    table.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
    for c, esc in zip('"\\\n\r\t\b\f', '"\\nrtbf'):
        table[ord(c)] = "\\" + esc
    for c in "<>&\u2028\u2029":
        table[ord(c)] = "\\u%04x" % ord(c)
    return text.translate(table)


def fail(msg):
    # What Go's skel prints for an error: 4-space indented JSON, no trailing newline.
    text = go_string(msg.decode("utf-8", "surrogateescape"))
    put(1, ('{\n    "code": 11,\n    "msg": "%s"\n}' % text).encode())
    posix._exit(1)


def os_error(exc):
    return (posix.strerror(exc.errno) if exc.errno else "timed out").encode()


def fallback(stdin, why):
    if FALLBACK != "exec":
        fail(b"cnisdk agent unavailable at %s: %s" % (SOCKET, why))
    if stdin is not None:
        # The request's stdin was consumed: hand the exec-mode plugin a copy on fd 0.
        try:
            fd = posix.memfd_create("cnisdk-stdin")
            while stdin:
                stdin = stdin[posix.write(fd, stdin) :]
            posix.lseek(fd, 0, 0)
            posix.dup2(fd, 0)
            posix.close(fd)
        except OSError as exc:
            fail(b"cnisdk agent unavailable at %s (%s); stdin: %s" % (SOCKET, why, os_error(exc)))
    try:
        posix.execv(PYTHON, [PYTHON, b"-I", b"-c", EXEC])
    except OSError as exc:
        fail(b"cnisdk agent unavailable at %s (%s); exec mode: %s" % (SOCKET, why, os_error(exc)))


def handle(what, command, stdin, *details):
    if what == "unsent":
        # A request only runs once the agent has read all of it: it did not run. An agent
        # that refused the connection may have said why before closing.
        sock, step, exc = details
        why = step + b": " + os_error(exc)
        if step == b"send":
            try:
                status, _, text = receive_frame(sock, MAX_HEAD, monotonic() + 1).partition(b" ")
                if status in NOT_RUN:
                    why = status + b": " + text
            except (OSError, EOFError, ValueError):
                pass
        fallback(stdin, why)
    if what == "answer":
        status, text = details
        if status in NOT_RUN:
            fallback(stdin, status + b": " + text)
        why = b"malformed answer"
    else:
        (exc,) = details
        if isinstance(exc, TimeoutError):
            why = b"no answer within %d s" % ANSWER_TIMEOUT
        elif isinstance(exc, EOFError):
            why = b"the agent closed the connection before a complete answer"
        elif isinstance(exc, ValueError):
            why = b"malformed answer"
        else:
            why = b"read: " + os_error(exc)
    # The agent may have run part of the request: see cnisdk._launcher.
    if command == b"ADD":
        fail(
            b"cnisdk agent at %s failed during ADD (%s); the ADD may be partly applied and "
            b"was not retried" % (SOCKET, why)
        )
    fallback(stdin, why)
"""


def render_shim_launcher(entry: AgentEntry, python: str | None = None) -> str:
    """The agent-mode launcher for one plugin type: the Python shim.

    It starts with ``#!<python> -IS`` (``-I -S`` as one word: Linux passes everything after
    the interpreter path as a single argument), forwards its environment and stdin to the
    agent at ``entry.socket_path``, writes the agent's stdout and stderr bytes and exits with
    its code. When the agent is unreachable it re-executes the same interpreter in exec mode
    on the plugin class (fallback ``"exec"``) or prints CNI error 11 and exits 1 (``"fail"``).
    See the module docstring for a connection lost mid-request.
    """
    from cnisdk._agent_protocol import MAX_ANSWER_HEAD, MAX_FRAME

    interpreter = python or sys.executable
    code = exec_code(entry, interpreter)
    _checked_agent(entry)

    def literal(text: str) -> str:
        return repr(text.encode("utf-8", "surrogateescape"))

    return (
        f"#!{interpreter} -IS\n"
        f"{_about(entry, ', agent mode')}\n"
        f"SOCKET = {literal(entry.socket_path)}\n"
        f"FALLBACK = {entry.fallback!r}\n"
        f"PYTHON = {literal(interpreter)}\n"
        f"EXEC = {literal(code)}\n"
        f"HEADER = {request_header_prefix(entry)!r}\n"
        f"CONNECT_TIMEOUT = {CONNECT_TIMEOUT!r}\n"
        f"ANSWER_TIMEOUT = {float(entry.answer_timeout)!r}\n"
        f"MAX_HEAD = {MAX_ANSWER_HEAD}\n"
        f"MAX_FRAME = {MAX_FRAME}\n"
        f"ERRORS = {_SHIM_ERRORS!r}\n" + _SHIM_BODY
    )


def write_launcher(bin_dir: Path, entry: PluginEntry, python: str | None = None) -> Path:
    """Write (or replace) the launcher for ``entry`` in ``bin_dir`` atomically, mode 0755.

    :return: the launcher's path.
    """
    from cnisdk._files import write_atomic

    data = launcher_bytes(entry, python)
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / entry.type
    if target.parent != bin_dir:
        raise ValueError(f"plugin type {entry.type!r} is not a plain file name")
    write_atomic(target, data, 0o755)
    return target


def is_launcher(path: Path) -> bool:
    """Whether ``path`` is a launcher written by cnisdk: a script whose second line is our
    marker (any version's), or a compiled shim with its configuration trailer."""
    from cnisdk._compiled_shim import is_compiled_shim

    try:
        with path.open("rb") as handle:
            head = handle.read(512)
            if head.startswith(b"\x7fELF"):
                return is_compiled_shim(handle)
    except OSError:
        return False
    lines = head.split(b"\n")
    return len(lines) > 1 and lines[1].startswith(LAUNCHER_MARKER.encode())
