"""Shared helpers for the node install tests: config dirs from public docs, the CLI in a process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cnisdk._discovery import get_plugin
from cnisdk._install import InstallSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIGS = HERE / "configs"
GOLDEN = HERE / "golden"

# The chained entry used throughout (passthrough accepts and keeps unknown keys).
ENTRY = {"type": "passthrough", "cniVersion": "1.0.0", "note": "chained by cnisdk"}
CA_PEM = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
API_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def service_account(directory: Path, token: str = "token-1") -> Path:
    """A service account dir as kubelet projects it: ``token`` and ``ca.crt``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(CA_PEM)
    return directory


def spec_for(conf_dir: Path | None, bin_dir: Path, **kwargs: Any) -> InstallSpec:
    """An install of ``passthrough`` with ``ENTRY`` into ``conf_dir``, in process."""
    return InstallSpec(
        plugins=[get_plugin("passthrough")],
        bin_dir=bin_dir,
        conf_dir=conf_dir,
        entries=[ENTRY],
        **kwargs,
    )


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """A process with its output piped; killed if still running at the end, pipes closed."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    with subprocess.Popen(argv, env=env, text=True, **kwargs) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_together(argvs: list[list[str]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Start every argv at once; their exit codes and output once all have ended."""
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(started(a, env)) for a in argvs]
        outputs = [p.communicate(timeout=60) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def install_argv(bin_dir: Path, conf_dir: Path, *extra: str) -> list[str]:
    """``cnisdk install passthrough`` chaining ``ENTRY`` into ``conf_dir``, as a subprocess argv."""
    return [
        sys.executable,
        "-m",
        "cnisdk._cli",
        "install",
        "passthrough",
        "--bin-dir",
        str(bin_dir),
        "--conf-dir",
        str(conf_dir),
        "--chain",
        json.dumps(ENTRY),
        *extra,
    ]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``cnisdk ARGS`` in a fresh interpreter, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=timeout,
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every visible file's bytes (runtimes ignore dot files: our lock, temp files)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def conf_copy(tmp_path: Path) -> Callable[[str], Path]:
    """``conf_copy(case)`` copies ``configs/<case>`` to a fresh dir and returns it."""

    def copy(case: str) -> Path:
        target = tmp_path / f"net-{case}"
        shutil.copytree(CONFIGS / case, target)
        (target / ".keep").unlink(missing_ok=True)
        return target

    return copy
