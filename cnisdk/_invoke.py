"""Find and run CNI plugins: what Go's ``pkg/invoke`` does, on anyio.

Every call takes a ``timeout`` (seconds per plugin process) rather than relying on an outer
cancel scope only, because the process must be killed, not just abandoned, when it expires.
Each plugin starts in a session (and process group) of its own, and a timeout or cancellation
kills that whole group: a plugin's children (a shell script's ``sleep``, a helper it spawned)
die with it instead of lingering and holding its output pipes open. libcni gets the same from
its context deadline killing the plugin; a group kill is the stronger form of it.

Used from both sides of the protocol: a runtime (``cnisdk._runtime``) runs each plugin of a chain
here, and a plugin delegates to another one (typically IPAM) through ``delegate_*``.

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
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from cnisdk.spec._errors import CNIError
from cnisdk.spec._json import dumps_compact, fold_keys, go_json_syntax_error, go_quote, loads_go

if TYPE_CHECKING:
    from cnisdk.spec._result import AnyResult

__all__ = [
    "PluginExecError",
    "PluginNotFoundError",
    "PluginOutputTooLargeError",
    "VersionInfo",
    "decode_version_info",
    "delegate_add",
    "delegate_check",
    "delegate_delete",
    "delegate_gc",
    "delegate_status",
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
    """The plugin type is not a regular file on any ``CNI_PATH`` directory (Go's message)."""


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


def split_cni_path(value: str) -> list[str]:
    """Split a ``CNI_PATH`` value like Go's ``filepath.SplitList`` (``""`` is no directory)."""
    return value.split(os.pathsep) if value else []


def find_plugin(plugin_type: str, paths: Sequence[str]) -> str:
    """Find a plugin binary as Go's ``invoke.FindInPath`` does.

    :param plugin_type: the config's ``type``; it must not contain ``/``.
    :param paths: directories searched in order; the first regular file (after following
        symlinks) named ``plugin_type`` wins.
    :raises PluginNotFoundError: with Go's messages (``failed to find plugin "x" in path [/a /b]``).
    """
    if plugin_type == "":
        raise PluginNotFoundError("no plugin name provided")
    if os.sep in plugin_type:
        raise PluginNotFoundError(f"invalid plugin name: {plugin_type}")
    if not paths:
        raise PluginNotFoundError("no paths provided")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    raise PluginNotFoundError(
        f"failed to find plugin {go_quote(plugin_type)} in path [{' '.join(paths)}]"
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


def _error_from_output(returncode: int, stdout: bytes, stderr: bytes) -> CNIError:
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
        raise _error_from_output(returncode, stdout, stderr)
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
        assert process.stdin and process.stdout and process.stderr
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(feed, process.stdin)
                group.start_soon(drain, "stdout", process.stdout, group.cancel_scope)
                group.start_soon(drain, "stderr", process.stderr, group.cancel_scope)
            if overflowed:
                _kill_group(process.pid)
                await process.wait()
                raise PluginOutputTooLargeError(
                    f"plugin {path} wrote more than {max_output} bytes on {overflowed[0]}"
                )
            returncode = await process.wait()
        except BaseException:
            _kill_group(process.pid)
            raise
    return returncode, outputs["stdout"], outputs["stderr"]


def _kill_group(pgid: int) -> None:
    # The group outlives its leader while any member does; once all are gone, nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _config_version(netconf: bytes) -> str:
    """The config's ``cniVersion`` as Go's ``version.ConfigDecoder`` reads it."""
    try:
        doc = json.loads(netconf)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"decoding version from network config: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("decoding version from network config: not a JSON object")
    version = fold_keys(doc, ("cniVersion",)).get("cniVersion", "")
    if not isinstance(version, str):
        raise ValueError("decoding version from network config: cniVersion is not a string")
    return version or "0.1.0"


def parse_plugin_result(netconf: bytes, stdout: bytes) -> AnyResult:
    """Parse an ADD result as libcni does.

    Output ``null`` or ``{}``, or a result without (or with an empty) ``cniVersion``, is read as
    the config's version; a result that names its own version is parsed in that version.
    """
    from cnisdk.spec._result import parse_result

    config_version = _config_version(netconf)
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
) -> AnyResult:
    """Run a plugin's ADD and parse its result (Go's ``ExecPluginWithResult``)."""
    stdout = await exec_plugin(path, environ, netconf, timeout=timeout)
    return parse_plugin_result(netconf, stdout)


async def exec_plugin_without_result(
    path: str,
    netconf: bytes,
    environ: Mapping[str, str],
    *,
    timeout: float | None = None,  # noqa: ASYNC109
) -> None:
    """Run a plugin verb whose output is ignored (Go's ``ExecPluginWithoutResult``)."""
    await exec_plugin(path, environ, netconf, timeout=timeout)


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


async def get_version_info(path: str, *, timeout: float | None = 10) -> VersionInfo:  # noqa: ASYNC109
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
        stdout = await exec_plugin(
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
    plugin_type: str, command: str, environ: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    # Go's delegateCommon + DelegateArgs: the whole environment, only CNI_COMMAND replaced,
    # the plugin looked up on that environment's CNI_PATH.
    path = find_plugin(plugin_type, split_cni_path(environ.get("CNI_PATH", "")))
    env = dict(environ)
    env["CNI_COMMAND"] = command
    return path, env


async def delegate_add(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
) -> AnyResult:
    """Run another plugin's ADD, as Go's ``invoke.DelegateAdd``.

    :param config: the delegate's config (bytes are sent as is; a mapping is serialized).
    :param environ: the calling plugin's environment; the delegate inherits all of it.
    :return: the delegate's result, read in the config's ``cniVersion`` unless it names its own.
    """
    path, env = _delegate_target(plugin_type, "ADD", environ)
    return await exec_plugin_with_result(path, _config_bytes(config), env, timeout=timeout)


async def _delegate_no_result(
    command: str,
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    environ: Mapping[str, str],
    timeout: float | None,  # noqa: ASYNC109
) -> None:
    path, env = _delegate_target(plugin_type, command, environ)
    await exec_plugin_without_result(path, _config_bytes(config), env, timeout=timeout)


async def delegate_check(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
) -> None:
    """Run another plugin's CHECK, as Go's ``invoke.DelegateCheck``."""
    await _delegate_no_result("CHECK", plugin_type, config, environ, timeout)


async def delegate_delete(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
) -> None:
    """Run another plugin's DEL, as Go's ``invoke.DelegateDel``."""
    await _delegate_no_result("DEL", plugin_type, config, environ, timeout)


async def delegate_gc(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
) -> None:
    """Run another plugin's GC, as Go's ``invoke.DelegateGC``."""
    await _delegate_no_result("GC", plugin_type, config, environ, timeout)


async def delegate_status(
    plugin_type: str,
    config: Mapping[str, Any] | bytes,
    *,
    environ: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109
) -> None:
    """Run another plugin's STATUS, as Go's ``invoke.DelegateStatus``."""
    await _delegate_no_result("STATUS", plugin_type, config, environ, timeout)
