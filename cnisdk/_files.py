"""Files cnisdk writes or reads on a node: atomic replacement, locking, bounded reads.

Every file cnisdk writes where something else may read it at any moment (a runtime reading
its CNI config, a runtime executing a launcher, a concurrent request reading a result cache
entry) is replaced atomically: written to a temporary file in the same directory, fsynced,
given its mode (and owner), renamed over the target, and the directory fsynced, so a reader
sees the old file or the new one and a crash leaves one of the two on disk. Temporary names
start with a dot and end in :data:`TMP_SUFFIX`, which no runtime reads (libcni reads only
``.conf``, ``.conflist`` and ``.json``) and no result cache lists.

Reads of files that come from elsewhere (configs, caches) are bounded: only regular files are
read (a FIFO or device is refused without blocking) and never more than a stated size.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "TMP_SUFFIX",
    "FileTooLargeError",
    "NotARegularFileError",
    "fsync_dir",
    "go_path_error",
    "holds",
    "locked",
    "read_bounded",
    "remove_durably",
    "symlink_atomic",
    "write_atomic",
]

TMP_SUFFIX = ".cnisdk-tmp"


class NotARegularFileError(OSError):
    """The path is a FIFO, socket, device or directory: it is not read."""


class FileTooLargeError(OSError):
    """The file is larger than the reader allows."""


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int = 0o644,
    *,
    keep_mode: bool = False,
    owner: tuple[int, int] | None = None,
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    :param mode: the new file's permission bits.
    :param keep_mode: when ``path`` exists, keep its mode and owner instead (``mode`` then
        applies only to a new file). A symlink at ``path`` is replaced by a regular file.
    :param owner: ``(uid, gid)`` for the new file; default: the writer's.
    :param before_replace: called once the data is durable in the temporary file, just before
        the rename (a read-modify-write checks there that ``path`` is still what it read);
        what it raises aborts the write.
    :raises OSError: nothing was changed (the temporary file is removed).
    """
    import tempfile  # not on the exec path, which only reads

    target = Path(path)
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            st = target.lstat()
            if stat.S_ISREG(st.st_mode):
                mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            # After fchown, which clears set-id bits.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _rename_into_place(tmp, target, before_replace)


def _rename_into_place(
    tmp: str | os.PathLike[str], target: Path, before_replace: Callable[[], None] | None = None
) -> None:
    """Rename a complete temporary file over ``target`` and make it durable; on any failure
    (``before_replace`` raising included) the temporary file is removed instead."""
    try:
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def remove_durably(path: str | os.PathLike[str]) -> bool:
    """Unlink ``path`` and fsync its directory.

    :return: whether something was removed (``False`` if it was already gone).
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(Path(path).parent)
    return True


def symlink_atomic(path: str | os.PathLike[str], target: str) -> None:
    """Make ``path`` a symlink to ``target``, replacing what is there in one rename."""
    link = Path(path)
    tmp = link.parent / f".{link.name}.{os.urandom(8).hex()}{TMP_SUFFIX}"
    os.symlink(target, tmp)
    _rename_into_place(tmp, link)


@contextlib.contextmanager
def locked(lock_file: str | os.PathLike[str], timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created 0600 if missing) for the block.

    Only writers that take the same lock are excluded; the lock protects a read-modify-write
    sequence of cooperating cnisdk processes, not a file against other tools.

    :param timeout: give up after this many seconds (default: wait as long as it takes).
    :raises TimeoutError: another process held the lock for ``timeout`` seconds.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _flock_within(fd, timeout, lock_file)
        yield
    finally:
        os.close(fd)  # releases the lock


def _flock_within(fd: int, timeout: float, lock_file: str | os.PathLike[str]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{os.fspath(lock_file)} stayed locked by another process for {timeout:g} s"
                ) from None
            time.sleep(0.05)


def holds(path: Path, data: bytes, mode: int) -> bool:
    """Whether ``path`` is a regular file (not a symlink) with permission bits ``mode`` and
    exactly the bytes ``data``: what an idempotent writer finds already in place."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
            return False
        return read_bounded(path, len(data)) == data
    except OSError:
        return False


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes, following symlinks.

    The file is opened non-blocking and checked with ``fstat`` before any read, so a FIFO,
    socket, device or directory at ``path`` is refused at once instead of blocking or
    reading forever.

    :raises NotARegularFileError: ``path`` is not a regular file.
    :raises FileTooLargeError: the file holds more than ``limit`` bytes.
    :raises OSError: it cannot be opened or read (``ELOOP`` for a symlink loop, ...).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _file_kind(st.st_mode)
            raise NotARegularFileError(f"{os.fspath(path)} is {kind}, not a regular file")
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise FileTooLargeError(f"{os.fspath(path)} is larger than {limit} bytes")
    return data


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def go_path_error(op: str, path: str | os.PathLike[str], exc: OSError) -> str:
    """An ``OSError`` worded as Go's ``*fs.PathError``: ``open /x: no such file or directory``.

    Errors of our own making (:class:`NotARegularFileError`, :class:`FileTooLargeError`) say
    what they are instead.
    """
    if isinstance(exc, NotARegularFileError | FileTooLargeError):
        return str(exc)
    text = exc.strerror or str(exc)
    # Go's syscall.Errno strings are the C library's with a lower-case first letter.
    return f"{op} {os.fspath(path)}: {text[:1].lower()}{text[1:]}"
