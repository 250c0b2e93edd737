"""Public docstrings render as Markdown on the API pages: no reST literal-block markers.

mkdocstrings reads them as Markdown (with the sphinx field style for ``:param:``), so a
``::`` line is printed as it is, not turned into a code block: examples are fenced.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import cnisdk
import cnisdk.spec
import cnisdk.testing
from cnisdk._invoke import PluginExec
from cnisdk._netns import NetNS

# What the API pages render besides the modules' __all__ (docs/reference/api.md).
ALSO_RENDERED: list[Any] = [PluginExec, NetNS]


def _documented() -> Iterator[tuple[str, Any]]:
    modules: list[ModuleType] = [cnisdk, cnisdk.spec, cnisdk.testing]
    objects: list[tuple[str, Any]] = [(m.__name__, m) for m in modules]
    for module in modules:
        objects += [(f"{module.__name__}.{n}", getattr(module, n)) for n in module.__all__]
    objects += [(obj.__qualname__, obj) for obj in ALSO_RENDERED]
    for name, obj in objects:
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_"):
                    yield f"{name}.{attr}", member
        module = inspect.getmodule(obj)
        if module is not None:
            yield module.__name__, module


def test_no_docstring_line_ends_in_a_literal_block_marker() -> None:
    stray = sorted(
        {
            f"{name}: {line.strip()}"
            for name, obj in _documented()
            for line in (inspect.getdoc(obj) or "").splitlines()
            if line.rstrip().endswith("::")
        }
    )
    assert stray == []
