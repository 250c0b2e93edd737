"""The exec protocol: ``CNI_*`` environment and stdin in, one JSON document and an exit code out.

``handle_request`` is a pure function of (plugin, environment, stdin) so the same pipeline can
serve requests in-process (tests, a node agent); ``run`` is the exec-mode entry a launcher calls.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from cnisdk._files import go_path_error
from cnisdk._plugin import Attachment, Context, Plugin, Request
from cnisdk._version import __version__
from cnisdk.spec._convert import convert_result, to_current
from cnisdk.spec._errors import CNIError, ConversionError, ErrorCode
from cnisdk.spec._json import GoJSONError, dumps_compact, go_json_kind, loads_go
from cnisdk.spec._names import (
    validate_container_id,
    validate_interface_name,
    validate_network_name,
)
from cnisdk.spec._result import result_to_json
from cnisdk.spec._result_decode import parse_prev_result
from cnisdk.spec._versions import CURRENT_VERSION, version_at_least

if TYPE_CHECKING:
    from cnisdk._invoke import PluginExec

__all__ = ["Response", "decode_config_version", "handle_request", "run"]

# The CNI_* variables in the order Go's skel checks (and names) them, with the commands
# that require each one.
_ENV_TABLE: tuple[tuple[str, frozenset[str]], ...] = (
    ("CNI_COMMAND", frozenset({"ADD", "CHECK", "DEL", "GC", "STATUS"})),
    ("CNI_CONTAINERID", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_NETNS", frozenset({"ADD", "CHECK"})),
    ("CNI_IFNAME", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_ARGS", frozenset()),
    ("CNI_PATH", frozenset({"ADD", "CHECK", "DEL", "GC", "STATUS"})),
    ("CNI_NETNS_OVERRIDE", frozenset()),
)
# Verbs that exist only from a given spec version on.
_MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_STDIN = 64 << 20
"""The largest stdin a request may carry (a config with its prevResult: a few KiB in practice)."""


@dataclass(frozen=True)
class Response:
    """What a plugin process would produce: stdout bytes, stderr bytes and the exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int


StdinSource = bytes | Callable[[], bytes]


async def handle_request(
    plugin: Plugin[Any],
    environ: Mapping[str, str],
    stdin: StdinSource,
    *,
    log_stream: IO[str] | None = None,
    exec: PluginExec | None = None,
) -> Response:
    """Run one CNI request through ``plugin`` exactly as a plugin binary would.

    :param environ: the process environment (only ``CNI_*`` and ``CNISDK_LOG_LEVEL`` are read).
    :param stdin: the stdin bytes, or a callable that reads them; it is not called for VERSION,
        which never reads stdin.
    :param log_stream: where the request's log goes (default: ``sys.stderr``).
    :param exec: finds and runs the plugins this request delegates to (``ctx.delegate_*``),
        as Go passes an ``invoke.Exec`` to ``invoke.DelegateAdd``. Default: the host's
        binaries on ``CNI_PATH``; tests give a :class:`~cnisdk.testing.FakeExec`.
    """
    stream = log_stream if log_stream is not None else sys.stderr
    log = _make_logger(plugin, environ.get("CNISDK_LOG_LEVEL"), None, stream)
    try:
        return await _dispatch(plugin, environ, stdin, log, exec)
    except CNIError as exc:
        return Response(_error_json(exc), b"", 1)
    except Exception as exc:  # a plugin bug must still produce a CNI error, never a traceback
        log.error("internal error: %s", exc, exc_info=True)
        return Response(_error_json(CNIError(ErrorCode.INTERNAL, _one_line(exc))), b"", 1)
    finally:
        _close_handlers(log)


