"""The public surface: what ``cnisdk`` exports, and what importing it costs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import cnisdk
import cnisdk.spec


def test_all_names_exist_and_are_sorted() -> None:
    names = cnisdk.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(cnisdk, name), name

    # ruff's RUF022 "isort-style" order: SCREAMING_CASE, then CamelCase, then the rest.
    def key(name: str) -> tuple[int, str]:
        if name.isupper() and len(name) > 1:
            return (0, name)
        return (1, name) if name[:1].isupper() else (2, name)

    assert names == sorted(names, key=key)


def test_nothing_private_leaks() -> None:
    assert [n for n in cnisdk.__all__ if n.startswith("_")] == ["__version__"]
    # "@py_builtins"/"@pytest_ar": pytest's assertion rewriting (cnisdk ships a pytest plugin).
    public = [n for n in vars(cnisdk) if not n.startswith(("_", "@"))]
    modules = {"spec", "testing"}
    assert set(public) - modules <= set(cnisdk.__all__), set(public) - set(cnisdk.__all__)
    for name in cnisdk.__all__:
        obj = getattr(cnisdk, name)
        if hasattr(obj, "__module__") and name != "__version__":
            assert obj.__module__.startswith("cnisdk"), name


def test_core_names() -> None:
    for name in ("Plugin", "Context", "NetConf", "Result", "CNIError", "ErrorCode", "run"):
        assert name in cnisdk.__all__
    assert isinstance(cnisdk.__version__, str) and cnisdk.__version__


def test_spec_exports_import() -> None:
    exported = getattr(cnisdk.spec, "__all__", None)
    names = (
        exported
        if exported is not None
        else [n for n in vars(cnisdk.spec) if not n.startswith("_")]
    )
    assert names
    fresh = importlib.import_module("cnisdk.spec")
    for name in names:
        assert getattr(fresh, name) is not None, name
    for name in ("CNIError", "ErrorCode", "Result", "parse_result", "convert_result"):
        assert name in names
    # The top-level re-exports are the same objects as cnisdk.spec's.
    for name in set(names) & set(cnisdk.__all__):
        assert getattr(cnisdk, name) is getattr(cnisdk.spec, name), name


def test_testing_exports_import() -> None:
    import cnisdk.testing

    for name in cnisdk.testing.__all__:
        assert hasattr(cnisdk.testing, name), name


HEAVY = ["pyroute2", "httpx", "yaml", "cnisdk._cli", "cnisdk._validate", "argparse"]


@pytest.mark.parametrize("module", ["cnisdk", "cnisdk.spec"])
def test_import_stays_light(module: str) -> None:
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
