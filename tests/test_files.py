"""Atomic replacement, locking and bounded reads of node files."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from cnisdk._files import (
    TMP_SUFFIX,
    FileTooLargeError,
    NotARegularFileError,
    go_path_error,
    locked,
    read_bounded,
    remove_durably,
    symlink_atomic,
    write_atomic,
)


def test_write_atomic_sets_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.conflist"
    write_atomic(target, b"one", 0o600)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, b"two", 0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["f.conflist"]


def test_write_atomic_can_keep_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "f.conflist"
    target.write_bytes(b"old")
    target.chmod(0o640)
    os.chown(target, 1234, 5678)
    inode = target.stat().st_ino
    write_atomic(target, b"new", 0o600, keep_mode=True)
    st = target.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert st.st_ino != inode  # replaced by rename, never rewritten in place
    write_atomic(tmp_path / "new.conf", b"x", 0o600, keep_mode=True)
    assert stat.S_IMODE((tmp_path / "new.conf").stat().st_mode) == 0o600


def test_write_atomic_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"real")
    link = tmp_path / "link"
    link.symlink_to(real)
    write_atomic(link, b"new", 0o644, keep_mode=True)
    assert real.read_bytes() == b"real"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_write_atomic_failure_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "inside").write_bytes(b"old")
    with pytest.raises(OSError):
        write_atomic(target, b"new", 0o644)  # the rename over a non-empty directory fails
    assert (target / "inside").read_bytes() == b"old"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(TMP_SUFFIX)]


def test_remove_durably(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    assert remove_durably(target) is True
    assert remove_durably(target) is False


def test_locked_excludes_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        with locked(lock):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with locked(lock):
        inside.set()
        time.sleep(0.2)
        assert order == [] and thread.is_alive()  # the other thread waits for the lock
        order.append("first")
    thread.join()
    assert order == ["first", "second"]
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_read_bounded_refuses_what_is_not_a_bounded_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="is a FIFO"):
        read_bounded(fifo, 10)
    with pytest.raises(NotARegularFileError, match="is a device"):
        read_bounded("/dev/zero", 10)
    with pytest.raises(NotARegularFileError, match="is a directory"):
        read_bounded(tmp_path, 10)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLargeError):
        read_bounded(big, 10)
    assert read_bounded(big, 11) == b"x" * 11
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as info:
        read_bounded(loop, 10)
    assert go_path_error("open", loop, info.value) == (
        f"open {loop}: too many levels of symbolic links"
    )


def test_write_atomic_before_replace_can_abort(tmp_path: Path) -> None:
    target = tmp_path / "f.conflist"
    target.write_bytes(b"old")
    seen: list[list[str]] = []

    def refuse() -> None:
        seen.append(sorted(os.listdir(tmp_path)))  # the data is in the temp file by now
        raise RuntimeError("changed under us")

    with pytest.raises(RuntimeError):
        write_atomic(target, b"new", before_replace=refuse)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.conflist"]
    [listing] = seen
    assert len(listing) == 2 and listing[0].endswith(TMP_SUFFIX)


def test_locked_gives_up_after_its_timeout(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with locked(lock):
        holder_done = threading.Event()

        def second() -> None:
            with pytest.raises(TimeoutError, match="stayed locked"), locked(lock, timeout=0.2):
                pass
            holder_done.set()

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(10)
        assert holder_done.is_set()
    with locked(lock, timeout=0.2):  # free again
        pass


def test_symlink_atomic_replaces_a_file_or_a_link(tmp_path: Path) -> None:
    target = tmp_path / "name"
    target.write_bytes(b"file")
    symlink_atomic(target, "elsewhere")
    assert os.readlink(target) == "elsewhere"
    symlink_atomic(target, "other")
    assert os.readlink(target) == "other"
    assert os.listdir(tmp_path) == ["name"]
