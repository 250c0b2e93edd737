"""The wire protocol between shims and ``cnisdk agent``: frames, headers, answers, limits.

One request per connection. Every message is a sequence of *frames*; a frame is a 4-byte
unsigned big-endian length followed by that many bytes.

Version 2 (what both shims speak)
---------------------------------

Request, client to agent: three frames.

1. the header, a JSON object: ``{"v": 2, "op": "request", "type": TYPE}``, plus
   ``"stdin_errno": N`` when the shim's read of its stdin failed with errno ``N`` (the agent
   then answers what exec mode answers: CNI error 5, ``error reading from stdin: ...``, at
   the point where exec mode reads stdin). ``{"v": 2, "op": "health"}`` (one frame) asks for
   the health document instead.
2. the shim's whole environment as raw bytes, ``NAME=VALUE`` entries each ended by a NUL byte
   (the ``CNI_*`` variables and whatever else the runtime set: a plugin's delegates inherit
   it in exec mode too). The agent decodes it as Python decodes ``os.environ`` (UTF-8 with
   ``surrogateescape``; the first of repeated names wins; entries without ``=`` are skipped).
3. the stdin bytes (empty when the shim did not read stdin: VERSION, no ``CNI_COMMAND``).

The client then keeps its end open and waits; closing it (the runtime killed the shim)
cancels the request, as killing an exec-mode plugin would stop it.

Answer, agent to client: a header frame of ASCII text, ``STATUS`` then a space and the rest:

- ``ok EXIT_CODE``, then two more frames: the plugin's stdout bytes and its stderr bytes
  (its request log and any about text), exactly what the plugin binary would have written
  in exec mode;
- ``unserved MESSAGE``: this agent does not serve the type;
- ``bad-request MESSAGE``: the request could not be read or is malformed;
- ``refused MESSAGE``: the peer's uid may not use this agent (``cnisdk agent --allow-uid``);
  sent at once, before anything is read from the peer.

After ``unserved``, ``bad-request`` and ``refused`` the request did not run (a shim falls back
as if the agent were unreachable). Text needs no parser, so a shim decodes an answer with a
split and an integer conversion. A ``health`` request is answered with a JSON header frame
(the health document, ``{"v": 1, "status": "ok", "types": ...}``) and two empty frames.

Version 1 (still accepted)
--------------------------

Request: two frames, a JSON header ``{"v": 1, "op": "request", "type": TYPE, "env": {NAME:
VALUE}}`` (values that held undecodable bytes as lone surrogates ``\\udcXX``), then stdin.
Answer: a JSON header ``{"v": 1, "status": STATUS, ...}`` with ``"exit_code"`` for ``ok`` or
``"error"`` otherwise, then stdout and stderr frames for ``ok``.

Limits
------

Every frame's length is checked before it is read (:data:`MAX_HEADER`, :data:`MAX_ENV`,
:data:`MAX_STDIN` for requests; shims accept answers up to :data:`MAX_ANSWER_HEAD` and
:data:`MAX_FRAME`); a header nested deeper than the interpreter can decode is a bad request.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from cnisdk._skel import MAX_STDIN  # the stdin a request may carry, in exec mode too

__all__ = [
    "FRAME_PREFIX",
    "MAX_ANSWER_HEAD",
    "MAX_ENV",
    "MAX_FRAME",
    "MAX_HEADER",
    "MAX_STDIN",
    "PROTOCOL_VERSION",
    "BadRequest",
    "Header",
    "answer_head",
    "decode_frame_length",
    "encode_frame",
    "health_answer",
    "parse_env",
    "parse_header",
    "request_health",
]

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_HEADER = 4 << 20
"""Largest request header accepted: a version 1 header holds the environment, a few KiB."""
MAX_ENV = 4 << 20
"""Largest environment frame accepted (version 2)."""
MAX_ANSWER_HEAD = 64 << 10
"""Largest answer header a shim accepts; the agent's messages are cut to fit."""
MAX_FRAME = 64 << 20
"""Largest stdout or stderr frame a shim accepts; the agent never sends more."""
_MAX_TYPE = 255
_MAX_MESSAGE = 4096
FRAME_PREFIX = 4
"""Bytes of the big-endian length before each frame."""