async def _dispatch(
    plugin: Plugin[Any],
    environ: Mapping[str, str],
    stdin: StdinSource,
    log: logging.Logger,
    exec: PluginExec | None,
) -> Response:
    command = environ.get("CNI_COMMAND", "")
    missing: list[str] = []
    for name, required_for in _ENV_TABLE:
        value = environ.get(name, "")
        required = command in required_for
        if value == "":
            if required or name == "CNI_COMMAND":
                missing.append(name)
        elif required and name == "CNI_CONTAINERID":
            validate_container_id(value)
        elif required and name == "CNI_IFNAME":
            validate_interface_name(value)
    if missing:
        if command == "" and (about := _about(plugin)):
            versions = ", ".join(plugin.supported_versions)
            text = f"{about}\nCNI protocol versions supported: {versions}\n"
            return Response(b"", text.encode(), 0)
        raise CNIError(
            ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            f"required env variables [{','.join(missing)}] missing",
        )

    if command == "VERSION":
        info = {"cniVersion": CURRENT_VERSION, "supportedVersions": list(plugin.supported_versions)}
        return Response(dumps_compact(info) + b"\n", b"", 0)

    data = _read_stdin(stdin)
    _validate_config_name(data)

    if command in ("ADD", "DEL"):
        _check_version(data, plugin)
    elif command in _MIN_VERSION:
        _check_verb_version(command, data, plugin)
    else:
        raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, f"unknown CNI_COMMAND: {command}")

    # Newest Go skel checks ADD and DEL (not CHECK) after the callback and prints the result
    # before the error; checking first keeps the output one document. Decided here only:
    # the request carries the decision, and opening the namespace for the plugin never
    # decides it again.
    override = _netns_override(environ)
    if command in ("ADD", "DEL") and not override:
        _refuse_own_netns(environ.get("CNI_NETNS", ""))
    request = Request(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns_path=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        raw_args=environ.get("CNI_ARGS", ""),
        cni_path=tuple(p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p),
        stdin=data,
        environ=environ,
        netns_override=override,
        exec=exec,
    )
    return await _call(plugin, request, log)


async def _call(plugin: Plugin[Any], request: Request, log: logging.Logger) -> Response:
    command, data, environ = request.command, request.stdin, request.environ
    doc = _load_json(data)
    # DEL is best-effort and must release resources even when the cached result a runtime
    # hands back cannot be read, whatever it holds; ADD and CHECK depend on it and fail.
    unreadable = None
    if command == "DEL":
        doc, unreadable = _without_non_object_prev_result(doc)
    config = _parse_config(plugin, doc)
    level, log_file = plugin.log_settings(config)
    if level or log_file:
        # Reconfigure the request's logger in place: handle_request logs internal errors
        # (with the traceback) to it after this returns, and closes it.
        _configure_logger(log, level or environ.get("CNISDK_LOG_LEVEL"), log_file)
    prev_result = None
    if config.prev_result is not None and command != "GC":
        try:
            prev_result = to_current(parse_prev_result(config.prev_result, config.cni_version))
        except ConversionError as exc:
            if command != "DEL":
                raise
            unreadable = str(exc)
    if unreadable:
        log.warning("ignoring unreadable prevResult on DEL: %s", unreadable)
    ctx: Context[Any] = Context(
        request,
        config,
        prev_result,
        log,
        valid_attachments=_valid_attachments(doc) if command == "GC" else (),
    )
    try:
        if command == "ADD":
            if plugin.chained:
                ctx.require_prev_result()
            result = await plugin.add(ctx)
            if result is None:
                raise CNIError(
                    ErrorCode.INTERNAL, f"{type(plugin).__name__}.add returned no result"
                )
            return Response(result_to_json(convert_result(result, config.cni_version)), b"", 0)
        if command == "DEL":
            await plugin.delete(ctx)
        elif command == "CHECK":
            await plugin.check(ctx)
        elif command == "GC":
            await plugin.gc(ctx)
        else:
            await plugin.status(ctx)
        return Response(b"", b"", 0)
    finally:
        ctx.close()


def run(plugin: Plugin[Any] | type[Plugin[Any]]) -> NoReturn:
    """Exec-mode entry point: serve the request in this process's environment and exit.

    stdout is reserved for the protocol: file descriptor 1 is pointed at stderr while the
    plugin runs, so a stray ``print()`` or a child process cannot corrupt the result.

    The request runs on a plain ``asyncio`` event loop: anyio works on it unchanged and loads
    its asyncio backend only when the plugin first uses an anyio primitive, so a plugin that
    needs none does not pay for importing it.
    """
    import asyncio

    closed = _claim_std_fds()
    instance = plugin() if isinstance(plugin, type) else plugin
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    environ = dict(os.environ)

    def read_stdin() -> bytes:
        if 0 in closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return read_all(0, MAX_STDIN)

    response = asyncio.run(handle_request(instance, environ, read_stdin))
    if response.stderr:
        sys.stderr.buffer.write(response.stderr)
        sys.stderr.flush()
    view = memoryview(response.stdout)
    while view:
        view = view[os.write(protocol_out, view) :]
    os.close(protocol_out)
    sys.exit(response.exit_code)


