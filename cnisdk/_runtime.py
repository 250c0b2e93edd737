"""Run whole network configurations the way a container runtime does: libcni in Python.

:class:`CNIRuntime` mirrors libcni's ``AddNetworkList``, ``CheckNetworkList``,
``DelNetworkList``, ``GCNetworkList`` and ``GetStatusNetworkList`` (libcni >= 1.2 behaviour),
including the result cache in libcni's own on-disk format, so a node can switch between this
runtime and a Go one without losing track of attachments.

Errors. A failing plugin in ADD or DEL is reported as :class:`ChainError`, a
:class:`~cnisdk.spec.CNIError` whose ``msg`` is libcni's wrapped text
(``plugin type="bridge" failed (add): <msg>``), whose ``code`` and ``details`` are the plugin's
(999 when the cause was not a CNI error, e.g. a missing binary or a timeout) and whose
``cause`` is the original exception; ``str()`` therefore equals Go's ``err.Error()``. CHECK
and STATUS return a plugin's error unwrapped, as libcni does. GC collects every error into
:class:`GCError`.

Concurrency. Each attachment has its own cache file, and every write goes to a temporary
file in the same directory that is fsynced and then renamed over the target, so readers see
either the old or the new complete file. Parallel ADD/DEL for different containers therefore
never corrupt the cache. As the spec requires, callers must not run GC concurrently with
ADD/DEL of the same network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from cnisdk._confdir import LoadedConfList
from cnisdk._invoke import (
    DEFAULT_EXEC,
    PluginExec,
    exec_plugin_with_result,
    exec_plugin_without_result,
    get_version_info,
)
from cnisdk._plugin import Attachment
from cnisdk._result_cache import DEFAULT_CACHE_DIR, CachedAttachment, ResultCache
from cnisdk.spec._config import NetConfList
from cnisdk.spec._errors import CNIError, ErrorCode
from cnisdk.spec._json import dumps_compact, go_quote, go_sorted
from cnisdk.spec._names import (
    validate_container_id,
    validate_interface_name,
    validate_network_name,
)
from cnisdk.spec._versions import version_at_least

if TYPE_CHECKING:
    from cnisdk.spec._result import AnyResult

__all__ = [
    "DEFAULT_CACHE_DIR",
    "CNIRuntime",
    "CachedAttachment",
    "ChainError",
    "GCError",
    "RuntimeConf",
]


class ChainError(CNIError):
    """A plugin of a chain failed; ``msg`` is libcni's wrapped message.

    :ivar cause: the plugin's own error (a ``CNIError``, ``PluginNotFoundError``,
        ``TimeoutError``, ...).
    """

    def __init__(self, prefix: str, cause: BaseException) -> None:
        if isinstance(cause, CNIError):
            code, msg, details = cause.code, cause.msg, cause.details
        else:
            code, msg, details = ErrorCode.INTERNAL, str(cause), ""
        super().__init__(code, f"{prefix}: {msg}", details)
        self.cause = cause


class GCError(Exception):
    """One or more steps of a GC failed; ``errors`` has them all, ``str()`` joins them as Go."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)


@dataclass
class RuntimeConf:
    """The per-attachment arguments of one runtime call (libcni's ``RuntimeConf``)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    """``CNI_ARGS`` pairs, in order."""
    capability_args: dict[str, Any] = field(default_factory=dict)
    """Capability arguments; each plugin gets those it declares in ``capabilities``."""
    cache_dir: str = DEFAULT_CACHE_DIR
    """Used only when the :class:`CNIRuntime` has no cache directory of its own."""


def _plugin_description(plugin: Mapping[str, Any]) -> str:
    text = f"type={go_quote(str(plugin.get('type', '')))}"
    name = plugin.get("name")
    if isinstance(name, str) and name:
        text += f" name={go_quote(name)}"
    return text


def _build_config(
    plugin: Mapping[str, Any],
    name: str,
    version: str,
    prev_result: AnyResult | None,
    rt: RuntimeConf | None,
) -> bytes:
    """The stdin for one plugin: libcni's ``buildOneConfig`` (keys sorted, as Go marshals)."""
    from cnisdk.spec._result import result_to_dict

    doc = dict(plugin)
    doc["name"] = name
    doc["cniVersion"] = version
    if rt is not None:
        capabilities = plugin.get("capabilities") or {}
        runtime_config = {
            key: rt.capability_args[key]
            for key, enabled in capabilities.items()
            if enabled is True and key in rt.capability_args
        }
        if runtime_config:
            doc["runtimeConfig"] = runtime_config
    doc = go_sorted(doc)
    if prev_result is not None:
        doc["prevResult"] = result_to_dict(prev_result)
        doc = {k: doc[k] for k in sorted(doc)}
    return dumps_compact(doc)


