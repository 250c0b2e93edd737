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

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import PrivateAttr

from cnisdk._invoke import (
    exec_plugin_with_result,
    exec_plugin_without_result,
    find_plugin,
    get_version_info,
    go_quote,
)
from cnisdk._plugin import Attachment
from cnisdk.spec._config import NetConfList, parse_conflist, parse_netconf
from cnisdk.spec._errors import CNIError, ErrorCode
from cnisdk.spec._json import dumps_compact
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
    "LoadedConfList",
    "RuntimeConf",
    "load_conflist",
    "pick_config",
]

DEFAULT_CACHE_DIR = "/var/lib/cni"
_CACHE_KIND = "cniCacheV1"
_CONF_EXTENSIONS = (".conf", ".conflist", ".json")


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


class LoadedConfList(NetConfList):
    """A :class:`NetConfList` that remembers the bytes it was read from (libcni caches them)."""

    _raw: bytes = PrivateAttr(default=b"")


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


@dataclass(frozen=True)
class CachedAttachment:
    """One cached attachment (libcni's ``NetworkAttachment``)."""

    container_id: str
    network: str
    ifname: str
    config: bytes
    netns: str
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]


def _conflist_bytes(conflist: NetConfList) -> bytes:
    if isinstance(conflist, LoadedConfList) and conflist._raw:
        return conflist._raw
    return dumps_compact(conflist.to_dict())


def conflist_from_bytes(data: bytes) -> LoadedConfList:
    """Parse conflist bytes (libcni's ``ConfListFromBytes``), keeping the bytes for the cache."""
    parsed = parse_conflist(data)
    loaded = LoadedConfList.model_validate(parsed.to_dict())
    loaded._raw = data
    return loaded


def conflist_from_conf(data: bytes) -> LoadedConfList:
    """Wrap a single plugin config in a list, as libcni's ``ConfListFromConf`` does.

    The list carries the config's ``name`` and ``cniVersion``; its bytes are the Go-marshalled
    wrapper (keys sorted), which is what libcni caches for such a network.
    """
    conf = parse_netconf(data)
    name = conf.get("name", "")
    version = conf.get("cniVersion", "")
    wrapper = _go_sorted({"cniVersion": version, "name": name, "plugins": [conf]})
    return conflist_from_bytes(dumps_compact(wrapper))


def load_conflist(path: str | os.PathLike[str]) -> LoadedConfList:
    """Load a ``.conflist``, or a ``.conf``/``.json`` single config upgraded to a list.

    Like libcni, a ``.conflist`` whose ``loadOnlyInlinedPlugins`` is false also gets the
    ``*.conf`` files of the directory ``<its dir>/<network name>/`` appended, in lexical order.

    :raises ValueError: libcni's parse errors; ``OSError`` when the file cannot be read.
    """
    file = Path(path)
    data = file.read_bytes()
    if file.suffix in (".conf", ".json"):
        return conflist_from_conf(data)
    loaded = conflist_from_bytes(data)
    if not loaded.load_only_inlined_plugins:
        extra = _plugins_from_dir(file.parent, loaded.name)
        if extra:
            loaded.plugins = [*loaded.plugins, *extra]
    return loaded


def _plugins_from_dir(base: Path, network: str) -> list[dict[str, Any]]:
    try:
        validate_network_name(network)
    except CNIError:
        return []  # never turn an unchecked name into a path
    directory = base / network
    if not directory.is_dir():
        return []
    return [parse_netconf(p.read_bytes()) for p in sorted(directory.glob("*.conf"))]


def pick_config(
    directory: str | os.PathLike[str], *, log: list[str] | None = None
) -> tuple[str, LoadedConfList]:
    """Choose a directory's network as libcni/kubelet do.

    Files ending in ``.conf``, ``.conflist`` or ``.json`` are tried in lexical order; the first
    that loads and has at least one plugin wins.

    :param log: if given, one line is appended per skipped file, saying why.
    :raises FileNotFoundError: no usable configuration in the directory.
    """
    base = Path(directory)
    try:
        names = sorted(p.name for p in base.iterdir() if p.suffix in _CONF_EXTENSIONS)
    except OSError as exc:
        raise FileNotFoundError(f"no networks found in {base}: {exc}") from exc
    for name in names:
        path = base / name
        if not path.is_file():
            continue
        try:
            loaded = load_conflist(path)
        except (OSError, ValueError) as exc:
            if log is not None:
                log.append(f"skipping {path}: {exc}")
            continue
        if not loaded.plugins:
            if log is not None:
                log.append(f"skipping {path}: no plugins")
            continue
        return str(path), loaded
    raise FileNotFoundError(f"no networks found in {base}")


