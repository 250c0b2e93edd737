"""Find and run CNI plugins: what Go's ``pkg/invoke`` does, on anyio.

Every call takes a ``timeout`` (seconds per plugin process) rather than relying on an outer
cancel scope only, because the process must be killed, not just abandoned, when it expires.
Each plugin starts in a session (and process group) of its own, and a timeout or cancellation
kills that whole group: a plugin's children (a shell script's ``sleep``, a helper it spawned)
die with it instead of lingering and holding its output pipes open. libcni gets the same from
its context deadline killing the plugin; a group kill is the stronger form of it.

Used from both sides of the protocol: a runtime (``cnisdk._runtime``) runs each plugin of a chain
here, and a plugin delegates to another one (typically IPAM) through ``delegate_*``.

Finding and running a binary is one seam, :class:`PluginExec` (Go's ``invoke.Exec``): every
function here that runs a plugin takes one (``exec=``; ``None`` is :data:`DEFAULT_EXEC`, the
host's binaries), and so do a request (``handle_request(..., exec=)``) and the runtime. The
test kit's ``FakeExec`` is another implementation, so tests run chains and delegation
without binaries and without patching anything.

Error mapping follows Go's ``RawExec.pluginErr``: a plugin that exits non-zero and prints a
parsable error document yields a :class:`~cnisdk.spec.CNIError` with its code (a missing code
is 0). The three fall-back cases (no output, stderr only, unparsable stdout) yield
:class:`PluginExecError`, which is a ``CNIError`` with code 0 because Go returns a
``*types.Error`` with code 0 there too; that way a Go-compatible caller sees the same code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from cnisdk.spec._errors import CNIError
from cnisdk.spec._json import dumps_compact, fold_keys, go_json_syntax_error, go_quote, loads_go

if TYPE_CHECKING:
    from cnisdk.spec._result import AnyResult

__all__ = [
    "DEFAULT_EXEC",
    "HostExec",
    "PluginExec",
    "PluginExecError",
    "PluginNotFoundError",
    "PluginOutputTooLargeError",
    "VersionInfo",
    "check_plugin_lookup",
    "decode_version_info",
    "delegate",
    "delegate_add",
    "error_from_output",
    "exec_plugin",
    "exec_plugin_with_result",
    "exec_plugin_without_result",
    "find_plugin",
    "get_version_info",
    "split_cni_path",
]

# The stdin libcni sends with VERSION: the newest version it speaks.
_VERSION_PROBE_STDIN = b'{"cniVersion":"1.1.0"}'
# Plugins built on an old skel require these even for VERSION, so libcni fakes them.
_VERSION_PROBE_ENV = {
    "CNI_COMMAND": "VERSION",
    "CNI_CONTAINERID": "",
    "CNI_NETNS": "dummy",
    "CNI_ARGS": "",
    "CNI_IFNAME": "dummy",
    "CNI_PATH": "dummy",
}
# A VERSION answer is a few hundred bytes; a plugin printing more is not answering it.
_VERSION_MAX_OUTPUT = 64 * 1024
# A plugin binary being replaced on disk (an install in progress) fails exec with ETXTBSY;
# libcni retries five times, one second apart, and so do we.
_REAP_WAIT = 5.0  # seconds; a SIGKILLed process is gone at once unless the kernel is stuck
_TEXT_BUSY_RETRIES = 5
_TEXT_BUSY_DELAY = 1.0
# Go's names for the signals a plugin most likely dies of ("signal: killed").
_GO_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
}


class PluginNotFoundError(Exception):
    """The plugin type is not a regular file on any ``CNI_PATH`` directory (Go's message).

    :ivar plugin_type: the type looked for.
    :ivar paths: the directories searched.
    """

    def __init__(self, message: str, plugin_type: str = "", paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.plugin_type = plugin_type
        self.paths = tuple(paths)


class PluginExecError(CNIError):
    """A plugin failed without a parsable error document.

    ``msg`` is Go's text (``netplugin failed ...``) and ``code`` is 0, as in Go, where these
    cases are also a ``*types.Error`` with an unset code. ``returncode`` is the plugin's exit
    status (negative: the signal that killed it), for callers that word their own message.
    """

    def __init__(self, msg: str, returncode: int | None = None) -> None:
        super().__init__(0, msg)
        self.returncode = returncode


class PluginOutputTooLargeError(PluginExecError):
    """A plugin wrote more than the caller allows on stdout or stderr; it was killed."""


@dataclass(frozen=True)
class VersionInfo:
    """What a plugin answered to VERSION."""

    cni_version: str
    """The version the plugin reported its answer in."""
    supported_versions: tuple[str, ...]
    """The config versions the plugin accepts (an exact string match decides)."""

    def supports(self, version: str) -> bool:
        """Whether a config version is accepted; ``""`` means 0.1.0, as libcni treats it."""
        return (version or "0.1.0") in self.supported_versions


class PluginExec(Protocol):
    """Finds plugin binaries on ``CNI_PATH`` and runs them: the boundary between cnisdk and the
    host, as Go's ``invoke.Exec`` is for libcni and ``invoke.Delegate*``.

    cnisdk's own implementation runs the host's binaries; the test kit's
    :class:`~cnisdk.testing.FakeExec` runs none. Give one to
    :func:`~cnisdk.handle_request` (a plugin's delegations) or to the test kit's
    :func:`~cnisdk.testing.invoke`.
    """

    def find_plugin(self, plugin_type: str, paths: Sequence[str]) -> str:
        """The path of the binary for ``plugin_type``: the first on ``paths``.

        :raises Exception: when there is none (cnisdk's says so in Go's words).
        """
        ...

    async def exec_plugin(
        self,
        path: str,
        environ: Mapping[str, str],
        stdin: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        max_output: int | None = None,
    ) -> bytes:
        """Run the binary at ``path`` with exactly ``environ`` and ``stdin``; return its stdout.

        :raises CNIError: the plugin failed (its error document, or Go's text when there is
            none).
        :raises TimeoutError: it ran longer than ``timeout`` seconds.
        :raises PluginOutputTooLargeError: it wrote more than ``max_output`` bytes on stdout
            or stderr.
        """
        ...


def split_cni_path(value: str) -> list[str]:
    """Split a ``CNI_PATH`` value like Go's ``filepath.SplitList`` (``""`` is no directory)."""
    return value.split(os.pathsep) if value else []


def check_plugin_lookup(plugin_type: str, paths: Sequence[str]) -> None:
    """What Go's ``FindInPath`` refuses before it looks: no name, a name with ``/``, no paths.

    :raises PluginNotFoundError: with Go's messages.
    """
    if plugin_type == "":
        raise PluginNotFoundError("no plugin name provided")
    if os.sep in plugin_type:
        raise PluginNotFoundError(f"invalid plugin name: {plugin_type}")
    if not paths:
        raise PluginNotFoundError("no paths provided")


def find_plugin(plugin_type: str, paths: Sequence[str]) -> str:
    """Find a plugin binary as Go's ``invoke.FindInPath`` does.

    :param plugin_type: the config's ``type``; it must not contain ``/``.
    :param paths: directories searched in order; the first regular file (after following
        symlinks) named ``plugin_type`` wins.
    :raises PluginNotFoundError: with Go's messages (``failed to find plugin "x" in path [/a /b]``).
    """
    check_plugin_lookup(plugin_type, paths)
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    raise PluginNotFoundError(
        f"failed to find plugin {go_quote(plugin_type)} in path [{' '.join(paths)}]",
        plugin_type,
        paths,
    )


def _exit_text(returncode: int) -> str:
    # Go's *exec.ExitError text, which libcni puts into its messages.
    if returncode < 0:
        signum = -returncode
        try:
            name = (
                _GO_SIGNAL_NAMES.get(signal.Signals(signum))
                or (signal.strsignal(signum) or f"signal {signum}").lower()
            )
        except ValueError:
            name = f"signal {signum}"
        return f"signal: {name}"
    return f"exit status {returncode}"


def error_from_output(returncode: int, stdout: bytes, stderr: bytes) -> CNIError:
    """Turn a failed plugin's output into the error libcni would return."""
    exit_text = _exit_text(returncode)
    if not stdout:
        if not stderr:
            return PluginExecError(
                f"netplugin failed with no error message: {exit_text}", returncode
            )
        # libcni >= 1.2 appends the exit status; older versions stopped after the quote.
        return PluginExecError(f"netplugin failed: {go_quote(stderr)}: {exit_text}", returncode)
    problem = go_json_syntax_error(stdout)
    if problem is None:
        doc = loads_go(stdout)
        if doc is None:
            return CNIError(0, "")
        if not isinstance(doc, dict):
            kind = "array" if isinstance(doc, list) else type(doc).__name__
            problem = f"json: cannot unmarshal {kind} into Go value of type types.Error"
        else:
            try:
                return CNIError.from_dict(fold_keys(doc, ("code", "msg", "details")))
            except ValueError as exc:
                problem = str(exc)
    return PluginExecError(
        f"netplugin failed but error parsing its diagnostic message {go_quote(stdout)}: {problem}",
        returncode,
    )


def _write_stderr(data: bytes) -> None:
    # Plugins log on stderr; hand it on to ours so the operator sees it, never to stdout.
    if not data:
        return
    try:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        # A replaced sys.stderr (pytest capture, a text-only stream): write text instead.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(data.decode("utf-8", "replace"))


async def exec_plugin(
    path: str,
    environ: Mapping[str, str],
    stdin: bytes,
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    max_output: int | None = None,
) -> bytes:
    """Run one plugin process and return its stdout.

    :param environ: the plugin's whole environment, used exactly as given.
    :param timeout: seconds; on expiry the plugin's whole process group is killed.
    :param max_output: bytes allowed on each of stdout and stderr; past that the plugin's
        process group is killed (``None``: no limit, as Go's exec).
    :raises PluginOutputTooLargeError: the plugin wrote more than ``max_output``.
    :raises CNIError: the plugin's error document (``PluginExecError`` when there is none).
    :raises TimeoutError: the plugin ran longer than ``timeout``.
    :raises OSError: the file could not be executed.
    """
    env = dict(environ)
    for attempt in range(_TEXT_BUSY_RETRIES + 1):
        try:
            with anyio.fail_after(timeout):
                returncode, stdout, stderr = await _run(path, env, stdin, max_output)
        except TimeoutError:
            raise TimeoutError(f"plugin {path} timed out after {timeout:g}s") from None
        except OSError as exc:
            if exc.errno == errno.ETXTBSY and attempt < _TEXT_BUSY_RETRIES:
                await anyio.sleep(_TEXT_BUSY_DELAY)
                continue
            raise
        break
    _write_stderr(stderr)
    if returncode != 0:
        raise error_from_output(returncode, stdout, stderr)
    return stdout


async def _run(
    path: str, env: dict[str, str], stdin: bytes, max_output: int | None = None
) -> tuple[int, bytes, bytes]:
    """Run to completion, feeding stdin and collecting both outputs concurrently.

    The plugin leads a new session, so its children share its process group. On cancellation
    (a timeout) that group is killed with SIGKILL: otherwise a child still holding stdout
    would outlive the plugin (``Process.aclose`` alone kills only the plugin itself). The
    same happens when an output grows past ``max_output``.
    """
    outputs: dict[str, bytes] = {}
    overflowed: list[str] = []

    async def feed(stream: ByteSendStream) -> None:
        # A plugin may exit without reading stdin (VERSION never reads it); like Go's exec,
        # a broken pipe there is not an error.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(stdin)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.aclose()

    async def drain(name: str, stream: ByteReceiveStream, scope: anyio.CancelScope) -> None:
        chunks: list[bytes] = []
        size = 0
        async for chunk in stream:
            size += len(chunk)
            if max_output is not None and size > max_output:
                overflowed.append(name)
                scope.cancel()
                return
            chunks.append(chunk)
        outputs[name] = b"".join(chunks)

    async with await anyio.open_process(
        [path],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        to_plugin, from_stdout, from_stderr = process.stdin, process.stdout, process.stderr
        if to_plugin is None or from_stdout is None or from_stderr is None:
            _kill_group(process.pid)  # unreachable with three PIPEs; never run a plugin blind
            raise OSError(f"{path}: started without pipes")
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(feed, to_plugin)
                group.start_soon(drain, "stdout", from_stdout, group.cancel_scope)
                group.start_soon(drain, "stderr", from_stderr, group.cancel_scope)
            if overflowed:
                _kill_group(process.pid)
                await process.wait()
                raise PluginOutputTooLargeError(
                    f"plugin {path} wrote more than {max_output} bytes on {overflowed[0]}"
                )
            returncode = await process.wait()
        except BaseException:
            _kill_group(process.pid)
            # Let the child watcher reap it before the transport closes: closing polls the
            # process itself, which would steal the exit status from the watcher (asyncio then
            # logs "Unknown child process pid N").
            with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_WAIT):
                await process.wait()
            raise
    return returncode, outputs["stdout"], outputs["stderr"]


def _kill_group(pgid: int) -> None:
    # The group outlives its leader while any member does; once all are gone, nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class HostExec:
    """The :class:`PluginExec` that runs the host's binaries: :func:`find_plugin` and
    :func:`exec_plugin` (Go's ``DefaultExec``)."""

    find_plugin = staticmethod(find_plugin)
    exec_plugin = staticmethod(exec_plugin)


#: What every function here uses when given no ``exec``.
DEFAULT_EXEC: PluginExec = HostExec()


def parse_plugin_result(netconf: bytes, stdout: bytes) -> AnyResult:
    """Parse an ADD result as libcni does.

    Output ``null`` or ``{}``, or a result without (or with an empty) ``cniVersion``, is read as
    the config's version; a result that names its own version is parsed in that version.
    """
    from cnisdk._skel import decode_config_version
    from cnisdk.spec._result_decode import parse_result

    try:
        config_version = decode_config_version(netconf)
    except CNIError as exc:
        # libcni returns the decoder's plain error here, not a code.
        raise ValueError(exc.msg) from exc
    try:
        doc = loads_go(stdout)
    except ValueError as exc:
        raise ValueError(
            f"failed to unmarshal raw result: {exc} result {stdout.decode('utf-8', 'replace')}"
        ) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(
            "failed to unmarshal raw result: json: cannot unmarshal non-object into Go value "
            f"of type map[string]interface {{}} result {stdout.decode('utf-8', 'replace')}"
        )
    version = doc.get("cniVersion")
    if not isinstance(version, str) or version == "":
        doc["cniVersion"] = version = config_version
    return parse_result(doc, version)


async def exec_plugin_with_result(
    path: str,
    netconf: bytes,
    environ: Mapping[str, str],
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    exec: PluginExec | None = None,
) -> AnyResult:
    """Run a plugin's ADD and parse its result (Go's ``ExecPluginWithResult``)."""
    stdout = await (exec or DEFAULT_EXEC).exec_plugin(path, environ, netconf, timeout=timeout)
    return parse_plugin_result(netconf, stdout)


async def exec_plugin_without_result(
    path: str,
    netconf: bytes,
    environ: Mapping[str, str],
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    exec: PluginExec | None = None,
) -> None:
    """Run a plugin verb whose output is ignored (Go's ``ExecPluginWithoutResult``)."""
    await (exec or DEFAULT_EXEC).exec_plugin(path, environ, netconf, timeout=timeout)


def decode_version_info(data: bytes) -> VersionInfo:
    """Decode a VERSION answer as Go's ``version.PluginDecoder`` does, with its messages."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"decoding version info: {go_json_syntax_error(data) or exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(
            "decoding version info: json: cannot unmarshal non-object into Go value of type "
            "version.pluginInfo"
        )
    doc = fold_keys(doc, ("cniVersion", "supportedVersions"))
    version = doc.get("cniVersion") or ""
    supported = doc.get("supportedVersions") or []
    if (
        not isinstance(version, str)
        or not isinstance(supported, list)
        or not all(isinstance(v, str) for v in supported)
    ):
        raise ValueError("decoding version info: fields have the wrong JSON types")
    if version == "":
        raise ValueError("decoding version info: missing field cniVersion")
    if not supported:
        if version == "0.2.0":
            return VersionInfo(version, ("0.1.0", "0.2.0"))
        raise ValueError("decoding version info: missing field supportedVersions")
    return VersionInfo(version, tuple(supported))


async def get_version_info(
    path: str,
    *,
    timeout: float | None = 10,  # noqa: ASYNC109
    exec: PluginExec | None = None,
) -> VersionInfo:
    """Ask a plugin which spec versions it supports (Go's ``invoke.GetVersionInfo``).

    A plugin too old to know VERSION fails with ``unknown CNI_COMMAND: VERSION``; that counts
    as supporting only 0.1.0. The environment is the probe's fixed one (plus ``PATH``, so a
    script plugin's ``#!/usr/bin/env`` line works), like libcni's inherited environment.

    :raises PluginOutputTooLargeError: the plugin printed more than a VERSION answer can be
        (64 KiB); it was killed.
    :raises CNIError: the plugin failed in another way.
    :raises ValueError: the answer does not decode (Go's ``decoding version info: ...``).
    """
    env = {**os.environ, **_VERSION_PROBE_ENV}
    try:
        stdout = await (exec or DEFAULT_EXEC).exec_plugin(
            path, env, _VERSION_PROBE_STDIN, timeout=timeout, max_output=_VERSION_MAX_OUTPUT
        )
    except CNIError as exc:
        if str(exc) == "unknown CNI_COMMAND: VERSION":
            return VersionInfo("0.1.0", ("0.1.0",))
        raise
    return decode_version_info(stdout)


def _config_bytes(config: Mapping[str, Any] | bytes) -> bytes:
    return config if isinstance(config, bytes) else dumps_compact(dict(config))


def _delegate_target(
    plugin_type: str, command: str, environ: Mapping[str, str], exec: PluginExec
) -> tuple[str, dict[str, str]]:
    # Go's delegateCommon + DelegateArgs: the whole environment, only CNI_COMMAND replaced,
    # the plugin looked up on that environment's CNI_PATH.
    path = exec.find_plugin(plugin_type, split_cni_path(environ.get("CNI_PATH", "")))
    env = dict(environ)
    env["CNI_COMMAND"] = command
    return path, env


async def delegate_add(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
    exec: PluginExec | None = None,
) -> AnyResult:
    """Run another plugin's ADD, as Go's ``invoke.DelegateAdd``.

    :param config: the delegate's config (bytes are sent as is; a mapping is serialized).
    :param environ: the calling plugin's environment; the delegate inherits all of it.
    :param exec: finds and runs the delegate (default: the host's binaries).
    :return: the delegate's result, read in the config's ``cniVersion`` unless it names its own.
    """
    exec = exec or DEFAULT_EXEC
    path, env = _delegate_target(plugin_type, "ADD", environ, exec)
    return await exec_plugin_with_result(
        path, _config_bytes(config), env, timeout=timeout, exec=exec
    )


async def delegate(
    command: str,
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
    exec: PluginExec | None = None,
) -> None:
    """Run another plugin's CHECK, DEL, GC or STATUS, as Go's ``invoke.DelegateCheck``,
    ``DelegateDel``, ``DelegateGC`` and ``DelegateStatus`` do (no result).

    :param command: ``CHECK``, ``DEL``, ``GC`` or ``STATUS``.
    :raises ValueError: for another command (ADD has a result: :func:`delegate_add`).
    """
    if command not in ("CHECK", "DEL", "GC", "STATUS"):
        raise ValueError(f"delegate: unknown command {command!r}")
    exec = exec or DEFAULT_EXEC
    path, env = _delegate_target(plugin_type, command, environ, exec)
    await exec_plugin_without_result(path, _config_bytes(config), env, timeout=timeout, exec=exec)
