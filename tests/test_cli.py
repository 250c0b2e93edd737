"""The ``cnisdk`` console script: help, subcommands, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk._cli import COMMANDS

CNISDK = Path(sys.executable).parent / "cnisdk"


def cnisdk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CNISDK), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_help_lists_every_subcommand() -> None:
    done = cnisdk("--help")
    assert done.returncode == 0, done.stderr
    for name in ("install", "list", "exec", "validate", "schema", "demo"):
        assert name in done.stdout
    assert set(COMMANDS) <= set(done.stdout.split()) | {w.strip("{},") for w in done.stdout.split()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_exits_0(command: str) -> None:
    done = cnisdk(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: cnisdk {command}")
    assert "Traceback" not in done.stderr


def test_unknown_subcommand_exits_2() -> None:
    done = cnisdk("frobnicate")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr and "frobnicate" in done.stderr
    assert done.stdout == ""


def test_no_subcommand_prints_help_and_exits_2() -> None:
    done = cnisdk()
    assert done.returncode == 2
    assert "install" in done.stdout


def test_version() -> None:
    from cnisdk import __version__

    done = cnisdk("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"cnisdk {__version__}")


def test_unknown_option_of_a_subcommand_exits_2() -> None:
    done = cnisdk("list", "--no-such-option")
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr
