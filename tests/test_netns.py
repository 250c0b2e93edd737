"""cnisdk._netns: namespace handles, single-use threads, processes and netlink in a netns."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from cnisdk import _netns
from cnisdk._netns import (
    NetNS,
    NetNSError,
    NetNSProcessTimeoutError,
    NotANetNSError,
    is_current_thread_netns,
    open_for_request,
)
from cnisdk.spec import CNIError
from cnisdk.testing import NetNSPair, _netns_fixtures, require_netns, temporary_netns

# The fixtures come from the cnisdk pytest plugin when the package is installed; imported
# here too so the module also runs from a plain checkout.
from cnisdk.testing._netns_fixtures import netns, netns_pair  # noqa: F401

SELF_NS = "/proc/thread-self/ns/net"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def handle(netns: str) -> Iterator[NetNS]:  # noqa: F811
    with NetNS.open(netns) as ns:
        yield ns


def _ns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _task_namespaces() -> dict[str, tuple[int, int]]:
    """The netns of every thread of this process (threads that end meanwhile are skipped)."""
    found: dict[str, tuple[int, int]] = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError):
            found[tid] = _ns_id(f"/proc/self/task/{tid}/ns/net")
    return found


def _assert_all_threads_home(home: tuple[int, int]) -> None:
    strays = {tid: ns for tid, ns in _task_namespaces().items() if ns != home}
    assert not strays, f"threads outside their namespace: {strays}"


def _netns_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cnisdk-netns:")]


# --- import time -----------------------------------------------------------------------------


def test_import_does_not_load_pyroute2_or_ctypes() -> None:
    code = (
        "import sys, cnisdk._netns; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'ctypes')]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- run() -----------------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_executes_inside_the_namespace(handle: NetNS) -> None:
    home = _ns_id(SELF_NS)
    inside = await handle.run(_ns_id, SELF_NS)
    assert inside == _ns_id(handle.path) != home
    # A fresh namespace has nothing but lo.
    assert await handle.run(socket.if_nameindex) == [(1, "lo")]
    assert await handle.run(handle.is_current_thread_netns) is True
    assert handle.is_current_thread_netns() is False
    assert _ns_id(SELF_NS) == home


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_sees_the_namespace_interfaces(netns_pair: NetNSPair) -> None:  # noqa: F811
    with NetNS.open(netns_pair.path) as ns, NetNS.open(netns_pair.peer_path) as peer:
        names = {name for _, name in await ns.run(socket.if_nameindex)}
        peer_names = {name for _, name in await peer.run(socket.if_nameindex)}
    assert names == {"lo", netns_pair.ifname}
    assert peer_names == {"lo", netns_pair.peer_ifname}


class _Boom(Exception):
    pass


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_propagates_exceptions_unchanged(handle: NetNS) -> None:
    boom = _Boom("inside")
    with pytest.raises(_Boom) as info:
        await handle.run(_raise, boom)
    assert info.value is boom
    with pytest.raises(FileNotFoundError):
        await handle.run(os.stat, "/nonexistent/cnisdk")


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_rejects_coroutine_functions(handle: NetNS) -> None:
    with pytest.raises(TypeError, match="synchronous"):
        await handle.run(anyio.sleep, 0)  # type: ignore[unused-coroutine]


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_works_after_close_and_unmount(netns: str) -> None:  # noqa: F811
    ns = NetNS.open(netns)
    target = _ns_id(netns)
    # The fd keeps the namespace alive after `ip netns del` removes the mount.
    await anyio.run_process(["ip", "netns", "del", os.path.basename(netns)])
    try:
        assert await ns.run(_ns_id, SELF_NS) == target
    finally:
        ns.close()
    ns.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        ns.fileno()
    with pytest.raises(ValueError, match="closed"):
        await ns.run(os.getpid)


@pytest.mark.netns
@pytest.mark.anyio
async def test_thousand_runs_never_leave_a_thread_in_the_namespace(handle: NetNS) -> None:
    home = _ns_id(SELF_NS)
    target = _ns_id(handle.path)
    loop_thread_moved: list[tuple[int, int]] = []
    seen: list[tuple[int, int]] = []
    failures = 0

    def work(i: int) -> tuple[int, int]:
        if i % 3 == 0:
            raise _Boom(i)
        return _ns_id(SELF_NS)

    async def one(i: int, limiter: anyio.CapacityLimiter) -> None:
        nonlocal failures
        async with limiter:
            try:
                seen.append(await handle.run(work, i))
            except _Boom:
                failures += 1
            current = _ns_id(SELF_NS)  # the event-loop thread, between calls
            if current != home:
                loop_thread_moved.append(current)

    start = time.monotonic()
    limiter = anyio.CapacityLimiter(32)  # many threads in the namespace at once
    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(one, i, limiter)
    elapsed = time.monotonic() - start

    assert failures == 334
    assert len(seen) == 666 and set(seen) == {target}
    assert not loop_thread_moved
    _assert_all_threads_home(home)
    assert elapsed < 10, elapsed


@pytest.mark.netns
@pytest.mark.anyio
async def test_cancelling_run_waits_for_the_thread_to_leave(handle: NetNS) -> None:
    home = _ns_id(SELF_NS)
    start = time.monotonic()
    with anyio.move_on_after(0.1) as scope:
        await handle.run(time.sleep, 0.5)
        await anyio.lowlevel.checkpoint()  # the cancellation is delivered here
        pytest.fail("not cancelled")
    assert scope.cancelled_caught
    assert time.monotonic() - start >= 0.5  # waited for fn: nothing is left running inside
    _assert_all_threads_home(home)


@pytest.mark.netns
@pytest.mark.anyio
async def test_cancelled_task_does_not_start_a_thread(handle: NetNS) -> None:
    called: list[int] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await handle.run(called.append, 1)
    assert scope.cancelled_caught and not called


@pytest.mark.netns
@pytest.mark.anyio
async def test_failed_restore_discards_the_thread(
    handle: NetNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _ns_id(SELF_NS)
    real_setns = _netns._setns

    def setns_that_cannot_go_home(fd: int) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == home:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        real_setns(fd)

    monkeypatch.setattr(_netns, "_setns", setns_that_cannot_go_home)
    with pytest.raises(NetNSError, match="could not return") as info:
        await handle.run(_raise, _Boom("also failed"))
    assert isinstance(info.value.__context__, _Boom)
    # The stuck thread ended: nothing else can ever run in it.
    for thread in _netns_threads():
        await anyio.to_thread.run_sync(thread.join, 5)
    assert not _netns_threads()
    _assert_all_threads_home(home)


@pytest.mark.netns
@pytest.mark.anyio
async def test_failed_enter_is_reported(handle: NetNS, monkeypatch: pytest.MonkeyPatch) -> None:
    def setns_refused(fd: int) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_netns, "_setns", setns_refused)
    called: list[int] = []
    with pytest.raises(NetNSError, match="error switching to netns"):
        await handle.run(called.append, 1)
    assert not called


# --- run_process() ---------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_inside_the_namespace(handle: NetNS) -> None:
    name = os.path.basename(handle.path)
    await anyio.run_process(
        ["ip", "-n", name, "link", "add", "cnisdk-probe0", "type", "veth", "peer", "cnisdk-probe1"]
    )
    inside = await handle.run_process(["ip", "-o", "link"])
    assert inside.returncode == 0, inside.stderr
    links = [line.split(":")[1].strip() for line in inside.stdout.decode().splitlines()]
    assert sorted(link.split("@")[0] for link in links) == ["cnisdk-probe0", "cnisdk-probe1", "lo"]
    host = await anyio.run_process(["ip", "-o", "link"])
    assert b"cnisdk-probe0" not in host.stdout
    assert inside.args == ["ip", "-o", "link"]


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_exit_status_input_and_env(handle: NetNS) -> None:
    failed = await handle.run_process(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    echoed = await handle.run_process(["cat"], input=b"hello")
    assert echoed.stdout == b"hello"
    env = await handle.run_process(
        ["sh", "-c", 'echo "$X"'], env={"X": "y", "PATH": "/usr/bin:/bin"}
    )
    assert env.stdout == b"y\n"
    # stdin is /dev/null, not the plugin's stdin (the CNI config)
    assert (await handle.run_process(["cat"])).stdout == b""


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_timeout_kills(handle: NetNS) -> None:
    start = time.monotonic()
    with pytest.raises(NetNSProcessTimeoutError) as info:
        await handle.run_process(["sh", "-c", "echo started; sleep 10"], timeout=0.5)
    assert time.monotonic() - start < 3
    assert isinstance(info.value, TimeoutError)
    assert info.value.argv == ["sh", "-c", "echo started; sleep 10"]
    assert info.value.stdout == b"started\n"
    assert "sleep 10" in str(info.value) and "0.5 s" in str(info.value)
    # the whole process group died, the sleep included
    ps = await anyio.run_process(["pgrep", "-f", "echo started; sleep 10"], check=False)
    assert ps.returncode == 1, ps.stdout


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_sleep_timeout(handle: NetNS) -> None:
    start = time.monotonic()
    with pytest.raises(NetNSProcessTimeoutError):
        await handle.run_process(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - start < 3


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_cancel_kills_the_child(handle: NetNS) -> None:
    home = _ns_id(SELF_NS)
    start = time.monotonic()
    with anyio.move_on_after(0.3) as scope:
        await handle.run_process(["sleep", "10"])
    assert scope.cancelled_caught
    assert time.monotonic() - start < 3
    _assert_all_threads_home(home)
    # The thread has handed back its outcome; it ends as soon as the scheduler runs it again
    # (that may take a while on a loaded machine, so join rather than sample).
    for thread in _netns_threads():
        await anyio.to_thread.run_sync(thread.join, 5)
    assert not _netns_threads()


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_argument_errors(handle: NetNS) -> None:
    with pytest.raises(TypeError, match="not a string"):
        await handle.run_process("ip link")
    with pytest.raises(ValueError, match="empty"):
        await handle.run_process([])
    with pytest.raises(FileNotFoundError):
        await handle.run_process(["/nonexistent/cnisdk-tool"])


# --- netlink() -------------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.anyio
async def test_netlink_works_inside_the_namespace(handle: NetNS) -> None:
    home = _ns_id(SELF_NS)
    async with handle.netlink() as ipr:
        # veth, not dummy: test kernels in containers often lack the dummy module
        await ipr.link("add", ifname="cnisdk-dummy0", kind="veth", peer="cnisdk-dummy1")
        (idx,) = await ipr.link_lookup(ifname="cnisdk-dummy0")
        await ipr.addr("add", index=idx, address="192.0.2.7", prefixlen=24)
        await ipr.link("set", index=idx, state="up")
    shown = await anyio.run_process(
        ["ip", "netns", "exec", os.path.basename(handle.path), "ip", "-o", "addr", "show",
         "cnisdk-dummy0"]
    )  # fmt: skip
    assert b"192.0.2.7/24" in shown.stdout
    host = await anyio.run_process(["ip", "-o", "link"])
    assert b"cnisdk-dummy0" not in host.stdout
    _assert_all_threads_home(home)


@pytest.mark.netns
@pytest.mark.anyio
async def test_missing_namespace_is_never_created() -> None:
    require_netns()
    missing = f"/var/run/netns/cnisdk-missing-{os.getpid()}"
    with pytest.raises(FileNotFoundError):
        NetNS.open(missing)
    assert not await anyio.Path(missing).exists()

    from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

    # The flags=0 that netlink() relies on: pyroute2 raises (at the first request; the
    # socket is made lazily) instead of creating the netns.
    with pytest.raises(FileNotFoundError):
        async with AsyncIPRoute(netns=missing, flags=0) as ipr:
            await ipr.link("dump")
    assert not await anyio.Path(missing).exists()


# --- handles and open_for_request() ----------------------------------------------------------


@pytest.mark.netns
def test_handle_basics(netns: str) -> None:  # noqa: F811
    with NetNS.open(netns) as ns:
        assert ns.path == netns and ns.fileno() >= 0
        assert ns.same_as(netns) and not ns.same_as(SELF_NS)
        with NetNS.from_fd(ns.fileno()) as dup:
            assert dup.fileno() != ns.fileno()
            assert dup.same_as(netns)
            assert dup.path.startswith("/proc/")
        assert "fd=" in repr(ns)
    assert ns.closed and "closed" in repr(ns)
    assert is_current_thread_netns(SELF_NS)
    assert is_current_thread_netns("/proc/self/ns/net")
    assert not is_current_thread_netns(netns)


def test_open_rejects_files_that_are_not_network_namespaces(tmp_path: Path) -> None:
    plain = tmp_path / "netns"
    plain.write_bytes(b"")
    with pytest.raises(NotANetNSError, match=r'^unknown FS magic on ".*/netns": [0-9a-f]+$'):
        NetNS.open(str(plain))
    with pytest.raises(NotANetNSError, match="not a network namespace"):
        NetNS.open("/proc/self/ns/mnt")
    with pytest.raises(NotANetNSError):
        NetNS.open("/proc/version")  # procfs magic, but not a namespace
    with open(plain, "rb") as f, pytest.raises(NotANetNSError):
        NetNS.from_fd(f.fileno())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotANetNSError):
        NetNS.open(str(fifo))  # refused before open(), which would block


@pytest.mark.netns
def test_open_for_request_del_with_vanished_namespace() -> None:
    require_netns()
    with temporary_netns() as path:
        pass
    assert not os.path.lexists(path)
    assert open_for_request(path, "DEL") is None
    assert open_for_request("", "DEL") is None
    with pytest.raises(CNIError) as info:
        open_for_request(path, "ADD")
    assert info.value.code == 999
    assert info.value.msg == (
        f'failed to open netns "{path}": failed to Statfs "{path}": no such file or directory'
    )
    assert info.value.details == ""


@pytest.mark.netns
def test_open_for_request_opens_a_container_namespace(netns: str) -> None:  # noqa: F811
    for command in ("ADD", "CHECK", "DEL"):
        ns = open_for_request(netns, command)
        assert ns is not None and ns.same_as(netns)
        ns.close()


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_open_for_request_leaves_the_own_namespace_to_the_skel(command: str) -> None:
    # The skel decides CNI_NETNS_OVERRIDE once, before the plugin runs; opening the namespace
    # for the plugin must not refuse what the skel accepted.
    ns = open_for_request("/proc/self/ns/net", command)
    assert ns is not None and ns.is_current_thread_netns()
    ns.close()


def test_open_for_request_invalid_paths(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-netns"
    plain.write_bytes(b"")
    for command in ("ADD", "CHECK", "DEL"):
        with pytest.raises(CNIError) as info:
            open_for_request(str(plain), command)
        assert info.value.code == 999
        assert info.value.msg.startswith(
            f'failed to open netns "{plain}": unknown FS magic on "{plain}": '
        )
    with pytest.raises(CNIError, match="failed to Statfs"):
        open_for_request("", "ADD")
    for command in ("GC", "STATUS", "VERSION"):
        assert open_for_request(str(plain), command) is None
    with pytest.raises(ValueError):
        open_for_request(str(plain), "add")


# --- the test kit ----------------------------------------------------------------------------


@pytest.mark.netns
def test_temporary_netns_is_always_deleted() -> None:
    require_netns()
    with pytest.raises(_Boom), temporary_netns(prefix="cnisdk-t-") as path:
        assert os.path.basename(path).startswith("cnisdk-t-")
        with NetNS.open(path) as ns:
            assert ns.same_as(path)
        raise _Boom
    assert not os.path.lexists(path)
    with pytest.raises(ValueError):
        temporary_netns(prefix="../evil")
    with pytest.raises(ValueError):
        temporary_netns(with_veth=True, ifname="much-too-long-ifname")


@pytest.mark.netns
def test_temporary_netns_with_veth() -> None:
    require_netns()
    with temporary_netns(with_veth=True, ifname="eth0", peer_ifname="host0") as pair:
        for path, ifname in ((pair.path, "eth0"), (pair.peer_path, "host0")):
            out = subprocess.run(
                ["ip", "-n", os.path.basename(path), "-o", "-d", "link", "show", ifname],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert " veth " in out.stdout
            assert ",UP" in out.stdout or "UP>" in out.stdout
    assert not os.path.lexists(pair.path) and not os.path.lexists(pair.peer_path)


def test_require_netns_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_netns_fixtures, "_probed", True)
    monkeypatch.setattr(_netns_fixtures, "_netns_unusable", "no namespaces here")
    monkeypatch.delenv("CNISDK_REQUIRE_NETNS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no namespaces here"):
        require_netns()
    monkeypatch.setenv("CNISDK_REQUIRE_NETNS", "1")
    with pytest.raises(pytest.fail.Exception, match="no namespaces here"):
        require_netns()


_CLONE_NEWUTS = 0x04000000


def _own_hostname(name: str) -> tuple[int, int]:
    """A ``prepare_thread`` hook: this thread gets its own UTS namespace, named ``name``."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    socket.sethostname(name)
    return _ns_id(SELF_NS)


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_prepare_thread_sets_up_what_the_child_inherits(
    handle: NetNS,
) -> None:
    host_name = socket.gethostname()
    ran_in: list[tuple[int, int]] = []

    def prepare() -> None:
        ran_in.append(_own_hostname("cnisdk-prepared"))

    done = await handle.run_process(["cat", "/proc/sys/kernel/hostname"], prepare_thread=prepare)
    assert (done.returncode, done.stdout) == (0, b"cnisdk-prepared\n")
    # The hook ran once, on the spawning thread while it was inside the namespace.
    assert ran_in == [_ns_id(handle.path)]
    # The state stayed with that single-use thread: ours, and the next child's, are as before.
    assert socket.gethostname() == host_name
    plain = await handle.run_process(["cat", "/proc/sys/kernel/hostname"])
    assert plain.stdout.decode().strip() == host_name


@pytest.mark.netns
@pytest.mark.anyio
async def test_run_process_prepare_thread_failure_starts_no_child(
    handle: NetNS, tmp_path: Path
) -> None:
    marker = tmp_path / "started"

    def refuse() -> None:
        raise PermissionError("not here")

    with pytest.raises(PermissionError, match="not here"):
        await handle.run_process(["touch", str(marker)], prepare_thread=refuse)
    assert not marker.exists()
    # The thread went home as usual: the handle keeps working.
    assert (await handle.run_process(["touch", str(marker)])).returncode == 0
    assert marker.exists()
