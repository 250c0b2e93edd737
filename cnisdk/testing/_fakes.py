"""A fake exec boundary: plugins "run" without any binary, and every call is recorded.

```python
fake = FakeExec()
fake.respond("ADD", "host-local", {"cniVersion": "1.0.0", "ips": [...]})
fake.respond("DEL", "host-local", CNIError(11, "busy"))
outcome = await invoke(MyPlugin, "ADD", config, exec=fake)
assert [c.command for c in fake.calls] == ["ADD"]
```

It is what Go tests pass as ``invoke.Exec``: a plugin's delegations (``ctx.delegate_*``) and a
runtime's chain go through it instead of finding and running binaries. Like httpx's
``MockTransport``, a handler callable may answer instead of canned responses, and a cnisdk
plugin can be installed under a type, to run in-process when called.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnisdk._plugin import Plugin

__all__ = ["ExecCall", "FakeExec"]


@dataclass(frozen=True)
class ExecCall:
    """One plugin run that went through a :class:`FakeExec`."""

    command: str
    """``CNI_COMMAND`` of the run: ``ADD``, ``CHECK``, ``DEL``, ``GC``, ``STATUS``, ``VERSION``."""
    plugin_type: str
    """The name of the binary that would have run."""
    config: Any
    """stdin, decoded from JSON (``None`` when it is not JSON)."""
    stdin: bytes = field(repr=False)
    """stdin, as sent."""
    environ: Mapping[str, str] = field(repr=False)
    """The whole environment the plugin would have got."""


Answer = Any
"""A result (a mapping in any version, or a result model) for ADD; a VERSION answer (a
mapping) for VERSION; ``bytes``, printed as is; an exception instance, raised; ``None``: the
default answer."""
Handler = Callable[[ExecCall], Answer | Awaitable[Answer]]


class FakeExec:
    """A :class:`~cnisdk.PluginExec` that runs nothing: it records every call and answers it.

    Give it to :func:`~cnisdk.testing.invoke` (``exec=``), :func:`~cnisdk.handle_request` or a
    runtime. Every plugin type is "found" (in the first ``CNI_PATH`` directory, which need not
    exist); who answers a call, first match wins:

    1. ``handler(call)``, if given and it returns something other than ``None``
       (it may be ``async``);
    2. the answer set with :meth:`respond` for the call's verb and type;
    3. a plugin set with :meth:`install` for the type, run in-process through the same
       pipeline exec mode uses (its own delegations come back here);
    4. the default: an empty result of the config's version for ADD (libcni reads ``{}`` so),
       "supports every version" for VERSION, success without output otherwise.

    An exception as the answer is raised: a :class:`~cnisdk.CNIError` is what a plugin that
    printed that error document would give.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.calls: list[ExecCall] = []
        self._handler = handler
        self._answers: dict[tuple[str, str], Answer] = {}
        self._plugins: dict[str, Plugin[Any]] = {}

    def respond(self, command: str, plugin_type: str, answer: Answer) -> None:
        """Answer every ``command`` call to ``plugin_type`` with ``answer``."""
        self._answers[(command, plugin_type)] = answer

    def install(self, plugin_type: str, plugin: Plugin[Any] | type[Plugin[Any]]) -> None:
        """Run ``plugin`` in-process whenever ``plugin_type`` is called."""
        self._plugins[plugin_type] = plugin() if isinstance(plugin, type) else plugin

    def find_plugin(self, plugin_type: str, paths: Sequence[str]) -> str:
        """``<first path>/<plugin_type>``, after Go's checks of the name and the path list."""
        from cnisdk._invoke import check_plugin_lookup

        check_plugin_lookup(plugin_type, paths)
        return os.path.join(paths[0], plugin_type)

    async def exec_plugin(
        self,
        path: str,
        environ: Mapping[str, str],
        stdin: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        max_output: int | None = None,
    ) -> bytes:
        """Record the call and answer it (see the class). ``timeout`` bounds a handler's or an
        installed plugin's run, and ``max_output`` the answer, as they bound a real plugin."""
        import anyio

        try:
            config = json.loads(stdin)
        except ValueError:
            config = None
        call = ExecCall(
            command=environ.get("CNI_COMMAND", ""),
            plugin_type=os.path.basename(path),
            config=config,
            stdin=stdin,
            environ=dict(environ),
        )
        self.calls.append(call)
        try:
            with anyio.fail_after(timeout):
                answer = await self._answer(call)
        except TimeoutError:
            raise TimeoutError(f"plugin {path} timed out after {timeout:g}s") from None
        if max_output is not None and len(answer) > max_output:
            from cnisdk._invoke import PluginOutputTooLargeError

            raise PluginOutputTooLargeError(
                f"plugin {path} wrote more than {max_output} bytes on stdout"
            )
        return answer

    async def _answer(self, call: ExecCall) -> bytes:
        answer: Answer = None
        if self._handler is not None:
            answer = self._handler(call)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer is None:
            answer = self._answers.get((call.command, call.plugin_type))
        if answer is None and call.plugin_type in self._plugins:
            return await self._run_installed(self._plugins[call.plugin_type], call)
        if isinstance(answer, BaseException):
            raise answer
        return _encode(call.command, answer)

    async def _run_installed(self, plugin: Plugin[Any], call: ExecCall) -> bytes:
        from cnisdk._invoke import error_from_output
        from cnisdk._skel import handle_request

        response = await handle_request(plugin, call.environ, call.stdin, exec=self)
        if response.exit_code != 0:
            raise error_from_output(response.exit_code, response.stdout, response.stderr)
        return response.stdout


def _encode(command: str, answer: Answer) -> bytes:
    if isinstance(answer, bytes):
        return answer
    if answer is None:
        if command == "ADD":
            return b"{}"
        if command == "VERSION":
            from cnisdk.spec._versions import ALL_VERSIONS, CURRENT_VERSION

            answer = {"cniVersion": CURRENT_VERSION, "supportedVersions": list(ALL_VERSIONS)}
        else:
            return b""
    if isinstance(answer, Mapping):
        return json.dumps(dict(answer)).encode()
    from cnisdk.spec._result import result_to_json

    return result_to_json(answer)
