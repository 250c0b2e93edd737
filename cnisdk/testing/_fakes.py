"""Fakes for unit tests of plugins: answer delegate calls without running any binary.

::

    with fake_delegation() as fake:
        fake.respond("ADD", "host-local", {"cniVersion": "1.0.0", "ips": [...]})
        fake.respond("DEL", "host-local", CNIError(11, "busy"))
        response = await handle_request(MyPlugin(), env, stdin)
    assert [c.command for c in fake.calls] == ["ADD"]

Like httpx's ``MockTransport``, a handler callable may answer instead of canned responses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

__all__ = ["DelegateCall", "FakeDelegate", "fake_delegation"]


@dataclass(frozen=True)
class DelegateCall:
    """One delegate call a plugin made."""

    command: str
    """``ADD``, ``CHECK``, ``DEL``, ``GC`` or ``STATUS``."""
    plugin_type: str
    config: dict[str, Any]
    """The delegate's config, decoded."""
    environ: Mapping[str, str] = field(repr=False)
    """The environment the delegate would have got (``CNI_COMMAND`` already replaced)."""


Handler = Callable[[DelegateCall], Any]


class FakeDelegate:
    """Records delegate calls and answers them.

    An answer is a result (a mapping in any version, or a result model) for ADD, ``None`` for
    the other verbs, or an exception instance, which is raised. Unanswered calls get an empty
    result of the config's version for ADD and succeed otherwise.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.calls: list[DelegateCall] = []
        self._handler = handler
        self._answers: dict[tuple[str, str], Any] = {}

    def respond(self, command: str, plugin_type: str, answer: Any) -> None:
        """Answer every ``command`` call to ``plugin_type`` with ``answer``."""
        self._answers[(command, plugin_type)] = answer

    async def _call(
        self,
        command: str,
        plugin_type: str,
        config: Mapping[str, Any] | bytes,
        environ: Mapping[str, str],
    ) -> Any:
        from cnisdk._skel import decode_config_version as _config_version
        from cnisdk.spec._result import empty_result, parse_result

        raw = config if isinstance(config, bytes) else json.dumps(dict(config)).encode()
        env = {**environ, "CNI_COMMAND": command}
        call = DelegateCall(command, plugin_type, json.loads(raw), env)
        self.calls.append(call)
        if self._handler is not None:
            answer = self._handler(call)
        else:
            answer = self._answers.get((command, plugin_type))
        if isinstance(answer, BaseException):
            raise answer
        if command != "ADD":
            return None
        version = _config_version(raw)
        if answer is None:
            return empty_result(version)
        if isinstance(answer, Mapping):
            doc = dict(answer)
            return parse_result(doc, doc.get("cniVersion") or version)
        return answer


@contextmanager
def fake_delegation(handler: Handler | None = None) -> Iterator[FakeDelegate]:
    """Patch ``cnisdk._invoke.delegate_*`` for the duration of the ``with`` block."""
    fake = FakeDelegate(handler)

    def verb(command: str) -> Callable[..., Any]:
        async def delegate(
            plugin_type: str,
            config: Mapping[str, Any] | bytes,
            *,
            environ: Mapping[str, str],
            timeout: float | None = None,  # noqa: ASYNC109
        ) -> Any:
            return await fake._call(command, plugin_type, config, environ)

        return delegate

    names = {
        "delegate_add": "ADD",
        "delegate_check": "CHECK",
        "delegate_delete": "DEL",
        "delegate_gc": "GC",
        "delegate_status": "STATUS",
    }
    with ExitStack() as stack:
        for name, command in names.items():
            stack.enter_context(mock.patch(f"cnisdk._invoke.{name}", verb(command)))
        yield fake