def find_network(directory: str | os.PathLike[str], name: str) -> LoadedConfList:
    """The network named ``name`` in a config directory (libcni's ``LoadConfList``)."""
    base = Path(directory)
    for suffix in ((".conflist",), (".conf", ".json")):
        for path in sorted(p for p in base.glob("*") if p.suffix in suffix and p.is_file()):
            try:
                loaded = load_conflist(path)
            except (OSError, ValueError):
                continue
            if loaded.name == name:
                return loaded
    raise FileNotFoundError(f'no net configuration with name "{name}" in {base}')


def _go_sorted(value: Any) -> Any:
    # Go marshals map[string]interface{} with sorted keys, at every level.
    if isinstance(value, Mapping):
        return {k: _go_sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_sorted(v) for v in value]
    return value


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
    doc = _go_sorted(doc)
    if prev_result is not None:
        doc["prevResult"] = result_to_dict(prev_result)
        doc = {k: doc[k] for k in sorted(doc)}
    return dumps_compact(doc)


def _validate_attachment(network: str, rt: RuntimeConf) -> None:
    validate_container_id(rt.container_id)
    validate_network_name(network)
    validate_interface_name(rt.ifname)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the directory entry is on disk too.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CNIRuntime:
    """Runs conflists against plugin binaries like libcni's ``CNIConfig``.

    :param cni_path: directories searched for plugin binaries, in order.
    :param cache_dir: the result cache root (``<cache_dir>/results/...``); ``None`` uses each
        call's ``RuntimeConf.cache_dir`` (default ``/var/lib/cni``), as libcni does.
    :param timeout: seconds allowed for each plugin process; ``None`` waits indefinitely.
    :param environ: the environment plugins inherit (default: this process's); the ``CNI_*``
        variables of each call override it.
    """

    def __init__(
        self,
        cni_path: Sequence[str],
        cache_dir: str | None = None,
        timeout: float | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.cni_path = list(cni_path)
        self.cache_dir = cache_dir
        self.timeout = timeout
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

    def _cache_root(self, rt: RuntimeConf | None) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        return Path(rt.cache_dir if rt is not None else DEFAULT_CACHE_DIR)

    def cache_path(self, network: str, rt: RuntimeConf) -> Path:
        """``<cache_dir>/results/<network>-<containerID>-<ifname>``.

        :raises CNIError: a name that fails the spec's validation (so it never becomes a path).
        """
        _validate_attachment(network, rt)
        return self._cache_root(rt) / "results" / f"{network}-{rt.container_id}-{rt.ifname}"

    # -- cache -----------------------------------------------------------------------------

    def _write_cache(self, result: AnyResult, conflist: NetConfList, rt: RuntimeConf) -> None:
        from cnisdk.spec._result import result_to_dict

        # Field order and omissions of libcni's cachedInfo struct; nested maps are sorted
        # because Go marshals them from map[string]interface{}.
        doc: dict[str, Any] = {
            "kind": _CACHE_KIND,
            "containerId": rt.container_id,
            "config": base64.b64encode(_conflist_bytes(conflist)).decode("ascii"),
            "ifName": rt.ifname,
            "networkName": conflist.name,
        }
        if rt.netns:
            doc["netns"] = rt.netns
        if rt.args:
            doc["cniArgs"] = [[k, v] for k, v in rt.args]
        if rt.capability_args:
            doc["capabilityArgs"] = _go_sorted(rt.capability_args)
        doc["result"] = _go_sorted(result_to_dict(result))
        _write_atomic(self.cache_path(conflist.name, rt), dumps_compact(doc), 0o600)

    def _delete_cache(self, network: str, rt: RuntimeConf) -> None:
        try:
            path = self.cache_path(network, rt)
        except CNIError:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def get_cached_result(self, conflist: NetConfList, rt: RuntimeConf) -> AnyResult | None:
        """The cached result of the last ADD, converted to the list's version.

        Reads libcni's ``cniCacheV1`` files and legacy files holding a bare result.

        :return: ``None`` when there is no cache file.
        :raises ValueError: the file is corrupt or the result does not convert.
        :raises CNIError: invalid container ID, network name or interface name.
        """
        from cnisdk.spec._result import convert_result, parse_result

        path = self.cache_path(conflist.name, rt)
        try:
            data = path.read_bytes()
        except OSError:
            return None  # libcni ignores read errors: the attachment may never have been cached
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"failed to parse cached result {path}: {exc}") from exc
        if isinstance(doc, dict) and doc.get("kind") == _CACHE_KIND:
            raw = doc.get("result") or {}
        else:
            raw = doc  # a legacy cache file is the bare result
        if not isinstance(raw, dict):
            raise ValueError(f"cached result {path} is not a JSON object")
        version = raw.get("cniVersion") or "0.1.0"
        if not isinstance(version, str):
            raise ValueError(f"cached result {path} has a non-string cniVersion")
        result = parse_result(raw, version)
        target = conflist.effective_version
        try:
            return convert_result(result, target)
        except ValueError as exc:
            raise ValueError(
                f"failed to convert cached result to config version {go_quote(target)}: {exc}"
            ) from exc

    def cached_attachments(self, container_id: str = "") -> list[CachedAttachment]:
        """Every readable ``cniCacheV1`` entry (libcni's ``GetCachedAttachments``).

        :param container_id: only this container's entries, when not empty.
        """
        directory = self._cache_root(None) / "results"
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return []
        found: list[CachedAttachment] = []
        for name in names:
            if name.startswith("."):
                continue  # our in-flight temporary files
            if container_id:
                part = f"-{container_id}-"
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            try:
                doc = json.loads((directory / name).read_bytes())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(doc, dict) or doc.get("kind") != _CACHE_KIND:
                continue
            if container_id and doc.get("containerId") != container_id:
                continue
            if not doc.get("ifName") or not doc.get("networkName"):
                continue
            try:
                config = base64.b64decode(doc.get("config") or "")
            except ValueError:
                config = b""
            found.append(
                CachedAttachment(
                    container_id=str(doc.get("containerId", "")),
                    network=str(doc["networkName"]),
                    ifname=str(doc["ifName"]),
                    config=config,
                    netns=str(doc.get("netns", "")),
                    cni_args=[(str(k), str(v)) for k, v in doc.get("cniArgs") or []],
                    capability_args=dict(doc.get("capabilityArgs") or {}),
                )
            )
        return found

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
                path = find_plugin(str(plugin.get("type", "")), self.cni_path)
                _validate_attachment(conflist.name, rt)
                stdin = _build_config(plugin, conflist.name, version, result, rt)
                result = await exec_plugin_with_result(
                    path, stdin, self._env("ADD", rt), timeout=self.timeout
                )
            except Exception as exc:
                raise ChainError(f"plugin {_plugin_description(plugin)} failed (add)", exc) from exc
        assert result is not None  # a parsed conflist has at least one plugin
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
            path = find_plugin(str(plugin.get("type", "")), self.cni_path)
            stdin = _build_config(plugin, conflist.name, version, cached, rt)
            await exec_plugin_without_result(
                path, stdin, self._env("CHECK", rt), timeout=self.timeout
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
                self._delete_cache(conflist.name, rt)
                cached = None
        for plugin in reversed(conflist.plugins):
            try:
                path = find_plugin(str(plugin.get("type", "")), self.cni_path)
                stdin = _build_config(plugin, conflist.name, version, cached, rt)
                await exec_plugin_without_result(
                    path, stdin, self._env("DEL", rt), timeout=self.timeout
                )
            except Exception as exc:
                raise ChainError(
                    f"plugin {_plugin_description(plugin)} failed (delete)", exc
                ) from exc
        if cached is not None:
            # As libcni >= 1.2: the entry goes only when it was read (so never below 0.4.0).
            self._delete_cache(conflist.name, rt)

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
                    path = find_plugin(plugin_type, self.cni_path)
                    await exec_plugin_without_result(
                        path,
                        dumps_compact(_go_sorted(doc)),
                        self._env("GC", None),
                        timeout=self.timeout,
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
            path = find_plugin(str(plugin.get("type", "")), self.cni_path)
            await exec_plugin_without_result(
                path, dumps_compact(_go_sorted(doc)), self._env("STATUS", None),
                timeout=self.timeout,
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
                info = await get_version_info(
                    find_plugin(plugin_type, self.cni_path), timeout=self.timeout
                )
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
