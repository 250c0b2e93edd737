"""Network namespace handles: run code, processes and netlink inside a container's netns.

Linux ``setns(2)`` moves only the *calling thread*. Moving the event-loop thread would move
every task on the loop, and moving a pooled worker thread risks handing a thread that is
stuck in the container's namespace to unrelated work. So every :meth:`NetNS.run` gets a
**new, single-use thread** that enters the namespace, does the work, returns to the namespace
it started in (read from ``/proc/thread-self/ns/net``, never ``/proc/self``, which is the
*main* thread's) and ends. Go's ``ns.Do`` follows the same rule with a fresh locked goroutine.

Netlink needs no thread at all: :meth:`NetNS.netlink` gives a pyroute2 ``AsyncIPRoute`` whose
socket is created in a forked child from our open fd, so no thread of ours moves and a
missing namespace can never be created by accident.

Import time is latency for a CNI plugin: ``ctypes``, ``subprocess`` and pyroute2 are imported
only when a request needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import platform
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel

from cnisdk.spec._errors import CNIError, ErrorCode

if TYPE_CHECKING:
    import ctypes
    import subprocess
    from types import TracebackType
    from typing import Self

    from pyroute2 import AsyncIPRoute

__all__ = [
    "NetNS",
    "NetNSError",
    "NetNSProcessTimeoutError",
    "NotANetNSError",
    "is_current_thread_netns",
    "open_for_request",
]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

#: ``statfs(2)`` ``f_type`` of the nsfs pseudo file system (namespace files since Linux 3.19).
NSFS_MAGIC = 0x6E736673
#: ``f_type`` of procfs, where namespace files lived before nsfs; Go's ``ns.GetNS`` accepts both.
PROC_SUPER_MAGIC = 0x9FA0
_CLONE_NEWNET = 0x40000000
#: ``ioctl(fd, NS_GET_NSTYPE)`` = ``_IO(0xb7, 0x3)`` (Linux 4.11+): the ``CLONE_NEW*`` type of an
#: nsfs file. The magic number alone accepts ``/proc/self/ns/mnt`` and friends.
_NS_GET_NSTYPE = 0xB703
_THREAD_NETNS = "/proc/thread-self/ns/net"
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class NetNSError(Exception):
    """A network namespace could not be entered, left or used."""


class NotANetNSError(NetNSError):
    """A path (or fd) exists but is not a network namespace."""


class NetNSProcessTimeoutError(TimeoutError):
    """A program started by :meth:`NetNS.run_process` ran past its timeout and was killed.

    :ivar argv: the program and its arguments.
    :ivar timeout: the timeout in seconds.
    :ivar stdout: what the program wrote to stdout before it was killed.
    :ivar stderr: what the program wrote to stderr before it was killed.
    """

    def __init__(
        self, argv: Sequence[str], timeout: float, netns: str, stdout: bytes, stderr: bytes
    ) -> None:
        super().__init__(
            f"command {list(argv)!r} in netns {netns!r} timed out after {timeout:g} s "
            "and was killed"
        )
        self.argv = list(argv)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr


# --- libc, loaded lazily (ctypes costs ~1.3 ms of import time) -------------------------------

_libc: ctypes.CDLL | None = None


def _get_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes

        # CDLL(None) is the C library the interpreter is linked against (glibc or musl);
        # ctypes.util.find_library would run ldconfig, far slower.
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _setns(fd: int) -> None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread (``os.setns`` is Python 3.12+)."""
    import ctypes

    if _get_libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _statfs_type(target: str | int) -> int:
    """``f_type`` of ``statfs(path)`` / ``fstatfs(fd)`` (``os`` has no wrapper for either)."""
    import ctypes

    libc = _get_libc()
    # struct statfs is 120 bytes on 64-bit Linux; f_type is its first member, a long
    # everywhere but s390x, where it is an unsigned int.
    buf = ctypes.create_string_buffer(256)
    if isinstance(target, int):
        rc = libc.fstatfs(target, buf)
    else:
        rc = libc.statfs(os.fsencode(target), buf)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target if isinstance(target, str) else None)
    ctype = ctypes.c_uint if platform.machine() == "s390x" else ctypes.c_long
    return int(ctype.from_buffer(buf).value) & 0xFFFFFFFF