def _claim_std_fds() -> set[int]:
    """Put ``/dev/null`` on whichever of fds 0-2 the runtime left closed; return which.

    Otherwise the next file opened would land on one of them: a closed fd 1 would make the
    result go wherever that file points, a closed fd 2 would turn the stdout protection into a
    copy of stdout.
    """
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    return closed


def read_all(fd: int, limit: int) -> bytes:
    """Read ``fd`` to its end, refusing more than ``limit`` bytes.

    :raises OSError: a read failed, or the input is over ``limit`` (``EFBIG``).
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 1 << 16):
        size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _about(plugin: Plugin[Any]) -> str:
    return plugin.about or f"CNI plugin {type(plugin).__name__} (cnisdk {__version__})"


def _read_stdin(stdin: StdinSource) -> bytes:
    if isinstance(stdin, bytes):
        return stdin
    try:
        return stdin()
    except OSError as exc:
        reason = go_path_error("read", "/dev/stdin", exc)
        raise CNIError(ErrorCode.IO_FAILURE, f"error reading from stdin: {reason}") from exc


# reflect's String() of the anonymous structs Go's skel decodes stdin into.
_GO_STRUCTS = {
    "name": 'struct { Name string "json:\\"name\\"" }',
    "cniVersion": 'struct { CNIVersion string "json:\\"cniVersion\\"" }',
}


def _decode_object(data: bytes, prefix: str, key: str) -> dict[str, Any]:
    """``json.Unmarshal(data, &struct{...})`` as Go's skel does it, with Go's error texts."""
    try:
        doc = _load_json(data)
    except GoJSONError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"{prefix}: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CNIError(
            ErrorCode.DECODING_FAILURE,
            f"{prefix}: json: cannot unmarshal {go_json_kind(doc)} into Go value of type "
            f"{_GO_STRUCTS[key]}",
        )
    return doc


def _load_json(data: bytes) -> Any:
    """Parse stdin as Go's decoder does (see ``loads_go``): what Go accepts and nothing else;
    invalid UTF-8 and lone surrogates become U+FFFD.

    :raises GoJSONError: carrying Go's syntax-error message.
    """
    return loads_go(data)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _error_json(exc: CNIError) -> bytes:
    """The error document; text from undecodable environment bytes (surrogate escapes) is
    written as ``\\ufffd``, as Go's json.Marshal writes invalid UTF-8."""
    try:
        return exc.to_json()
    except UnicodeEncodeError:
        text = exc.msg + exc.details
        sentinel = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
        clean = CNIError(
            exc.code, _SURROGATE.sub(sentinel, exc.msg), _SURROGATE.sub(sentinel, exc.details)
        )
        return clean.to_json().replace(sentinel.encode(), b"\\ufffd")


def _string_field(doc: dict[str, Any], key: str, prefix: str) -> str:
    """A string field matched case-insensitively (last match wins), as Go decodes it; null
    leaves the field as it was (absent: ``""``)."""
    value: Any = ""
    for name, candidate in doc.items():
        if name.lower() == key.lower() and candidate is not None:
            value = candidate
    if not isinstance(value, str):
        raise CNIError(
            ErrorCode.DECODING_FAILURE,
            f"{prefix}: json: cannot unmarshal {go_json_kind(value)} into Go struct field "
            f".{key} of type string",
        )
    return value


def _validate_config_name(data: bytes) -> None:
    prefix = "error unmarshall network config"
    name = _string_field(_decode_object(data, prefix, "name"), "name", prefix)
    validate_network_name(name)


def decode_config_version(data: bytes) -> str:
    """A config's ``cniVersion`` as Go's ``version.ConfigDecoder`` reads it: absent, null or
    ``""`` is 0.1.0.

    :raises CNIError: code 6 with Go's ``decoding version from network config: ...`` text.
    """
    prefix = "decoding version from network config"
    version = _string_field(_decode_object(data, prefix, "cniVersion"), "cniVersion", prefix)
    return version or "0.1.0"


