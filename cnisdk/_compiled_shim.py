"""The compiled shim: building it, finding it, and the per-plugin copies ``cnisdk install`` writes.

The C source (``cnisdk/_shim.c``, shipped in the package) compiles to one static executable
that needs nothing on a node. It is configured without compiling: each plugin type gets a copy
of the binary with a *trailer* appended, which the shim reads from ``/proc/self/exe`` at start::

    <the executable> <KEY=VALUE\\0 ...> <length of the entries: 4 bytes, big-endian> CNISHIM1

Keys: ``type``, ``socket``, ``fallback``, ``python`` and ``exec`` (the exec-mode fallback runs
``python -I -c EXEC``), ``header`` (the request header without its closing brace),
``connect_timeout_ms``, ``answer_timeout_ms``, ``max_head``, ``max_frame`` and ``about`` (the
launcher marker, so ``strings`` shows what wrote the file). Appending to an ELF executable
changes nothing the kernel loads.

Where it is found: :data:`DEFAULT_PATH`, ``<sys.prefix>/libexec/cnisdk/cnisdk-shim``, which
``cnisdk build-shim`` writes by default and the container image fills at build time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from cnisdk._discovery import PluginEntry

__all__ = [
    "DEFAULT_PATH",
    "MAGIC",
    "SOURCE",
    "build",
    "is_compiled_shim",
    "read_trailer",
    "render_compiled_shim",
]

SOURCE = Path(__file__).with_name("_shim.c")
"""The C source of the compiled shim."""
DEFAULT_PATH = Path(sys.prefix) / "libexec" / "cnisdk" / "cnisdk-shim"
"""Where ``cnisdk install`` looks for the compiled shim, and ``cnisdk build-shim`` writes it."""
MAGIC = b"CNISHIM1"
IDENT = b"cnisdk-shim protocol 2"
"""Compiled into the shim; a binary without it speaks another protocol (or is no shim)."""
_FOOTER = 4 + len(MAGIC)
_MAX_TRAILER = 64 << 10
_CFLAGS = ("-std=c99", "-static", "-Os", "-s", "-Wall", "-Wextra")


def build(output: Path = DEFAULT_PATH, cc: str | None = None) -> Path:
    """Compile :data:`SOURCE` into a static executable at ``output`` (atomically, mode 0755).

    :param cc: the C compiler (default: ``$CC``, else ``cc``).
    :raises OSError: no compiler, or the build failed (the compiler's output in the message).
    """
    from cnisdk._files import write_atomic

    compiler = cc or os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler {compiler!r} found")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnisdk-build-shim-") as tmp:
        built = Path(tmp) / output.name
        done = subprocess.run(
            [compiler, *_CFLAGS, "-o", str(built), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise OSError(f"{compiler} failed:\n{done.stderr.strip()}")
        write_atomic(output, built.read_bytes(), 0o755)
    return output


def _bare(data: bytes) -> bytes:
    """The executable without a trailer (a per-plugin copy given as the source is fine)."""
    if data.endswith(MAGIC) and len(data) >= _FOOTER:
        size = int.from_bytes(data[-_FOOTER : -len(MAGIC)], "big")
        if size <= len(data) - _FOOTER:
            return data[: len(data) - _FOOTER - size]
    return data


def render_compiled_shim(entry: PluginEntry, python: str) -> bytes:
    """The compiled shim configured for ``entry`` (an :class:`~cnisdk._launcher.AgentEntry`).

    :raises ValueError: the shim binary is not a cnisdk compiled shim, or a value does not fit.
    :raises OSError: the shim binary cannot be read.
    """
    from cnisdk._agent_protocol import MAX_ANSWER_HEAD, MAX_FRAME
    from cnisdk._launcher import (
        CONNECT_TIMEOUT,
        AgentEntry,
        _about,
        _checked_agent,
        exec_code,
        request_header_prefix,
    )

    if not isinstance(entry, AgentEntry) or entry.shim_binary is None:
        raise ValueError(f"{entry.type}: not an agent entry with a compiled shim")
    _checked_agent(entry)
    binary = _bare(Path(entry.shim_binary).read_bytes())
    if not binary.startswith(b"\x7fELF") or IDENT not in binary:
        raise ValueError(
            f"{entry.shim_binary} is not a cnisdk compiled shim for protocol 2 "
            "(rebuild it with `cnisdk build-shim`)"
        )
    fields = {
        "about": _about(entry, ", agent mode, compiled shim"),
        "type": entry.type,
        "socket": entry.socket_path,
        "fallback": entry.fallback,
        "python": python,
        "exec": exec_code(entry, python),
        "header": request_header_prefix(entry).decode(),
        "connect_timeout_ms": str(int(CONNECT_TIMEOUT * 1000)),
        "answer_timeout_ms": str(int(entry.answer_timeout * 1000)),
        "max_head": str(MAX_ANSWER_HEAD),
        "max_frame": str(MAX_FRAME),
    }
    entries = b""
    for key, value in fields.items():
        raw = value.encode("utf-8", "surrogateescape")
        if b"\0" in raw:
            raise ValueError(f"{key} must not contain a NUL byte: {value!r}")
        entries += key.encode() + b"=" + raw + b"\0"
    if len(entries) > _MAX_TRAILER:
        raise ValueError("the shim's configuration is too large")
    return binary + entries + len(entries).to_bytes(4, "big") + MAGIC


def _trailer_size(handle: BinaryIO) -> int | None:
    size = handle.seek(0, os.SEEK_END)
    if size < _FOOTER:
        return None
    handle.seek(size - _FOOTER)
    footer = handle.read(_FOOTER)
    length = int.from_bytes(footer[:4], "big")
    if footer[4:] != MAGIC or length > min(_MAX_TRAILER, size - _FOOTER):
        return None
    return length


def is_compiled_shim(handle: BinaryIO) -> bool:
    """Whether the open file ``handle`` is a configured compiled shim (any position)."""
    return _trailer_size(handle) is not None


def read_trailer(path: Path) -> dict[str, str]:
    """The configuration of a per-plugin copy of the compiled shim.

    :raises ValueError: ``path`` has no trailer.
    """
    with path.open("rb") as handle:
        length = _trailer_size(handle)
        if length is None:
            raise ValueError(f"{path} is not a configured cnisdk compiled shim")
        handle.seek(-_FOOTER - length, os.SEEK_END)
        entries = handle.read(length)
    fields: dict[str, str] = {}
    for item in entries.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            fields[key.decode()] = value.decode("utf-8", "surrogateescape")
    return fields