def _check_netns_fd(fd: int, path: str) -> None:
    """Raise :class:`NotANetNSError` unless ``fd`` is a network namespace."""
    import fcntl

    fs_type = _statfs_type(fd)
    if fs_type not in (NSFS_MAGIC, PROC_SUPER_MAGIC):
        # Go's NSPathNotNSErr text: `unknown FS magic on "<path>": <hex>`.
        raise NotANetNSError(f'unknown FS magic on "{path}": {fs_type:x}')
    try:
        ns_type = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        # ENOTTY on an nsfs file means a kernel older than 4.11: trust the magic, as Go does.
        # A procfs file that is not a namespace answers ENOTTY too, and is refused.
        if exc.errno == errno.ENOTTY and fs_type == NSFS_MAGIC:
            return
        raise NotANetNSError(f"{path!r} is not a namespace: {exc.strerror}") from None
    if ns_type != _CLONE_NEWNET:
        raise NotANetNSError(f"{path!r} is a namespace, but not a network namespace")


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_current_thread_netns(path: str) -> bool:
    """Whether ``path`` is the network namespace of the calling thread.

    Compares ``st_dev``/``st_ino`` with ``/proc/thread-self/ns/net`` (not ``/proc/self``,
    which is the main thread's namespace).

    :param path: a namespace path, e.g. ``/var/run/netns/cni-1234``.
    :raises OSError: if ``path`` cannot be stat'ed.
    """
    return _same_file(os.stat(path), os.stat(_THREAD_NETNS))


# --- the single-use thread -----------------------------------------------------------------