def _validate_attachment(network: str, rt: RuntimeConf) -> None:
    validate_container_id(rt.container_id)
    validate_network_name(network)
    validate_interface_name(rt.ifname)


class CNIRuntime:
    """Runs conflists against plugin binaries like libcni's ``CNIConfig``.

    :param cni_path: directories searched for plugin binaries, in order.
    :param cache_dir: the result cache root (``<cache_dir>/results/...``); ``None`` uses each
        call's ``RuntimeConf.cache_dir`` (default ``/var/lib/cni``), as libcni does.
    :param timeout: seconds allowed for each plugin process; ``None`` waits indefinitely.
    :param environ: the environment plugins inherit (default: this process's); the ``CNI_*``
        variables of each call override it.
    :param exec: finds and runs the plugins, VERSION probes included (libcni's
        ``NewCNIConfig(path, exec)``); default: the host's binaries. A test hands in the test
        kit's ``FakeExec`` to run a chain without binaries.
    """

    def __init__(
        self,
        cni_path: Sequence[str],
        cache_dir: str | None = None,
        timeout: float | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        exec: PluginExec | None = None,
    ) -> None:
        self.cni_path = list(cni_path)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.exec = exec or DEFAULT_EXEC
        self._environ = environ

    # -- environment and cache paths -------------------------------------------------------

    def _env(self, command: str, rt: RuntimeConf | None) -> dict[str, str]:
        env = dict(os.environ if self._environ is None else self._environ)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=rt.container_id if rt else "",
            CNI_NETNS=rt.netns if rt else "",
            CNI_ARGS=";".join(f"{k}={v}" for k, v in rt.args) if rt else "",
            CNI_IFNAME=rt.ifname if rt else "",
            CNI_PATH=os.pathsep.join(self.cni_path),
        )
        return env

    def _cache(self, rt: RuntimeConf | None) -> ResultCache:
        if self.cache_dir is not None:
            return ResultCache(self.cache_dir)
        return ResultCache(rt.cache_dir if rt is not None else DEFAULT_CACHE_DIR)

    def cache_path(self, network: str, rt: RuntimeConf) -> Path:
        """``<cache_dir>/results/<network>-<containerID>-<ifname>``.

        :raises CNIError: a name that fails the spec's validation (so it never becomes a path).
        """
        return self._cache(rt).path(network, rt.container_id, rt.ifname)

    def _write_cache(self, result: AnyResult, conflist: NetConfList, rt: RuntimeConf) -> None:
        raw = conflist.raw if isinstance(conflist, LoadedConfList) else None
        self._cache(rt).write(
            result,
            raw if raw is not None else dumps_compact(conflist.to_dict()),
            CachedAttachment(
                container_id=rt.container_id,
                network=conflist.name,
                ifname=rt.ifname,
                config=b"",
                netns=rt.netns,
                cni_args=list(rt.args),
                capability_args=rt.capability_args,
            ),
        )

    def get_cached_result(self, conflist: NetConfList, rt: RuntimeConf) -> AnyResult | None:
        """The cached result of the last ADD, converted to the list's version.

        :return: ``None`` when there is no cache file.
        :raises ValueError: the file is corrupt or the result does not convert.
        :raises CNIError: invalid container ID, network name or interface name.
        """
        return self._cache(rt).result(
            conflist.name, rt.container_id, rt.ifname, conflist.effective_version
        )

    def cached_attachments(self, container_id: str = "") -> list[CachedAttachment]:
        """Every readable ``cniCacheV1`` entry (libcni's ``GetCachedAttachments``).

        :param container_id: only this container's entries, when not empty.
        """
        return self._cache(None).attachments(container_id)

    # -- verbs -----------------------------------------------------------------------------

    async def add(self, conflist: NetConfList, rt: RuntimeConf) -> AnyResult:
        """ADD every plugin in order, chaining results; cache and return the last result.

        :raises ChainError: a plugin failed (``plugin type="x" failed (add): ...``); nothing is
            rolled back, as in libcni: the caller is expected to DEL.
        """
        version = conflist.effective_version
        result: AnyResult | None = None
        for plugin in conflist.plugins:
            try:
                path = self.exec.find_plugin(str(plugin.get("type", "")), self.cni_path)
                _validate_attachment(conflist.name, rt)
                stdin = _build_config(plugin, conflist.name, version, result, rt)
                result = await exec_plugin_with_result(
                    path, stdin, self._env("ADD", rt), timeout=self.timeout, exec=self.exec
                )
            except Exception as exc:
                raise ChainError(f"plugin {_plugin_description(plugin)} failed (add)", exc) from exc
        if result is None:
            raise ValueError(f"network {go_quote(conflist.name)} has no plugins to run")
        try:
            await anyio.to_thread.run_sync(self._write_cache, result, conflist, rt)
        except (OSError, CNIError, ValueError) as exc:
            raise ChainError(
                f"failed to set network {go_quote(conflist.name)} cached result", exc
            ) from exc
        return result

    async def check(self, conflist: NetConfList, rt: RuntimeConf) -> None:
        """CHECK every plugin in order with the cached ADD result as ``prevResult``.

        :raises ValueError: the list's version is below 0.4.0, or the cache is unusable.
        :raises CNIError: the first plugin's error, unwrapped (as libcni returns it).
        """
        version = conflist.effective_version
        if not version_at_least(version, "0.4.0"):
            raise ValueError(
                f"configuration version {go_quote(version)} does not support the CHECK command"
            )
        if conflist.disable_check:
            return
        try:
            cached = self.get_cached_result(conflist, rt)
        except (ValueError, CNIError) as exc:
            raise ValueError(
                f"failed to get network {go_quote(conflist.name)} cached result: {exc}"
            ) from exc
        for plugin in conflist.plugins:
            path = self.exec.find_plugin(str(plugin.get("type", "")), self.cni_path)
            stdin = _build_config(plugin, conflist.name, version, cached, rt)
            await exec_plugin_without_result(
                path, stdin, self._env("CHECK", rt), timeout=self.timeout, exec=self.exec
            )

    async def delete(self, conflist: NetConfList, rt: RuntimeConf) -> None:
        """DEL every plugin in reverse order; remove the cache entry on success.

        From 0.4.0 on each plugin gets the cached ADD result as ``prevResult``. An unreadable
        cache entry is dropped and DEL proceeds without one (libcni >= 1.2).

        :raises ChainError: a plugin failed (``plugin type="x" failed (delete): ...``).
        """
        version = conflist.effective_version
        cached: AnyResult | None = None
        if version_at_least(version, "0.4.0"):
            try:
                cached = self.get_cached_result(conflist, rt)
            except (ValueError, CNIError):
                self._cache(rt).delete(conflist.name, rt.container_id, rt.ifname)
                cached = None
        for plugin in reversed(conflist.plugins):
            try:
                path = self.exec.find_plugin(str(plugin.get("type", "")), self.cni_path)
                stdin = _build_config(plugin, conflist.name, version, cached, rt)
                await exec_plugin_without_result(
                    path, stdin, self._env("DEL", rt), timeout=self.timeout, exec=self.exec
                )
            except Exception as exc:
                raise ChainError(
                    f"plugin {_plugin_description(plugin)} failed (delete)", exc
                ) from exc
        if cached is not None:
            # As libcni >= 1.2: the entry goes only when it was read (so never below 0.4.0).
            self._cache(rt).delete(conflist.name, rt.container_id, rt.ifname)

    async def gc(
        self, conflist: NetConfList, valid_attachments: Sequence[Attachment] | None = None
    ) -> None:
        """Garbage-collect a network (libcni's ``GCNetworkList``).

        First every cached attachment of this network not in ``valid_attachments`` is deleted
        with a full DEL; then, for lists at 1.1.0 or later, every plugin gets GC. Both steps
        continue past errors.

        :param valid_attachments: the attachments still in use; ``None`` means "none given":
            every cached attachment is deleted and plugins get no ``cni.dev/valid-attachments``.
        :raises GCError: with every error met.
        """
        if conflist.disable_gc:
            return
        valid = (
            {(a.container_id, a.ifname) for a in valid_attachments}
            if valid_attachments is not None
            else set()
        )
        errors: list[BaseException] = []
        for cached in self.cached_attachments():
            if cached.network != conflist.name:
                continue
            if (cached.container_id, cached.ifname) in valid:
                continue
            rt = RuntimeConf(
                container_id=cached.container_id,
                netns=cached.netns,
                ifname=cached.ifname,
                args=list(cached.cni_args),
                capability_args=dict(cached.capability_args),
            )
            try:
                await self.delete(conflist, rt)
            except Exception as exc:
                errors.append(
                    RuntimeError(
                        f"failed to delete stale attachment {rt.container_id} {rt.ifname}: {exc}"
                    )
                )
        version = conflist.effective_version
        if version_at_least(version, "1.1.0"):
            for plugin in conflist.plugins:
                doc = dict(plugin)
                doc["name"] = conflist.name
                doc["cniVersion"] = version
                if valid_attachments is not None:
                    listed = [
                        {"containerID": a.container_id, "ifname": a.ifname}
                        for a in valid_attachments
                    ]
                    # libcni >= 1.2.3 sends both spellings of the key (spec tag vs. HEAD).
                    doc["cni.dev/valid-attachments"] = listed
                    doc["cni.dev/attachments"] = listed
                plugin_type = str(plugin.get("type", ""))
                try:
                    path = self.exec.find_plugin(plugin_type, self.cni_path)
                    await exec_plugin_without_result(
                        path,
                        dumps_compact(go_sorted(doc)),
                        self._env("GC", None),
                        timeout=self.timeout,
                        exec=self.exec,
                    )
                except Exception as exc:
                    errors.append(RuntimeError(f"failed to GC plugin {plugin_type}: {exc}"))
        if errors:
            raise GCError(errors)

    async def status(self, conflist: NetConfList) -> None:
        """STATUS every plugin in order, stopping at the first error (returned unwrapped).

        Lists below 1.1.0 are not asked and count as ready.
        """
        version = conflist.effective_version
        if not version_at_least(version, "1.1.0"):
            return
        for plugin in conflist.plugins:
            doc = {**plugin, "name": conflist.name, "cniVersion": version}
            path = self.exec.find_plugin(str(plugin.get("type", "")), self.cni_path)
            await exec_plugin_without_result(
                path, dumps_compact(go_sorted(doc)), self._env("STATUS", None),
                timeout=self.timeout, exec=self.exec,
            )  # fmt: skip

    async def validate(self, conflist: NetConfList) -> list[str]:
        """Check every plugin exists and supports the list's version (``ValidateNetworkList``).

        :return: the capabilities enabled by any plugin, sorted.
        :raises ValueError: ``[e1 e2 ...]`` with every problem, as libcni formats them.
        """
        version = conflist.effective_version or "0.1.0"
        errors: list[str] = []
        capabilities: set[str] = set()
        for plugin in conflist.plugins:
            plugin_type = str(plugin.get("type", ""))
            try:
                path = self.exec.find_plugin(plugin_type, self.cni_path)
                info = await get_version_info(path, timeout=self.timeout, exec=self.exec)
                if version not in info.supported_versions:
                    errors.append(
                        f"plugin {plugin_type} does not support config version {go_quote(version)}"
                    )
            except Exception as exc:
                errors.append(str(exc))
            for key, enabled in (plugin.get("capabilities") or {}).items():
                if enabled is True:
                    capabilities.add(key)
        if errors:
            raise ValueError(f"[{' '.join(errors)}]")
        return sorted(capabilities)
