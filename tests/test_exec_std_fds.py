"""An exec-mode plugin started with a standard fd closed, or fed too much: Go's answers, no
traceback, and stdout still only the protocol's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cnisdk._discovery import get_plugin
from cnisdk._launcher import write_launcher
from cnisdk._skel import MAX_STDIN

GO_TUNING = Path("/usr/lib/cni/tuning")
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/nonexistent",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/dev/null",
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
}


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("bin")
    # A plugin that prints on stdout: what it prints must never reach the protocol stream.
    return write_launcher(bin_dir, get_plugin("passthrough"), sys.executable)


def closing(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


def run(program: Path, fd: int, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    # Closing fd 1 or 2 in the child loses that stream; the other one is still captured.
    return subprocess.run(
        [str(program)],
        input=stdin if fd != 0 else None,
        env=ENV,
        capture_output=True,
        preexec_fn=closing(fd),
        check=False,
        timeout=60,
    )


def test_closed_stdin_is_gos_error_5(launcher: Path) -> None:
    ours = run(launcher, 0)
    expected = (
        b'{\n    "code": 5,\n    "msg": "error reading from stdin: read /dev/stdin: '
        b'bad file descriptor"\n}'
    )
    assert (ours.returncode, ours.stdout) == (1, expected)
    assert b"Traceback" not in ours.stderr
    if GO_TUNING.exists():
        go = run(GO_TUNING, 0)
        assert (go.returncode, go.stdout) == (ours.returncode, ours.stdout)


def test_closed_stderr_keeps_stdout_for_the_protocol(launcher: Path) -> None:
    # With fd 2 closed, the fd saved for the protocol must not land on 2, and fd 1 must not
    # become a copy of the protocol stream: the answer is exactly one document.
    done = run(launcher, 2, b'{"cniVersion":"1.0.0","name":"n","type":"passthrough"}')
    assert done.returncode == 1
    assert done.stdout.count(b'"code"') == 1 and done.stdout.startswith(b"{")


def test_closed_stdout_exits_without_a_traceback(launcher: Path) -> None:
    done = run(launcher, 1, b"{")
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr


def test_stdin_over_the_cap_is_error_5(launcher: Path) -> None:
    big = subprocess.run(
        [str(launcher)],
        input=b" " * (MAX_STDIN + 1),
        env=ENV,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert big.returncode == 1
    assert b'"code": 5' in big.stdout and b"error reading from stdin" in big.stdout
