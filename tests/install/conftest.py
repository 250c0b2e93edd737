"""Shared helpers for the node install tests: config dirs from public docs, the CLI in a process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIGS = HERE / "configs"
GOLDEN = HERE / "golden"

# The chained entry used throughout (passthrough accepts and keeps unknown keys).
ENTRY = {"type": "passthrough", "cniVersion": "1.0.0", "note": "chained by cnisdk"}


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