class _Outcome(Generic[T]):
    """What a netns thread hands back: a value, or an exception to raise in the waiting task."""

    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: T | None = None
        self.error: BaseException | None = None

    def unwrap(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # break the frame <-> exception cycle
            raise error
        return self.value  # type: ignore[return-value]  # set whenever error is None


def _thread_main(
    nsfd: int,
    path: str,
    inside: Callable[[], Any],
    outside: Callable[[Any], Any] | None,
    outcome: _Outcome[Any],
    wake: Callable[[], None],
) -> None:
    """Body of a single-use thread: enter ``nsfd``, run ``inside``, go home, maybe run ``outside``.

    ``nsfd`` is a private duplicate owned by this thread, so closing the :class:`NetNS`
    meanwhile cannot turn it into some other file.
    """
    try:
        try:
            home = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            outcome.error = NetNSError(f"failed to open current netns: {exc}")
            return
        restored = False
        try:
            try:
                _setns(nsfd)
            except OSError as exc:
                # setns is all-or-nothing: the thread is still at home.
                restored = True
                outcome.error = NetNSError(f"error switching to netns {path!r}: {exc.strerror}")
                return
            try:
                outcome.value = inside()
            except BaseException as exc:
                outcome.error = exc
            try:
                _setns(home)
                restored = True
            except OSError as exc:
                # This thread is stuck in the container's namespace. It is single-use and
                # ends right below, so nothing else ever runs here; the caller learns of it.
                failure = NetNSError(
                    f"failed to switch back from netns {path!r} ({exc.strerror}); "
                    "the thread could not return to its namespace and was discarded"
                )
                failure.__context__ = outcome.error
                outcome.error = failure
        finally:
            os.close(home)
        if restored and outside is not None and outcome.error is None:
            try:
                outcome.value = outside(outcome.value)
            except BaseException as exc:
                outcome.error = exc
    finally:
        os.close(nsfd)
        wake()


# --- run_process helpers -------------------------------------------------------------------


class _ChildHandle:
    """Shares the child process between its netns thread and a task that may cancel it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False

    def kill(self) -> None:
        """Kill the child's process group now, or as soon as it has been started."""
        with self.lock:
            self.cancelled = True
            proc = self.proc
        if proc is not None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    import signal

    # The child leads its own process group (process_group=0), so helpers it forked die
    # with it and cannot hold the output pipes open. While the leader is alive, or not yet
    # reaped, its pid cannot have been reused.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _communicate(
    proc: subprocess.Popen[bytes],
    handle: _ChildHandle,
    argv: list[str],
    path: str,
    input: bytes | None,
    timeout: float,
) -> subprocess.CompletedProcess[bytes]:
    import subprocess

    with handle.lock:
        cancelled = handle.cancelled
    if cancelled:
        _kill_group(proc)
    try:
        stdout, stderr = proc.communicate(input, timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            # Collect what was written and reap the child. A grandchild that left the
            # process group may still hold a pipe: give up on the pipes after a moment.
            stdout, stderr = proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            proc.wait()
            stdout, stderr = b"", b""
        raise NetNSProcessTimeoutError(argv, timeout, path, stdout or b"", stderr or b"") from None
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


# --- the handle ----------------------------------------------------------------------------


class NetNS:
    """An open network namespace.

    Holds an fd on the namespace, so the namespace stays alive (and is the same one) for
    the handle's lifetime even if its bind mount is removed. Use :meth:`open`, and close the
    handle (or use it as a context manager) when the request is done.

    :param fd: an fd on a network namespace; the handle takes ownership of it.
    :param path: the path it was opened from, for messages.
    """

    __slots__ = ("_fd", "_path")

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self._path = path

    @classmethod
    def open(cls, path: str) -> NetNS:
        """Open the network namespace at ``path`` (e.g. ``/var/run/netns/x``, ``/proc/1/ns/net``).

        Like Go's ``ns.GetNS``, the path must be on nsfs or procfs; it must also be a *network*
        namespace. The file system type is checked before opening, so a FIFO or device at
        the path is never opened.

        :raises FileNotFoundError: if nothing is at ``path`` (the namespace is never created).
        :raises NotANetNSError: if ``path`` is not a network namespace.
        :raises OSError: for other failures to reach the file.
        """
        fs_type = _statfs_type(path)
        if fs_type not in (NSFS_MAGIC, PROC_SUPER_MAGIC):
            raise NotANetNSError(f'unknown FS magic on "{path}": {fs_type:x}')
        fd = os.open(path, _OPEN_FLAGS)
        try:
            # Again on the fd: the path may have been swapped since the statfs.
            _check_netns_fd(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    @classmethod
    def from_fd(cls, fd: int, path: str | None = None) -> NetNS:
        """A handle on a duplicate of ``fd``; the caller keeps (and closes) ``fd``.

        :param path: shown in messages; defaults to ``/proc/<pid>/fd/<fd>`` of the duplicate.
        :raises NotANetNSError: if ``fd`` is not a network namespace.
        """
        dup = os.dup(fd)  # non-inheritable, like O_CLOEXEC
        name = path if path is not None else f"/proc/{os.getpid()}/fd/{dup}"
        try:
            _check_netns_fd(dup, name)
        except BaseException:
            os.close(dup)
            raise
        return cls(dup, name)

    @property
    def path(self) -> str:
        """The path the namespace was opened from."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        """The namespace fd, still owned by this handle.

        :raises ValueError: if the handle is closed.
        """
        if self._fd is None:
            raise ValueError(f"netns handle for {self._path!r} is closed")
        return self._fd

    def close(self) -> None:
        """Close the fd. Idempotent; calls to :meth:`run` already under way are unaffected."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"<NetNS {self._path!r} {state}>"

    def same_as(self, other_path: str) -> bool:
        """Whether ``other_path`` is this same namespace (compares ``st_dev``/``st_ino``).

        :raises OSError: if ``other_path`` cannot be stat'ed.
        """
        return _same_file(os.fstat(self.fileno()), os.stat(other_path))

    def is_current_thread_netns(self) -> bool:
        """Whether the calling thread is already in this namespace."""
        return _same_file(os.fstat(self.fileno()), os.stat(_THREAD_NETNS))

    # -- running code inside ----------------------------------------------------------------

    async def run(self, fn: Callable[[*PosArgsT], T], *args: *PosArgsT) -> T:
        """Call ``fn(*args)`` on a new single-use thread inside this namespace.

        The thread saves its namespace from ``/proc/thread-self/ns/net``, enters this one,
        calls ``fn``, switches back and ends. It is never pooled or reused; the event-loop
        thread never moves. Use it for work that needs the *caller* in the namespace:
        ``/proc/sys/net`` writes, raw or packet sockets, ``socket.if_nameindex()``.

        Cancellation waits for ``fn`` to return (running Python code cannot be interrupted)
        and for the thread to leave the namespace, as :func:`anyio.to_thread.run_sync` does;
        the result is then returned and the cancellation takes effect at the caller's next
        checkpoint. Thread-local state, ``contextvars`` and the event loop are not available
        to ``fn``.

        :param fn: a synchronous callable.
        :return: what ``fn`` returns.
        :raises Exception: whatever ``fn`` raises, unchanged.
        :raises NetNSError: if the namespace could not be entered, or the thread could not
            switch back (it is then discarded, never reused).
        """
        if asyncio.iscoroutinefunction(fn):
            raise TypeError("NetNS.run() takes a synchronous callable, not a coroutine function")
        await anyio.lowlevel.checkpoint_if_cancelled()
        outcome: _Outcome[T] = _Outcome()
        done = self._start_thread(lambda: fn(*args), None, outcome)
        with anyio.CancelScope(shield=True):
            await done.wait()
        return outcome.unwrap()

    async def run_process(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        # The brief's API: a subprocess timeout like subprocess.run's, which also has to
        # kill the child; a cancel scope alone would not say which program hung.
        timeout: float = 30.0,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        prepare_thread: Callable[[], object] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a program inside this namespace (no shell) and collect its output.

        The child is forked by a single-use thread while that thread is inside the
        namespace, so the child starts there; the thread then switches back at once and
        waits for the child outside. No other thread moves. The child gets its own process
        group, ``/dev/null`` as stdin unless ``input`` is given, and no inherited fds.

        :param argv: the program and its arguments, e.g. ``["ip", "-o", "link"]``.
        :param input: bytes for the child's stdin.
        :param timeout: seconds before the child (and its process group) is killed.
        :param env: the child's whole environment; ``None`` inherits ours.
        :param prepare_thread: called with no arguments on the single-use thread, inside the
            namespace, just before the child is started. For per-thread state the child
            inherits, such as a private mount namespace (``unshare(CLONE_NEWNS)``): the thread
            ends after the child, so that state never reaches other work. If it raises, no
            child is started and the exception propagates.
        :return: ``args``, ``returncode``, ``stdout`` and ``stderr``; a non-zero exit status
            is returned, not raised (see :meth:`subprocess.CompletedProcess.check_returncode`).
        :raises NetNSProcessTimeoutError: if ``timeout`` passed (the child was killed).
        :raises OSError: if the program cannot be started (e.g. :class:`FileNotFoundError`).
        :raises NetNSError: as for :meth:`run`.

        Cancelling the waiting task kills the child's process group and waits for it to end.
        """
        if isinstance(argv, str | bytes):
            raise TypeError("argv must be a sequence of arguments, not a string")
        args = [os.fspath(a) for a in argv]
        if not args:
            raise ValueError("argv must not be empty")
        child_env = dict(env) if env is not None else None
        handle = _ChildHandle()

        def spawn() -> subprocess.Popen[bytes]:
            import subprocess

            if prepare_thread is not None:
                prepare_thread()
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env,
                close_fds=True,
                process_group=0,
            )
            with handle.lock:
                handle.proc = proc
            return proc

        def wait(proc: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[bytes]:
            return _communicate(proc, handle, args, self._path, input, timeout)

        await anyio.lowlevel.checkpoint_if_cancelled()
        outcome: _Outcome[subprocess.CompletedProcess[bytes]] = _Outcome()
        done = self._start_thread(spawn, wait, outcome)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            handle.kill()
            with anyio.CancelScope(shield=True):
                await done.wait()
            if isinstance(outcome.error, NetNSError):
                raise outcome.error from None  # a discarded thread outranks the cancellation
            raise
        return outcome.unwrap()

    def _start_thread(
        self,
        inside: Callable[[], Any],
        outside: Callable[[Any], Any] | None,
        outcome: _Outcome[Any],
    ) -> anyio.Event:
        """Start a single-use netns thread; the returned event is set when it has finished."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("cnisdk needs anyio's asyncio backend") from None
        done = anyio.Event()

        def wake() -> None:
            # Called from the netns thread after it has left the namespace (or failed to).
            # The loop may be gone if the process is shutting down; nobody waits then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(done.set)

        nsfd = os.dup(self.fileno())
        thread = threading.Thread(
            target=_thread_main,
            args=(nsfd, self._path, inside, outside, outcome, wake),
            name=f"cnisdk-netns:{self._path}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            os.close(nsfd)
            raise
        return done

    # -- netlink ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def netlink(self) -> AsyncIterator[AsyncIPRoute]:
        """A pyroute2 ``AsyncIPRoute`` bound to this namespace.

        The socket is created by pyroute2 in a forked child from this handle's fd, with
        ``flags=0`` so that a missing namespace is never created; no thread of ours moves.
        pyroute2 is imported here, not at module import (it costs ~90 ms or more).

        ```python
        async with netns.netlink() as ipr:
            await ipr.link("add", ifname="dummy0", kind="dummy")
        ```
        """
        from pyroute2 import AsyncIPRoute

        async with AsyncIPRoute(netns=self.fileno(), flags=0) as ipr:
            yield ipr


# --- per-request helpers for the skel ------------------------------------------------------


def _go_strerror(exc: OSError) -> str:
    # Go's syscall.Errno strings are Python's with a lower-case first letter.
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def open_for_request(path: str, command: str, *, required: bool = False) -> NetNS | None:
    """Open ``CNI_NETNS`` for one request, with the rules a CNI runtime expects.

    - ``ADD``/``CHECK``: the namespace must open. Failing that, code 999 with Go's text,
      ``failed to open netns "<path>": failed to Statfs "<path>": no such file or directory``
      (or ``...: unknown FS magic on "<path>": <hex>``).
    - ``DEL``: an empty or missing path gives ``None`` (the runtime may already have removed
      the namespace; DEL must still succeed), unless ``required``. Other failures raise as
      for ADD.
    - ``GC``/``STATUS``/``VERSION``: no namespace is involved; ``None``.

    Whether the path may be the plugin's own namespace is not decided here: the skel decides
    it once per request (``CNI_NETNS_OVERRIDE``) before the plugin runs.

    :param path: the ``CNI_NETNS`` value.
    :param command: the ``CNI_COMMAND`` value.
    :param required: a missing namespace is an error for DEL too (``Context.require_netns``).
    :raises CNIError: as above.
    :raises ValueError: for an unknown command.
    """
    if command in ("GC", "STATUS", "VERSION"):
        return None
    if command not in ("ADD", "CHECK", "DEL"):
        raise ValueError(f"unknown CNI command {command!r}")
    missing_ok = command == "DEL" and not required
    if missing_ok and not path:
        return None
    try:
        return NetNS.open(path)
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        error = f'failed to Statfs "{path}": {_go_strerror(exc)}'
    except OSError as exc:
        error = f'failed to Statfs "{path}": {_go_strerror(exc)}'
    except NetNSError as exc:
        error = str(exc)
    raise CNIError(ErrorCode.INTERNAL, f'failed to open netns "{path}": {error}')
