"""The ``Plugin`` base class that plugin authors subclass, and the per-request ``Context``."""

from __future__ import annotations

import contextlib
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from cnisdk.spec._args import CNIArgs, load_cni_args, parse_cni_args
from cnisdk.spec._config import NetConf
from cnisdk.spec._errors import CNIError, ErrorCode
from cnisdk.spec._result import AnyResult, Result
from cnisdk.spec._versions import ALL_VERSIONS

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cnisdk._invoke import PluginExec
    from cnisdk._netns import NetNS

__all__ = ["Attachment", "Context", "Plugin"]

ConfigT = TypeVar("ConfigT", bound=NetConf)
ModelT = TypeVar("ModelT", bound="BaseModel")


@dataclass(frozen=True)
class Attachment:
    """One attachment a runtime still considers valid (GC's ``cni.dev/valid-attachments``)."""

    container_id: str
    ifname: str


@dataclass(frozen=True)
class Request:
    """What the runtime sent: the ``CNI_*`` environment and the raw stdin bytes.

    ``netns_override`` is the skel's reading of ``CNI_NETNS_OVERRIDE`` (Go's rule: ``1`` or
    ``true`` in any case): whether ``CNI_NETNS`` may name the plugin's own namespace. The
    skel refused an ADD or DEL in the plugin's own namespace without it before the plugin
    ran; nothing decides it again.

    ``exec`` finds and runs the plugins this request delegates to (``None``: the host's
    binaries on ``CNI_PATH``).
    """

    command: str
    container_id: str
    netns_path: str
    ifname: str
    raw_args: str
    cni_path: tuple[str, ...]
    stdin: bytes
    environ: Mapping[str, str] = field(repr=False)
    netns_override: bool = False
    exec: PluginExec | None = field(default=None, repr=False)


