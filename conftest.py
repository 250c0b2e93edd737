"""The project's own test run must leave the host, and its own process, as it found them.

Before the first test and after the last one, the host's network namespaces, links,
iptables/ip6tables rules and nft ruleset are read; any difference fails the run and is shown.
A thread that a test module starts must end with that module: one left blocked on a socket
that its module closed can later take another module's connections (a restarted ``accept``
runs on the fd number, by then another socket's). (This is the project's conftest, not the
public pytest plugin: plugin authors' suites are theirs to police.)

The check cannot tell whose change it sees: on a machine where other work adds or removes
namespaces or rules while the suite runs, ``CNISDK_HOST_STATE_CHECK=0`` turns it off. CI
never sets it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["pytester"]

_THREAD_GRACE = 10.0
"""Seconds a module's threads get to end after its teardown (a server's handler finishing)."""
_POOLS = ("AnyIO worker thread", "asyncio_", "ThreadPoolExecutor")
"""Idle worker pools, reused by the next module: not tied to one module's sockets."""

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_BEFORE = pytest.StashKey[dict[str, list[str]]]()


def _lines(argv: list[str]) -> list[str] | None:
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        return [f"({' '.join(argv)} failed: {done.stderr.strip()})"]
    return done.stdout.splitlines()


def _host_state() -> dict[str, list[str]]:
    state: dict[str, list[str]] = {}
    netns = _lines(["ip", "netns", "list"])
    if netns is not None:
        state["network namespaces"] = sorted(line.split()[0] for line in netns if line.strip())
        links = _lines(["ip", "-o", "link", "show"])
        state["links"] = sorted(
            line.split(":", 2)[1].strip().split("@")[0] for line in links or [] if ":" in line
        )
    for tool in ("iptables-save", "ip6tables-save"):
        rules = _lines([tool])
        if rules is not None:
            # Counters move with traffic; comments carry the time of the dump.
            state[tool] = [_COUNTERS.sub("", r) for r in rules if not r.startswith("#")]
    ruleset = _lines(["nft", "-s", "list", "ruleset"])
    if ruleset is not None:
        state["nft ruleset"] = ruleset
    return state


def _diff(before: list[str], after: list[str]) -> list[str]:
    gone = [f"  - {line}" for line in before if line not in after]
    new = [f"  + {line}" for line in after if line not in before]
    return gone + new


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0 and os.environ.get("CNISDK_HOST_STATE_CHECK", "1") != "0":
        session.config.stash[_BEFORE] = _host_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return
    after = _host_state()
    problems: list[str] = []
    for what, lines in before.items():
        changed = _diff(lines, after.get(what, []))
        if changed:
            problems.append(f"{what} differ after the test run:")
            problems.extend(changed)
    if problems:
        reporter: Any = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the test run left the host changed:\n" + "\n".join(problems)
        if reporter is not None:
            reporter.write_sep("=", "host state", red=True)
            reporter.write_line(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="module")
def _threads_end_with_their_module() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _THREAD_GRACE
    while True:
        left = [
            thread
            for thread in threading.enumerate()
            if thread not in before and not thread.name.startswith(_POOLS)
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == [], f"threads started by this module are still running: {left}"
