"""How istio-redirect runs iptables and nft inside the pod's network namespace.

Every tool runs as istio-iptables runs it:

- with a fixed ``PATH`` (the runtime's ``PATH`` never chooses which binaries run as root) and
  ``LC_ALL=C``;
- with ``XTABLES_LOCKFILE`` on the pod's namespace file, so legacy iptables never waits on the
  host's ``/run/xtables.lock`` behind kube-proxy (istio#31936, PR #47002);
- in a private mount namespace where ``/etc/nsswitch.conf`` is ``/dev/null``: ``iptables -m
  owner --uid-owner 1337`` looks the name up before it reads it as a number, and an NSS module
  (LDAP, OS Login) can stall that for tens of seconds (istio#48416). Hosts whose security
  policy refuses the mount (SELinux, Bottlerocket; istio#48746) run the tools as usual; the
  first refusal of a request is logged.

``ctypes`` is imported only when a tool first runs (it costs about a millisecond of import).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes
    import logging

    from cnisdk import NetNS
    from cnisdk_istio_redirect._apply import CommandRunner

__all__ = ["NSSWITCH", "TOOL_ENV", "NsswitchHider", "hide_file", "netns_runner"]

TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
"""The environment every tool gets, plus ``XTABLES_LOCKFILE``."""

NSSWITCH = "/etc/nsswitch.conf"
TOOL_TIMEOUT = 60.0
"""Seconds before a tool is killed; legacy iptables waits up to 30 s for its lock."""

_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_SLAVE = 0x80000


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes

    # The C library the interpreter is linked against; find_library would run ldconfig.
    return ctypes.CDLL(None, use_errno=True)


def hide_file(path: str) -> str | None:
    """Give the calling thread a private mount namespace where ``path`` is ``/dev/null``.

    Only the calling thread moves (``unshare(CLONE_NEWNS)`` also unshares the thread's
    filesystem context), so call it on a thread that ends afterwards, such as the one
    :meth:`cnisdk.NetNS.run_process` runs ``prepare_thread`` on; its children inherit the view.

    :param path: the file to hide; nothing is done when it does not exist.
    :returns: ``None`` when hidden (or absent), else why not.
    """
    import ctypes

    libc = _libc()

    def failed(what: str) -> str:
        return f"{what}: {os.strerror(ctypes.get_errno())}"

    if not os.path.exists(path):
        return None
    if libc.unshare(_CLONE_NEWNS) != 0:
        return failed("unshare(CLONE_NEWNS)")
    # Private (or at least slave) first: the bind mount must never propagate to the host.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0 and (
        libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) != 0
    ):
        return failed("making / private")
    if libc.mount(b"/dev/null", os.fsencode(path), None, _MS_BIND, None) != 0:
        return failed(f"bind-mounting /dev/null over {path}")
    return None


class NsswitchHider:
    """A ``prepare_thread`` hook that hides ``nsswitch.conf`` from the tool about to start.

    Best effort: when the host refuses, the tool runs with the host's file and the first
    refusal is logged (one warning per hook, not one per tool).

    :param log: where the refusal is reported.
    :param path: the file to hide.
    """

    def __init__(self, log: logging.Logger, path: str = NSSWITCH) -> None:
        self.log = log
        self.path = path
        self.refused: str | None = None

    def __call__(self) -> None:
        reason = hide_file(self.path)
        if reason is not None and self.refused is None:
            self.refused = reason
            self.log.warning(
                "running iptables/nft with the host's %s (NSS lookups possible): %s",
                self.path,
                reason,
            )


def netns_runner(netns: NetNS, log: logging.Logger) -> CommandRunner:
    """The :class:`~cnisdk_istio_redirect._apply.CommandRunner` for one request's pod netns.

    :param netns: the pod's namespace.
    :param log: the request's logger (for a refused ``nsswitch.conf`` mount).
    :returns: runs an argv inside ``netns`` as described in the module docs.
    """
    env = {**TOOL_ENV, "XTABLES_LOCKFILE": netns.path}
    hider = NsswitchHider(log)

    async def run(argv: Sequence[str], input: bytes | None = None) -> tuple[int, bytes, bytes]:
        completed = await netns.run_process(
            list(argv), input=input, env=env, timeout=TOOL_TIMEOUT, prepare_thread=hider
        )
        return completed.returncode, completed.stdout, completed.stderr

    return run
