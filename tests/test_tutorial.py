"""docs/tutorial.md, run as written: its files and commands, in a fresh venv, as root.

How the page is read (in document order):

- a code block with ``title="PATH"`` is a file. A relative PATH is one the reader creates in
  the project, ``~/my-plugins``: it is written there at that point of the page. An absolute
  PATH is a file the commands before it made: its content must be as shown.
- a ``console`` block holds commands: lines that start with ``# `` (the root prompt), a
  trailing ``\\`` continuing onto the next line. The lines after a command, up to the next
  one, are what it prints.
- other blocks (the ``git clone`` of the prerequisites) are not run.

Every command runs in one bash, in order, as the reader's shell would run it, and must exit
0. Its output (stdout and stderr together, as a terminal shows them) must be the one shown,
once what changes from run to run is masked in both: times, MAC addresses, veth names,
pytest's duration, runs of blanks. A command shown without output must print nothing,
except ``pip`` (the page does not show its progress).

What the test provides, and why:

- ``HOME`` is a temporary directory standing for ``/root``: ``~/my-plugins`` lands there,
  and outputs are compared with it written as ``/root``;
- ``~/cnisdk`` is a symlink to this checkout: the reader's clone (cnisdk is not on PyPI);
- pip keeps its real cache directory (``PIP_CACHE_DIR``), so dependencies come from a warm
  cache; the venv is fresh (no ``--system-site-packages``), ``PATH`` loses this test's own
  venv, and ``VIRTUAL_ENV``/``PYTHONPATH`` are dropped;
- the names the page uses on the host (namespace ``tutorial-pod``, bridge ``tutorial0``,
  network ``tutorial-net``, ``/opt/cni/bin/result-logger``) are the page's own: the test
  holds a host-wide lock (a file in /run/lock, left there as lock files are) so that two
  runs of it never overlap, refuses to start while any of them exists, checks that the
  page's clean-up left none of them (nor the network's result cache entries), and removes
  what a failed run left.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cnisdk.testing import require_netns

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
PROJECT = "my-plugins"  # the reader's project: ~/my-plugins
READER_HOME = "/root"

NETNS = "tutorial-pod"
BRIDGE = "tutorial0"
NETWORK = "tutorial-net"
LAUNCHER = Path("/opt/cni/bin/result-logger")
IPAM_STORE = Path("/var/lib/cni/networks") / NETWORK
RESULT_CACHE = Path("/var/lib/cni/results")
LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "cnisdk-tutorial-test.lock"

# What differs from one run to the next, masked in the page's output and in the real one.
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"), "<time>"),
    (re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b"), "<mac>"),
    (re.compile(r"\bveth[0-9a-f]{8}\b"), "<veth>"),
    (re.compile(r" in \d+(?:\.\d+)?s\b"), " in <duration>"),
    (re.compile(r"[ \t]+"), " "),
]


@dataclass
class Command:
    line: str  # as typed, continuation lines joined
    shown: list[str] = field(default_factory=list)  # the output the page shows


@dataclass
class File:
    path: str  # the block's title
    text: str


def parse(markdown: str) -> list[Command | File]:
    """The page's steps in order: files (titled blocks) and commands (console blocks)."""
    steps: list[Command | File] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,})(\S*)(.*)$", lines[i])
        i += 1
        if opening is None:
            continue
        indent, fence, lang, info = opening.groups()
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1  # the closing fence
        title = re.search(r'title="([^"]+)"', info)
        if title is not None:
            steps.append(File(title.group(1), "\n".join(body) + "\n"))
        elif lang == "console":
            steps.extend(_commands(body))
    return steps