def _check_version(data: bytes, plugin: Plugin[Any]) -> None:
    version = decode_config_version(data)
    if version not in plugin.supported_versions:
        supported = " ".join(f'"{v}"' for v in plugin.supported_versions)
        raise CNIError(
            ErrorCode.INCOMPATIBLE_CNI_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports [{supported}]',
        )


def _check_verb_version(command: str, data: bytes, plugin: Plugin[Any]) -> None:
    version = decode_config_version(data)
    try:
        if not version_at_least(version, _MIN_VERSION[command]):
            raise CNIError(
                ErrorCode.INCOMPATIBLE_CNI_VERSION, f"config version does not allow {command}"
            )
        for supported in plugin.supported_versions:
            if version_at_least(supported, version):
                _check_version(data, plugin)
                return
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, str(exc)) from exc
    raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION, f"plugin version does not allow {command}")


def _netns_override(environ: Mapping[str, str]) -> bool:
    """Whether ``CNI_NETNS_OVERRIDE`` lets ``CNI_NETNS`` be the plugin's own namespace.

    Newest Go skel's rule, to the letter: ``1``, or ``true`` in any case; nothing is stripped,
    so ``" true"`` and ``"yes"`` do not override.
    """
    value = environ.get("CNI_NETNS_OVERRIDE", "")
    return value == "1" or value.upper() == "TRUE"


def _refuse_own_netns(path: str) -> None:
    """Refuse a ``CNI_NETNS`` that is this thread's own namespace (Go skel's ``CheckNetNS``).

    A path that cannot be stat'ed counts as "not the same", as in Go (DEL of a namespace that
    is gone must go on).
    """
    if not path:
        return
    try:
        target = os.stat(path)
    except OSError:
        return
    try:
        own = os.stat("/proc/thread-self/ns/net")
    except OSError as exc:
        raise CNIError(ErrorCode.INVALID_NETNS, "get plugin's netns failed") from exc
    if (target.st_dev, target.st_ino) == (own.st_dev, own.st_ino):
        raise CNIError(
            ErrorCode.INVALID_NETNS,
            "plugin's netns and netns from CNI_NETNS should not be the same",
        )


def _without_non_object_prev_result(doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``doc`` without its ``prevResult`` when that is not an object (or null), and why.

    Keys match case-insensitively and the last one wins, as Go decodes them.
    """
    keys = [key for key in doc if key.lower() == "prevresult"]
    if not keys or doc[keys[-1]] is None or isinstance(doc[keys[-1]], dict):
        return doc, None
    kind = go_json_kind(doc[keys[-1]])
    return {k: v for k, v in doc.items() if k not in keys}, f"prevResult is {kind}, not an object"


def _parse_config(plugin: Plugin[Any], doc: dict[str, Any]) -> Any:
    try:
        return plugin.config_model.model_validate(doc)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise CNIError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"invalid network config: {problems[0]}",
            "; ".join(problems[1:]),
        ) from exc


def _valid_attachments(doc: dict[str, Any]) -> tuple[Attachment, ...]:
    # Spec 1.1.0's tag text named the key cni.dev/attachments; libcni sends valid-attachments.
    raw = doc.get("cni.dev/valid-attachments", doc.get("cni.dev/attachments"))
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "cni.dev/valid-attachments must be a list")
    attachments = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise CNIError(
                ErrorCode.INVALID_NETWORK_CONFIG,
                "cni.dev/valid-attachments entries must be objects",
            )
        attachments.append(
            Attachment(str(entry.get("containerID", "")), str(entry.get("ifname", "")))
        )
    return tuple(attachments)


def _make_logger(
    plugin: Plugin[Any], level: str | None, log_file: str | None, stream: IO[str]
) -> logging.Logger:
    # A private logger per request: concurrent requests (in an agent) never share handlers.
    log = logging.Logger(f"cnisdk.{type(plugin).__name__}")
    handler: logging.Handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    log.addHandler(handler)
    _configure_logger(log, level, log_file)
    return log


def _configure_logger(log: logging.Logger, level: str | None, log_file: str | None) -> None:
    log.setLevel(_level(level))
    formatter = logging.Formatter(_LOG_FORMAT)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            log.warning("cannot open log file %s: %s", log_file, exc)
        else:
            file_handler.setFormatter(formatter)
            log.addHandler(file_handler)


def _level(name: str | None) -> int:
    if not name:
        return logging.WARNING
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.WARNING


def _close_handlers(log: logging.Logger) -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__
