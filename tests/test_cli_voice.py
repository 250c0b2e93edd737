"""Every command speaks in one voice: one line, ``cnisdk COMMAND: what went wrong: what to do``,
exit 1 for a failure and 2 for a command line that cannot work; never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk import _cli

ROOT = Path(__file__).resolve().parents[1]


def cnisdk(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("cnisdk ")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cnisdk {command}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["exec", "add", "/nonexistent/net.conflist", "/x"], 1, "no such file or directory"),
        (["exec", "ad", "x", "y"], 2, "invalid choice: 'ad'"),
        (["exec", "add", "x", "y", "--timeout", "0"], 2, "--timeout must be positive"),
        (["exec", "add", "nonet", "/x", "--conf-dir", "/nonexistent"], 1, "--conf-dir"),
        (["validate", "/nonexistent"], 2, "no such file or directory"),
        (["schema", "passthruogh"], 1, "did you mean 'passthrough'?"),
        (["agent", "--socket", "/tmp/x.sock", "--allow-uid", "-5"], 2, "--allow-uid"),
        (["list", "--output", "yaml"], 2, "invalid choice: 'yaml'"),
        (["install", "--bin-dir"], 2, "--bin-dir"),
        (["install", "passthruogh", "--bin-dir", "/nonexistent"], 1, "did you mean 'passthrough'?"),
        (["install", "passthrough", "--bin-dir", "/tmp", "--watch"], 2, "--watch needs --conf-dir"),
    ],
)
def test_failures_are_one_line_with_the_documented_status(
    argv: list[str], status: int, says: str
) -> None:
    done = cnisdk(*argv)
    assert done.returncode == status
    assert says in one_line(done, argv[0])


def test_no_command_prints_help_and_exits_2() -> None:
    done = cnisdk()
    assert done.returncode == 2 and "COMMAND" in done.stdout


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    # The reader is gone before the first write, so that write fails for certain.
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait(timeout=30)
    assert reader.stdin is not None
    writer = subprocess.run(
        [sys.executable, "-c", "import sys; from cnisdk._cli import main; sys.exit(main())",
         "list", "--output", "json"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=120,
    )  # fmt: skip
    reader.stdin.close()
    assert writer.returncode == 1
    assert b"Traceback" not in writer.stderr and b"BrokenPipe" not in writer.stderr


def test_an_internal_error_is_one_line_and_debug_shows_where(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnisdk._commands import list_

    def broken(args: object) -> int:
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(list_, "run", broken)
    assert _cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "cnisdk list: internal error: something broke: "
        "run it again with CNISDK_DEBUG=1 to see where\n"
    )
    monkeypatch.setenv("CNISDK_DEBUG", "1")
    assert _cli.main(["list"]) == 1
    assert "Traceback" in capsys.readouterr().err


def _chain(tmp_path: Path, second: str) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    first = bin_dir / "first"
    first.write_text('#!/bin/sh\ncat >/dev/null\nprintf \'{"cniVersion":"1.0.0"}\'\n')
    first.chmod(0o755)
    conf = tmp_path / "net.conflist"
    conf.write_text(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "first"}, {"type": second}]}
        )
    )
    return conf, bin_dir


@pytest.mark.parametrize("verb", ["add", "del"])
def test_a_missing_plugin_says_what_was_meant_and_what_is_left(tmp_path: Path, verb: str) -> None:
    conf, bin_dir = _chain(tmp_path, "frist")
    done = cnisdk(
        "exec", verb, str(conf), "/var/run/netns/x",
        "--cni-path", str(bin_dir), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 1
    line = one_line(done, "exec")
    assert f'failed to find plugin "frist" in path [{bin_dir}]' in line
    assert "did you mean 'first'?" in line
    if verb == "add":
        assert "nothing was undone" in line and "cnisdk exec del" in line
    else:
        assert "stops at a missing one" in line


def test_a_missing_cnisdk_plugin_points_at_cnisdk_install(tmp_path: Path) -> None:
    conf, bin_dir = _chain(tmp_path, "passthrough")
    done = cnisdk("exec", "add", str(conf), "/x", "--cni-path", str(bin_dir))
    assert "'cnisdk install --bin-dir DIR passthrough'" in one_line(done, "exec")


@pytest.mark.parametrize("command", sorted(_cli.COMMANDS))
def test_help_is_wrapped_to_the_terminal_and_every_option_says_what_it_does(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"},
        check=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        if not line.startswith(" "):  # examples and option tables keep their own lines
            assert len(line) <= 80, line
    options = done.stdout.split("options:", 1)[1]
    undocumented = [
        line.strip()
        for line, following in zip(
            options.splitlines(), [*options.splitlines()[1:], ""], strict=True
        )
        if line.startswith("  -")
        and len(line.split("  ")) < 3
        and not following.startswith(" " * 10)
    ]
    assert not undocumented, f"options without help: {undocumented}"