def _commands(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    lines = iter(body)
    for line in lines:
        if line.startswith("# "):
            typed = line[2:]
            while typed.endswith("\\"):
                typed = typed[:-1] + next(lines).strip()
            commands.append(Command(typed))
        elif commands:
            commands[-1].shown.append(line)
        else:
            raise AssertionError(f"console block starts with output, not a command: {line!r}")
    return commands


def normalise(text: str, home: str) -> list[str]:
    text = text.replace(home, READER_HOME)
    for pattern, mask in VOLATILE:
        text = pattern.sub(mask, text)
    return [line.strip() for line in text.splitlines()]


def bash_script(steps: list[Command | File], home: Path, out: Path) -> str:
    """One bash that types the commands and writes the files, stopping at the first failure."""
    script = ["cd ~"]
    for n, step in enumerate(steps):
        if isinstance(step, Command):
            script += [
                f"{{ {step.line}\n}} >{out}/{n}.out 2>&1 </dev/null",
                f"status=$?; echo $status >{out}/{n}.rc; [ $status -eq 0 ] || exit 1",
            ]
        elif step.path.startswith("/"):
            script.append(f"cp -- {shlex.quote(step.path)} {out}/{n}.file || exit 1")
        else:
            target = shlex.quote(str(home / PROJECT / step.path))
            script += [
                f"mkdir -p -- $(dirname -- {target}) || exit 1",
                f"cat >{target} <<'__TUTORIAL_FILE__'\n{step.text}__TUTORIAL_FILE__",
            ]
    return "\n".join(script) + "\n"


def reader_environment(home: Path) -> dict[str, str]:
    """The reader's root shell: this test's venv and Python settings left out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")
        and not k.startswith(("CNISDK_", "PYTEST_", "COV_"))
    }
    own_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if p and p != own_bin)
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    )
    env["HOME"] = str(home)
    return env


def test_the_page_is_files_and_commands_in_a_workable_order() -> None:
    """The parse finds the page's project and its whole sequence (no root needed)."""
    steps = parse(TUTORIAL.read_text())
    files = [s.path for s in steps if isinstance(s, File)]
    assert files == [
        "pyproject.toml",
        "my_plugins/__init__.py",
        "my_plugins/result_logger.py",
        "tests/conftest.py",
        "tests/test_result_logger.py",
        str(LAUNCHER),
        "chain.conflist",
    ]
    typed = [s.line for s in steps if isinstance(s, Command)]
    order = [
        "python3 -m venv .venv",
        "pip install ~/cnisdk pytest",
        "pip install -e .",
        "pytest -q tests",
        "cnisdk install --bin-dir /opt/cni/bin result-logger",
        f"ip netns add {NETNS}",
        f"cnisdk exec add chain.conflist /var/run/netns/{NETNS}",
        f"cnisdk exec del chain.conflist /var/run/netns/{NETNS}",
        f"ip netns del {NETNS}",
        f"ip link del {BRIDGE}",
        f"rm -r {IPAM_STORE}",
        "cnisdk uninstall result-logger --bin-dir /opt/cni/bin",
    ]
    assert [c for c in typed if c in order] == order
    # Each file is written before the first command that needs it.
    position = {str(s.path if isinstance(s, File) else s.line): n for n, s in enumerate(steps)}
    assert position["pyproject.toml"] < position["pip install -e ."]
    assert position["tests/test_result_logger.py"] < position["pytest -q tests"]
    assert position["chain.conflist"] < position[order[6]]
    assert '"name": "tutorial-net"' in next(
        s.text for s in steps if isinstance(s, File) and s.path == "chain.conflist"
    )


def test_masks_hide_only_what_changes_between_runs() -> None:
    shown = "2026-01-01 12:00:00,000 INFO x: ADD 10.98.0.2/24 mac 62:2e:fb:52:19:76 veth6319bb7b"
    real = "2031-07-09 08:15:42,173 INFO x: ADD 10.98.0.2/24 mac 0a:58:0a:f4:00:05 veth0a1b2c3d"
    assert normalise(shown, "/h") == normalise(real, "/h")
    assert normalise(shown, "/h") != normalise(real.replace("10.98.0.2", "10.98.0.3"), "/h")
    assert normalise("#!/tmp/x/home/p", "/tmp/x/home") == ["#!/root/p"]


@contextmanager
def _host_lock() -> Iterator[None]:
    # Other checkouts on this host may run this test too; the page's names are fixed.
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run of the tutorial test holds {LOCK}")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _netns_exists() -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return NETNS in (line.split()[0] for line in listed.stdout.splitlines() if line.strip())


def _bridge_exists() -> bool:
    shown = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False)
    return shown.returncode == 0


def _cache_entries() -> list[Path]:
    return sorted(RESULT_CACHE.glob(f"{NETWORK}-*")) if RESULT_CACHE.is_dir() else []


def _left_on_host() -> list[str]:
    left = [f"namespace {NETNS}"] if _netns_exists() else []
    left += [f"bridge {BRIDGE}"] if _bridge_exists() else []
    left += [str(p) for p in (IPAM_STORE, LAUNCHER) if p.exists()]
    return left + [str(p) for p in _cache_entries()]


def _remove_what_a_failed_run_left() -> None:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", "--", str(IPAM_STORE), str(LAUNCHER)], check=False)
    for entry in _cache_entries():
        entry.unlink(missing_ok=True)


@pytest.mark.netns
def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    require_netns()
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        pytest.fail("Debian's containernetworking-plugins are not installed (/usr/lib/cni)")
    steps = parse(TUTORIAL.read_text())
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    (home / "cnisdk").symlink_to(ROOT)
    script = tmp_path / "tutorial.sh"
    script.write_text(bash_script(steps, home, out))
    bin_dir_existed = LAUNCHER.parent.exists()

    with _host_lock():
        assert _left_on_host() == [], "the tutorial's names are in use on this host"
        try:
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", str(script)],
                env=reader_environment(home),
                capture_output=True,
                text=True,
                timeout=600,  # a hang bound, not a speed target
                check=False,
            )
            left = _left_on_host()
        finally:
            _remove_what_a_failed_run_left()
            if not bin_dir_existed:
                for directory in (LAUNCHER.parent, LAUNCHER.parent.parent):
                    try:
                        directory.rmdir()  # only when the page's install made it, and empty
                    except OSError:
                        break

    ran = 0
    for n, step in enumerate(steps):
        if isinstance(step, File) and step.path.startswith("/"):
            made = out / f"{n}.file"
            assert made.exists(), f"{step.path} was not made by the commands before it"
            shown = normalise(step.text, str(home))
            assert normalise(made.read_text(), str(home)) == shown, step.path
        if not isinstance(step, Command):
            continue
        rc = out / f"{n}.rc"
        output = (out / f"{n}.out").read_text() if (out / f"{n}.out").exists() else ""
        assert rc.exists(), f"not reached: {step.line}\n{done.stdout}{done.stderr}"
        assert rc.read_text().strip() == "0", f"`{step.line}` failed:\n{output}"
        ran += 1
        if step.shown or not step.line.startswith("pip "):
            assert normalise(output, str(home)) == normalise("\n".join(step.shown), str(home)), (
                f"`{step.line}` printed:\n{output}"
            )
    assert done.returncode == 0, done.stderr
    assert ran == sum(isinstance(s, Command) for s in steps)
    assert left == [], f"the tutorial's clean-up left: {left}"
