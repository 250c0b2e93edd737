"""Real network namespaces for tests: :func:`temporary_netns`, and the ``netns`` fixtures.

Namespaces are made and removed with iproute2 (``ip netns add``/``del``), the way a container
runtime leaves them at ``/var/run/netns/<name>``. They need root; :func:`require_netns` skips
a test when that is not available, or fails it when ``CNISDK_REQUIRE_NETNS=1`` (for CI jobs
that must not silently skip).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Literal, overload

import pytest

__all__ = [
    "NetNSPair",
    "netns",
    "netns_pair",
    "require_netns",
    "temporary_netns",
]

_NETNS_DIR = "/var/run/netns"
# iproute2 accepts more, but these names end up in paths and argv of root commands.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_MAX_IFNAME = 15

_netns_unusable: str | None = None
_probed = False


@dataclasses.dataclass(frozen=True)
class NetNSPair:
    """Two named namespaces joined by a veth pair, both ends up (and ``lo`` up in each).

    :ivar name: the main namespace, e.g. the "container".
    :ivar path: ``/var/run/netns/<name>``.
    :ivar ifname: the veth end inside the main namespace.
    :ivar peer_name: the peer namespace, e.g. the "host".
    :ivar peer_path: ``/var/run/netns/<peer_name>``.
    :ivar peer_ifname: the veth end inside the peer namespace.
    """

    name: str
    path: str
    ifname: str
    peer_name: str
    peer_path: str
    peer_ifname: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )


def _probe() -> str | None:
    """Why network namespaces cannot be used here, or ``None`` if they can (probed once)."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need iproute2's `ip` command"
    name = f"cnisdk-probe-{os.getpid()}-{secrets.token_hex(3)}"
    added = _ip("netns", "add", name)
    if added.returncode != 0:
        return f"`ip netns add` does not work here: {added.stderr.strip()}"
    _ip("netns", "del", name)
    return None


def require_netns() -> None:
    """Skip the calling test unless network namespaces can be made here.

    Under ``CNISDK_REQUIRE_NETNS=1`` the test fails instead of being skipped.
    """
    global _netns_unusable, _probed
    if not _probed:
        _netns_unusable = _probe()
        _probed = True
    if _netns_unusable is None:
        return
    if os.environ.get("CNISDK_REQUIRE_NETNS", "") == "1":
        pytest.fail(f"{_netns_unusable} (CNISDK_REQUIRE_NETNS=1)", pytrace=False)
    pytest.skip(_netns_unusable)


def _check_name(kind: str, value: str, max_len: int | None = None) -> None:
    if not _SAFE_NAME.match(value) or (max_len is not None and len(value) > max_len):
        raise ValueError(f"invalid {kind} {value!r}")


def _unique_name(prefix: str) -> str:
    name = f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
    _check_name("namespace name", name)
    return name


def _delete(name: str) -> None:
    result = _ip("netns", "del", name)
    if result.returncode != 0 and os.path.lexists(os.path.join(_NETNS_DIR, name)):
        raise RuntimeError(f"could not delete netns {name!r}: {result.stderr.strip()}")


def _run_ip(*args: str) -> None:
    result = _ip(*args)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


@contextlib.contextmanager
def _single(prefix: str) -> Iterator[str]:
    name = _unique_name(prefix)
    _run_ip("netns", "add", name)
    try:
        yield os.path.join(_NETNS_DIR, name)
    finally:
        _delete(name)


@contextlib.contextmanager
def _pair(prefix: str, ifname: str, peer_ifname: str) -> Iterator[NetNSPair]:
    with _single(prefix) as path, _single(prefix) as peer_path:
        name, peer_name = os.path.basename(path), os.path.basename(peer_path)
        # Made inside the main namespace and moved straight to the peer: the host's own
        # namespace never sees the names, so "eth0" cannot clash with the host's eth0.
        _run_ip(
            "-n", name, "link", "add", ifname, "type", "veth",
            "peer", "name", peer_ifname, "netns", peer_name,
        )  # fmt: skip
        for ns, dev in ((name, ifname), (peer_name, peer_ifname), (name, "lo"), (peer_name, "lo")):
            _run_ip("-n", ns, "link", "set", dev, "up")
        yield NetNSPair(name, path, ifname, peer_name, peer_path, peer_ifname)


@overload
def temporary_netns(
    prefix: str = ..., *, with_veth: Literal[False] = ...
) -> AbstractContextManager[str]: ...
@overload
def temporary_netns(
    prefix: str = ..., *, with_veth: Literal[True], ifname: str = ..., peer_ifname: str = ...
) -> AbstractContextManager[NetNSPair]: ...
def temporary_netns(
    prefix: str = "cnisdk-",
    *,
    with_veth: bool = False,
    ifname: str = "eth0",
    peer_ifname: str = "veth0",
) -> AbstractContextManager[str] | AbstractContextManager[NetNSPair]:
    """A named network namespace for the duration of a ``with`` block, always deleted after.

    The name is ``<prefix><pid>-<random>``; the value is its path, ``/var/run/netns/<name>``.
    With ``with_veth=True`` a second (peer) namespace is made too, joined to the first by a
    veth pair (``ifname`` in the main namespace, ``peer_ifname`` in the peer), and the value
    is a :class:`NetNSPair`. Needs root: call :func:`require_netns` first in tests.

    :param prefix: the start of the namespace name(s): letters, digits, ``_.-``.
    :raises ValueError: for an unsafe prefix or interface name.
    :raises RuntimeError: if ``ip`` fails.
    """
    # Checked here, not in the generators, so a bad argument fails at the call.
    _check_name("namespace prefix", prefix)
    if with_veth:
        _check_name("interface name", ifname, _MAX_IFNAME)
        _check_name("interface name", peer_ifname, _MAX_IFNAME)
        return _pair(prefix, ifname, peer_ifname)
    return _single(prefix)


@pytest.fixture
def netns() -> Iterator[str]:
    """The path of a fresh, empty network namespace (only ``lo``, down), deleted after the test."""
    require_netns()
    with temporary_netns() as path:
        yield path


@pytest.fixture
def netns_pair() -> Iterator[NetNSPair]:
    """Two fresh namespaces joined by a veth pair (main ``eth0``, peer ``veth0``)."""
    require_netns()
    with temporary_netns(with_veth=True) as pair:
        yield pair
