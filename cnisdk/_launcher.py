"""Launchers: the small executables a runtime finds in its CNI bin directory.

A launcher starts the interpreter cnisdk is installed in, imports the plugin class directly
(no entry-point scan at exec time) and hands it to the exec-mode skel.

A *shim* launcher (agent mode, :func:`render_shim_launcher`) instead forwards the request to a
``cnisdk agent`` over its Unix socket (protocol in :mod:`cnisdk._agent`), importing only the
standard library (``-I -S``). When the agent cannot be reached it falls back to exec mode
(``"exec"``) or answers CNI error 11 (``"fail"``). When the agent dies *after* the request
was sent (the connection closes before a complete answer), the request may have run in part:

- ADD is never re-run: the shim answers CNI error 11 ("try again later"). The runtime then
  treats the ADD as failed, tears the attachment down with DEL and retries the sandbox, so a
  pod is never left half-configured by a second, racing ADD of a plugin that is not
  idempotent. (istio-redirect's ADD is idempotent, but the shim cannot know that of others.)
- DEL, CHECK, GC, STATUS and VERSION are repeatable by the spec (DEL of what is gone succeeds),
  so they take the configured fallback: re-run in exec mode, or error 11.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cnisdk._discovery import PluginEntry

__all__ = [
    "LAUNCHER_MARKER",
    "AgentEntry",
    "is_launcher",
    "render_launcher",
    "render_shim_launcher",
    "write_launcher",
]

LAUNCHER_MARKER = "# cnisdk launcher"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


Fallback = Literal["exec", "fail"]


@dataclass(frozen=True)
class AgentEntry(PluginEntry):
    """A plugin entry whose launcher is an agent-mode shim.

    :func:`render_launcher` (and so :func:`write_launcher` and the node install, which call
    it) renders a shim for it; everything that takes a :class:`PluginEntry` accepts it.
    """

    socket_path: str = "/run/cnisdk/agent.sock"
    fallback: Fallback = "exec"

    @classmethod
    def of(cls, entry: PluginEntry, socket_path: str, fallback: Fallback = "exec") -> AgentEntry:
        """``entry`` served through the agent at ``socket_path``."""
        return cls(
            entry.type,
            entry.module,
            entry.attr,
            entry.distribution,
            entry.version,
            socket_path=socket_path,
            fallback=fallback,
        )


def _checked(entry: PluginEntry, interpreter: str) -> tuple[str, str]:
    for name in (entry.module, entry.attr):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not an importable name: {name!r}")
    if any(ch.isspace() for ch in interpreter):
        raise ValueError(f"interpreter path must not contain whitespace: {interpreter!r}")
    owner, _, rest = entry.attr.partition(".")
    return owner, (f"{owner}.{rest}" if rest else owner)


def render_launcher(entry: PluginEntry, python: str | None = None) -> str:
    """The launcher script for one plugin type (a shim for an :class:`AgentEntry`).

    ``-I`` keeps the environment of the runtime (``PYTHONPATH``, the working directory, user
    site-packages) from changing what a root-run plugin imports.
    """
    if isinstance(entry, AgentEntry):
        return render_shim_launcher(entry, entry.socket_path, entry.fallback, python)
    interpreter = python or sys.executable
    owner, target = _checked(entry, interpreter)
    return (
        f"#!{interpreter} -I\n"
        f"{LAUNCHER_MARKER} for CNI plugin type {entry.type!r} "
        f"({entry.distribution} {entry.version}); written by `cnisdk install`.\n"
        "from cnisdk._skel import run\n"
        f"from {entry.module} import {owner}\n"
        f"run({target})\n"
    )


# The body of a shim launcher. Only the standard library: it runs with -S (no site-packages,
# so no cnisdk either), which keeps its start-up at the bare interpreter's cost.
_SHIM_BODY = r"""import json, os, socket, struct, sys


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fail(msg):
    # What Go's skel prints for an error: 4-space indented JSON, no trailing newline.
    write_all(1, json.dumps({"code": 11, "msg": msg}, indent=4).encode())
    sys.exit(1)


def run_locally(stdin, why):
    if FALLBACK != "exec":
        fail("cnisdk agent unavailable at %s: %s" % (SOCKET, why))
    if stdin is not None:
        # The request's stdin was consumed: hand the exec-mode plugin a copy on fd 0.
        fd = os.memfd_create("cnisdk-stdin")
        write_all(fd, stdin)
        os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(fd, 0)
        os.close(fd)
    # Same interpreter, exec mode, without -S: the plugin needs site-packages.
    os.execv(sys.executable, [sys.executable, "-I", "-c", EXEC])


