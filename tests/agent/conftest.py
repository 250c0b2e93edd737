"""Fixtures shared by the agent tests: the compiled shim (built once per session), which shim a
test runs with, and a short directory for sockets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnisdk._compiled_shim import build


@pytest.fixture(scope="session")
def compiled_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled shim built from the packaged source with the system's C compiler.

    A missing compiler fails the tests rather than skipping them: ``./dev`` installs ``gcc``
    and ``libc6-dev``.
    """
    if shutil.which("cc") is None:
        pytest.fail("no C compiler (cc): install gcc and libc6-dev (./dev does)")
    return build(tmp_path_factory.mktemp("shim") / "cnisdk-shim")


@pytest.fixture(scope="module", params=["python", "compiled"])
def shim_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test that uses it runs once with the Python shim and once with the compiled one."""
    yield request.param


@pytest.fixture(scope="module")
def shim_binary(shim_kind: str, request: pytest.FixtureRequest) -> Path | None:
    """``None`` for the Python shim, else the compiled shim's path (for ``write_shims``)."""
    if shim_kind == "python":
        return None
    binary: Path = request.getfixturevalue("compiled_shim")
    return binary


@pytest.fixture(scope="module")
def sock_dir() -> Iterator[Path]:
    """A directory for sockets and bin dirs: short (a socket path has at most 107 bytes) and
    not under pytest's 0700 tmp dirs, so tests as another user see the files' own modes."""
    path = Path(tempfile.mkdtemp(prefix="cnisdk-agent-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
