"""Invoke a plugin the way a runtime would: in-process (fast) or as a subprocess (real exec)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnisdk._plugin import Plugin
from cnisdk._skel import handle_request
from cnisdk.spec._errors import CNIError
from cnisdk.spec._result import AnyResult
from cnisdk.spec._result_decode import parse_result

if TYPE_CHECKING:
    from cnisdk._invoke import PluginExec

__all__ = ["NO_PLUGINS", "Invocation", "cni_env", "invoke", "invoke_subprocess"]

#: The kit's default ``CNI_PATH``: not empty (Go's skel requires ``CNI_PATH`` for ADD, CHECK,
#: DEL, GC and STATUS), yet no plugin can be found there, because ``/dev/null`` is not a
#: directory and nothing can be created under it. A test that forgets its fake therefore
#: cannot run a plugin installed on the host; one that wants real plugins passes
#: ``cni_path=`` (e.g. the ``cni_bin_dir`` fixture's answer).
NO_PLUGINS = ("/dev/null",)


@dataclass(frozen=True)
class Invocation:
    """The outcome of one plugin invocation."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    config_version: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def result(self) -> AnyResult:
        """The ADD result, parsed in the config's version. :raises CNIError: if it failed."""
        if self.exit_code != 0:
            raise self.error
        return parse_result(self.stdout, self.config_version)

    @property
    def error(self) -> CNIError:
        """The error the plugin printed. :raises AssertionError: if it succeeded."""
        if self.exit_code == 0:
            raise AssertionError(f"plugin succeeded: {self.stdout!r}")
        return CNIError.from_json(self.stdout)

    def json(self) -> Any:
        return json.loads(self.stdout)


def cni_env(
    command: str,
    *,
    container_id: str = "cnisdk-test",
    netns: str = "",
    ifname: str = "eth0",
    args: str | Mapping[str, str] = "",
    cni_path: Sequence[str] = NO_PLUGINS,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``CNI_*`` environment a runtime sets for ``command`` (all keys present, as libcni).

    :param cni_path: the plugin directories; the default, ``/dev/null``, satisfies Go's
        skel but holds no plugin, so nothing installed on the host runs unless a test asks
        for it here.
    """
    raw_args = args if isinstance(args, str) else ";".join(f"{k}={v}" for k, v in args.items())
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": raw_args,
        "CNI_PATH": os.pathsep.join(cni_path),
    }
    env.update(extra or {})
    return env


def _stdin(config: Mapping[str, Any] | bytes | str) -> tuple[bytes, str]:
    if isinstance(config, bytes | str):
        data = config.encode() if isinstance(config, str) else config
        doc = json.loads(data)
    else:
        doc = dict(config)
        data = json.dumps(doc).encode()
    version = (doc.get("cniVersion") or "0.1.0") if isinstance(doc, dict) else "0.1.0"
    return data, version


async def invoke(
    plugin: Plugin[Any] | type[Plugin[Any]],
    command: str,
    config: Mapping[str, Any] | bytes | str,
    *,
    env: Mapping[str, str] | None = None,
    exec: PluginExec | None = None,
    **env_options: Any,
) -> Invocation:
    """Run ``plugin`` in this process through the same pipeline exec mode uses.

    :param config: the stdin config (a mapping is serialised to JSON).
    :param env: the full environment; if omitted, built by :func:`cni_env` from
        ``env_options`` (``netns=``, ``container_id=``, ``ifname=``, ``args=``, ``cni_path=``).
    :param exec: what the plugin's delegations (``ctx.delegate_*``) go to, typically a
        :class:`FakeExec`; default: binaries on ``CNI_PATH``, of which the default
        ``CNI_PATH`` has none.
    """
    instance = plugin() if isinstance(plugin, type) else plugin
    data, version = _stdin(config)
    environ = dict(env) if env is not None else cni_env(command, **env_options)
    response = await handle_request(instance, environ, data, exec=exec)
    return Invocation(response.exit_code, response.stdout, response.stderr, version)


async def invoke_subprocess(
    executable: str | Path,
    command: str,
    config: Mapping[str, Any] | bytes | str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - a per-exec bound, as a runtime sets one
    **env_options: Any,
) -> Invocation:
    """Exec a plugin binary (a launcher, or any CNI plugin) as a runtime does.

    Only the ``CNI_*`` variables and ``PATH`` are passed, like a runtime's minimal environment.
    """
    import anyio

    data, version = _stdin(config)
    environ = dict(env) if env is not None else cni_env(command, **env_options)
    environ.setdefault("PATH", os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    with anyio.fail_after(timeout):
        completed = await anyio.run_process([str(executable)], input=data, env=environ, check=False)
    return Invocation(completed.returncode, completed.stdout, completed.stderr, version)