class Context(Generic[ConfigT]):
    """Everything a plugin verb needs for one request.

    :ivar request: the ``CNI_*`` values and stdin.
    :ivar config: the plugin's config, parsed into its model.
    :ivar prev_result: the previous plugin's result converted to the current version, or ``None``.
    :ivar log: a logger for this request; it writes to stderr (and a file if configured),
        never to stdout.
    :ivar valid_attachments: for GC, the attachments the runtime still uses.
    """

    def __init__(
        self,
        request: Request,
        config: ConfigT,
        prev_result: Result | None,
        log: logging.Logger,
        *,
        valid_attachments: tuple[Attachment, ...] = (),
    ) -> None:
        self.request = request
        self.config = config
        self.prev_result = prev_result
        self.log = log
        self.valid_attachments = valid_attachments
        self._netns: NetNS | None = None
        self._netns_opened = False
        self._args: CNIArgs | None = None

    @property
    def command(self) -> str:
        return self.request.command

    @property
    def container_id(self) -> str:
        return self.request.container_id

    @property
    def ifname(self) -> str:
        return self.request.ifname

    @property
    def netns_path(self) -> str:
        return self.request.netns_path

    @property
    def cni_path(self) -> tuple[str, ...]:
        return self.request.cni_path

    @property
    def cni_version(self) -> str:
        """The config's version: the version the result is printed in."""
        return self.config.cni_version

    @property
    def runtime_config(self) -> dict[str, Any]:
        """``runtimeConfig``: the capability arguments the runtime passed for this plugin."""
        return self.config.runtime_config

    @property
    def args(self) -> CNIArgs:
        """``CNI_ARGS`` split into pairs. :raises ValueError: with Go's message if malformed."""
        if self._args is None:
            self._args = parse_cni_args(self.request.raw_args)
        return self._args

    def load_args(self, model: type[ModelT]) -> ModelT:
        """Load ``CNI_ARGS`` into a pydantic model, as Go's ``types.LoadArgs`` does."""
        return load_cni_args(self.args, model)

    @property
    def netns(self) -> NetNS | None:
        """The container's network namespace, opened on first use.

        ``None`` for DEL when the namespace is gone (or was never given), and for GC/STATUS.
        Whether it may be the plugin's own namespace was decided by the skel before the
        plugin ran (see ``CNI_NETNS_OVERRIDE``); opening it does not check that again.

        :raises CNIError: for ADD/CHECK when ``CNI_NETNS`` cannot be opened as a namespace.
        """
        if not self._netns_opened:
            self._netns_opened = True
            if self.request.netns_path and self.command in ("ADD", "CHECK", "DEL"):
                from cnisdk._netns import open_for_request

                self._netns = open_for_request(self.request.netns_path, self.command)
        return self._netns

    def require_prev_result(self) -> Result:
        """``prev_result``, for a plugin that cannot work without one.

        A ``chained`` plugin's ADD always has one (the skel refuses ADD without it, with the
        same error), so this only narrows the type there; CHECK and DEL get one from 0.4.0 on,
        if the runtime cached the ADD result.

        :raises CNIError: code 7 when there is none: Go's plugins' words, ``must be called as
            chained plugin`` for ADD and ``Required prevResult missing`` for the other verbs.
        """
        if self.prev_result is None:
            if self.command == "ADD":
                raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "must be called as chained plugin")
            raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "Required prevResult missing")
        return self.prev_result

    def require_netns(self) -> NetNS:
        """``netns``, for code that cannot work without the container's namespace.

        ADD and CHECK always have one (or fail opening it). In DEL prefer ``netns``: ``None``
        there means the namespace is gone, and DEL must still succeed.

        :raises CNIError: code 4 ``required env variables [CNI_NETNS] missing`` when
            ``CNI_NETNS`` is empty (DEL may send none; GC and STATUS have none); for a DEL
            whose namespace is gone, code 999 with Go's ``failed to open netns "..."`` text.
        """
        netns = self.netns
        if netns is None and self.netns_path and self.command == "DEL":
            from cnisdk._netns import open_for_request

            # Gone: opening it again, as required, says so in Go's words.
            netns = self._netns = open_for_request(self.netns_path, "DEL", required=True)
        if netns is None:
            raise CNIError(
                ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
                "required env variables [CNI_NETNS] missing",
            )
        return netns

    def close(self) -> None:
        """Release the namespace handle, if one was opened."""
        if self._netns is not None:
            self._netns.close()
            self._netns = None

    async def delegate_add(self, plugin_type: str, config: Mapping[str, Any] | bytes) -> AnyResult:
        """Run another plugin's ADD (typically IPAM) as Go's ``invoke.DelegateAdd`` does.

        The delegate inherits this request's environment with ``CNI_COMMAND=ADD`` and is found
        on ``CNI_PATH`` (by the request's ``exec``, see :func:`~cnisdk.handle_request`); its
        result is parsed in the config's ``cniVersion``.
        """
        from cnisdk._invoke import delegate_add

        return await delegate_add(
            plugin_type, config, environ=self.request.environ, exec=self.request.exec
        )

    async def delegate_check(self, plugin_type: str, config: Mapping[str, Any] | bytes) -> None:
        """Run another plugin's CHECK, as Go's ``invoke.DelegateCheck``."""
        await self._delegate("CHECK", plugin_type, config)

    async def delegate_delete(self, plugin_type: str, config: Mapping[str, Any] | bytes) -> None:
        """Run another plugin's DEL, as Go's ``invoke.DelegateDel``."""
        await self._delegate("DEL", plugin_type, config)

    async def delegate_gc(self, plugin_type: str, config: Mapping[str, Any] | bytes) -> None:
        """Run another plugin's GC, as Go's ``invoke.DelegateGC`` (an IPAM plugin's, from
        ``gc``)."""
        await self._delegate("GC", plugin_type, config)

    async def delegate_status(self, plugin_type: str, config: Mapping[str, Any] | bytes) -> None:
        """Run another plugin's STATUS, as Go's ``invoke.DelegateStatus``."""
        await self._delegate("STATUS", plugin_type, config)

    async def _delegate(
        self, command: str, plugin_type: str, config: Mapping[str, Any] | bytes
    ) -> None:
        from cnisdk._invoke import delegate

        await delegate(
            command, plugin_type, config, environ=self.request.environ, exec=self.request.exec
        )