class BadRequest(Exception):
    """The request cannot be served as sent; answered ``bad-request`` in ``version``."""

    def __init__(self, message: str, version: int = PROTOCOL_VERSION) -> None:
        super().__init__(message)
        self.version = version


@dataclass
class Header:
    """A validated request header."""

    version: int
    op: str
    plugin_type: str = ""
    env: dict[str, str] = field(default_factory=dict)
    """Version 1 only: the environment travels in the header."""
    stdin_errno: int = 0


def encode_frame(data: bytes) -> bytes:
    """``data`` as one frame: a 4-byte big-endian length, then the bytes."""
    return len(data).to_bytes(FRAME_PREFIX, "big") + data


def decode_frame_length(prefix: bytes) -> int:
    """The length a 4-byte frame prefix announces."""
    return int.from_bytes(prefix, "big")


def _short(value: Any) -> str:
    """``repr(value)`` cut to a length fit for a message (it came from the peer)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_header(data: bytes) -> Header:
    """Validate a request header frame.

    :raises BadRequest: for anything but a well-formed version 1 or 2 header.
    """
    try:
        doc = json.loads(data)
    except RecursionError:
        raise BadRequest("the header is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise BadRequest(f"the header is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the header is not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise BadRequest(
            f"unsupported protocol version {_short(version)} (this agent speaks 1 and 2)"
        )
    op = doc.get("op")
    if op == "health":
        return Header(version, "health")
    if op != "request":
        raise BadRequest(f"unknown op {_short(op)}", version)
    plugin_type = doc.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise BadRequest("no plugin type", version)
    if len(plugin_type) > _MAX_TYPE:
        raise BadRequest("plugin type too long", version)
    header = Header(version, "request", plugin_type)
    if version == 1:
        env = doc.get("env")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise BadRequest("env must be an object of strings", version)
        header.env = env
        return header
    errno = doc.get("stdin_errno", 0)
    if type(errno) is not int or not 0 <= errno < 4096:
        raise BadRequest(f"stdin_errno must be an errno number, not {_short(errno)}", version)
    header.stdin_errno = errno
    return header


def parse_env(data: bytes) -> dict[str, str]:
    """A version 2 environment frame as ``os.environ`` would hold it."""
    env: dict[str, str] = {}
    # NUL and "=" are ASCII, never inside a UTF-8 sequence: decoding the frame at once gives
    # what decoding each name and value would.
    for entry in os.fsdecode(data).split("\0"):
        name, sep, value = entry.partition("=")
        if sep:
            env.setdefault(name, value)
    return env


def answer_head(version: int, status: str, *, exit_code: int = 0, error: str = "") -> bytes:
    """The answer's header frame for a client speaking ``version``."""
    message = error if len(error) <= _MAX_MESSAGE else error[: _MAX_MESSAGE - 3] + "..."
    if version == 1:
        fields: dict[str, Any] = {"v": 1, "status": status}
        if status == "ok":
            fields["exit_code"] = exit_code
        else:
            fields["error"] = message
        return encode_frame(json.dumps(fields, separators=(",", ":")).encode())
    if status == "ok":
        return encode_frame(b"ok %d" % exit_code)
    return encode_frame(f"{status} {message}".encode("utf-8", "backslashreplace"))


def health_answer(doc: dict[str, Any]) -> bytes:
    """The answer to a ``health`` request (any version): the JSON document, two empty frames."""
    head = json.dumps({"v": 1, **doc}, separators=(",", ":")).encode()
    return encode_frame(head) + encode_frame(b"") + encode_frame(b"")


def request_health(socket_path: str | os.PathLike[str], timeout: float = 5.0) -> dict[str, Any]:
    """Ask the agent at ``socket_path`` for its health document (blocking).

    :raises OSError: if the agent is unreachable; ``ValueError`` for a malformed answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(socket_path))
        sock.sendall(encode_frame(b'{"v":2,"op":"health"}'))
        data = b""
        while len(data) <= MAX_ANSWER_HEAD + 3 * FRAME_PREFIX:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if len(data) < FRAME_PREFIX:
        raise ValueError("short health answer")
    size = decode_frame_length(data[:FRAME_PREFIX])
    doc = json.loads(data[FRAME_PREFIX : FRAME_PREFIX + size])
    if not isinstance(doc, dict):
        raise ValueError("health answer is not a JSON object")
    return doc