def read_exactly(sock, size):
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the agent closed the connection before a complete answer")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock):
    return read_exactly(sock, struct.unpack(">I", read_exactly(sock, 4))[0])


def frame(data):
    return struct.pack(">I", len(data)) + data


def main():
    env = dict(os.environ)
    command = env.get("CNI_COMMAND", "")
    stdin = None
    # Exec mode reads no stdin for VERSION or without a command; nor does the shim, so a
    # terminal never blocks it.
    if command and command != "VERSION":
        chunks = []
        while True:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        stdin = b"".join(chunks)
    header = json.dumps({"v": 1, "op": "request", "type": TYPE, "env": env}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET)
        # A request only runs once the agent has read all of it, so a failure while
        # sending means it did not run.
        sock.sendall(frame(header) + frame(stdin or b""))
    except OSError as exc:
        run_locally(stdin, exc)
    try:
        answer = json.loads(read_frame(sock))
        out = read_frame(sock) if answer.get("status") == "ok" else b""
        err = read_frame(sock) if answer.get("status") == "ok" else b""
    except (OSError, EOFError, ValueError, struct.error) as exc:
        # The agent may have run part of the request: see cnisdk._launcher.
        if command == "ADD":
            fail(
                "cnisdk agent at %s failed during ADD (%s); the ADD may be partly applied "
                "and was not retried" % (SOCKET, exc)
            )
        run_locally(stdin, exc)
    status = answer.get("status")
    if status != "ok":
        # "unserved" / "bad-request": the request did not run.
        run_locally(stdin, "%s: %s" % (status, answer.get("error", "")))
    write_all(2, err)
    write_all(1, out)
    sys.exit(answer.get("exit_code", 1))


main()
"""


def render_shim_launcher(
    entry: PluginEntry,
    socket_path: str,
    fallback: Fallback = "exec",
    python: str | None = None,
) -> str:
    """The agent-mode launcher for one plugin type: a standard-library-only shim.

    It starts with ``#!<python> -IS`` (``-I -S`` as one word: Linux passes everything after
    the interpreter path as a single argument), forwards its environment and stdin to the agent at
    ``socket_path``, writes the agent's stdout and stderr bytes and exits with its code. When
    the agent is unreachable it re-executes the same interpreter in exec mode on the plugin
    class (``fallback="exec"``) or prints CNI error 11 and exits 1 (``"fail"``). See the
    module docstring for a connection lost mid-request.
    """
    interpreter = python or sys.executable
    owner, target = _checked(entry, interpreter)
    if fallback not in ("exec", "fail"):
        raise ValueError(f"fallback must be 'exec' or 'fail', not {fallback!r}")
    if not os.path.isabs(socket_path) or "\n" in socket_path:
        raise ValueError(f"agent socket must be an absolute path: {socket_path!r}")
    exec_code = f"from cnisdk._skel import run\nfrom {entry.module} import {owner}\nrun({target})\n"
    return (
        f"#!{interpreter} -IS\n"
        f"{LAUNCHER_MARKER} for CNI plugin type {entry.type!r} "
        f"({entry.distribution} {entry.version}), agent mode; written by `cnisdk install`.\n"
        f"SOCKET = {socket_path!r}\n"
        f"TYPE = {entry.type!r}\n"
        f"FALLBACK = {fallback!r}\n"
        f"EXEC = {exec_code!r}\n" + _SHIM_BODY
    )


def write_launcher(bin_dir: Path, entry: PluginEntry, python: str | None = None) -> Path:
    """Write (or replace) the launcher for ``entry`` in ``bin_dir`` atomically, mode 0755.

    :return: the launcher's path.
    """
    text = render_launcher(entry, python)
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / entry.type
    if target.parent != bin_dir:
        raise ValueError(f"plugin type {entry.type!r} is not a plain file name")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.type}.", suffix=".tmp", dir=bin_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o755)
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def is_launcher(path: Path) -> bool:
    """Whether ``path`` is a launcher written by cnisdk (its second line is our marker)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    lines = head.split(b"\n")
    return len(lines) > 1 and lines[1].startswith(LAUNCHER_MARKER.encode())