class Plugin(Generic[ConfigT]):
    """Base class for a CNI plugin. Subclass it with your config model and override verbs.

    ```python
    class Config(NetConf):
        mtu: int | None = None

    class MyPlugin(Plugin[Config]):
        chained = True

        async def add(self, ctx: Context[Config]) -> Result:
            prev = ctx.require_prev_result()
            ...
            return prev
    ```

    Class attributes:

    - ``supported_versions``: the spec versions the plugin accepts (default: all).
    - ``chained``: the plugin must run after another plugin (ADD needs a ``prevResult``).
    - ``about``: printed to stderr when the binary runs without ``CNI_COMMAND``.
    - ``config_model``: the config model; taken from ``Plugin[Config]`` when not set.
    - ``capabilities``: the runtime capabilities the plugin wants enabled in its config entry
      (``"capabilities": {name: true}``), e.g. ``io.kubernetes.cri.pod-annotations``;
      ``cnisdk install`` declares them and ``cnisdk validate`` warns when an entry lacks one.
    """

    supported_versions: ClassVar[tuple[str, ...]] = ALL_VERSIONS
    chained: ClassVar[bool] = False
    capabilities: ClassVar[tuple[str, ...]] = ()
    about: ClassVar[str] = ""
    config_model: ClassVar[type[NetConf]] = NetConf

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_model" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Plugin:
                (arg,) = typing.get_args(base)
                if isinstance(arg, type) and issubclass(arg, NetConf):
                    cls.config_model = arg
                return

    async def add(self, ctx: Context[ConfigT]) -> AnyResult:
        """ADD: attach the container. Chained plugins return (a changed copy of) ``prev_result``.

        The default passes ``prev_result`` through for a chained plugin and refuses otherwise.
        """
        if ctx.prev_result is not None:
            return ctx.prev_result
        raise CNIError(ErrorCode.INTERNAL, f"{type(self).__name__} does not implement ADD")

    async def delete(self, ctx: Context[ConfigT]) -> None:
        """DEL: release what ADD made. Must succeed when it is already gone. Default: nothing."""

    async def check(self, ctx: Context[ConfigT]) -> None:
        """CHECK: raise a ``CNIError`` if the attachment is not as ADD left it. Default: ok."""

    async def gc(self, ctx: Context[ConfigT]) -> None:
        """GC: remove resources of attachments not in ``ctx.valid_attachments``. Default: none."""

    async def status(self, ctx: Context[ConfigT]) -> None:
        """STATUS: raise ``CNIError`` code 50 or 51 when ADD cannot be served. Default: ready."""

    def serve(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Long-running work for this plugin while a ``cnisdk agent`` serves it.

        The agent creates one instance per plugin type, enters ``serve()`` once at start-up
        (before it accepts requests) and exits it at shutdown (after in-flight requests
        finished); every request of that type then runs on this same instance. Exec mode
        never enters it, so a plugin must work without it: use it only for caches and
        other optimisations (istio-redirect keeps a watch-fed pod cache here). Return an
        async context manager, typically from an ``@contextlib.asynccontextmanager`` method
        that starts background tasks in its own task group and yields. Default: nothing.
        """
        return contextlib.nullcontext()

    def log_settings(self, config: ConfigT) -> tuple[str | None, str | None]:
        """The log level and log file for a request, from the config's ``log_level``/``log_file``.

        Override to read other keys (istio-redirect reads ``plugin_log_level``).
        """
        extra = config.model_extra or {}
        level = extra.get("log_level")
        path = extra.get("log_file")
        return (
            level if isinstance(level, str) else None,
            path if isinstance(path, str) else None,
        )
