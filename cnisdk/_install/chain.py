"""Our entries in the config file a runtime uses, and out again: the conf dir on disk.

Which file: the one a runtime uses (:func:`cnisdk._confdir.select_network`: the first file
in name order that loads as libcni loads it, invalid UTF-8 included). None is
:class:`NoPrimaryConfig`.

How: a conflist gets our entries last (entries of our types already there are taken out
first); a single ``.conf``/``.json`` becomes ``<name>.conflist`` (written first, then the old
file is removed: until then a runtime still picks the complete old file, which sorts first).
A symlink as the primary is replaced by a regular file, as Istio does: writing through it
would change a file outside the conf dir (often one a config manager owns) and every other
name that links to it. Uninstall puts the link back.

No lost update: other tools (the primary CNI's agent, an operator) do not take our lock. So
each edit compares, just before its rename, the file with what it read (inode, symlink,
bytes); when another writer got in between, the edit is dropped and done again on the new
file, up to :data:`MAX_ATTEMPTS` times. After each write the directory is looked at again
and the edit counts as done only when the file a runtime uses then holds our entries (a new
file that sorts first, for example, is chained into as well).

The window left is between that last comparison and the rename (microseconds, against the
read-modify-write time otherwise); only a writer that took our lock could close it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnisdk._confdir import ConfLoadError, is_conflist_name, read_conf, select_network
from cnisdk._files import (
    TMP_SUFFIX,
    locked,
    remove_durably,
    symlink_atomic,
    write_atomic,
)
from cnisdk._install.cniconfig import (
    EditError,
    add_entries,
    entries_of,
    insert_element,
    plugin_elements,
    remove_elements,
    same_json,
    wrap_conf,
)
from cnisdk._install.record import FileRecord, InstallRecord, Restore, TypeRecord, digest
from cnisdk._install.spec import InstallError, NoPrimaryConfig, Outcome
from cnisdk.spec._json import GoJSONError, loads_go

__all__ = [
    "LOCK_NAME",
    "LOCK_TIMEOUT",
    "MAX_ATTEMPTS",
    "PAUSE_ENV",
    "ChainPlan",
    "ConfigChanged",
    "Snapshot",
    "chain_into",
    "conf_dir_locked",
    "pause_for_tests",
    "plan_chain",
    "too_deep_fails",
    "unchain",
]

LOCK_NAME = ".cnisdk-install.lock"
LOCK_TIMEOUT = 60.0
"""Seconds to wait for another cnisdk installer to finish with the conf dir."""
MAX_ATTEMPTS = 5
"""Edits tried before giving up on a config that keeps changing under us."""
PAUSE_ENV = "CNISDK_INSTALL_TEST_PAUSE"
"""Tests only: seconds to sleep just before the comparison that precedes a config rename."""


class ConfigChanged(Exception):
    """The file changed between our read and our rename (or vanished): read again."""


@dataclass(frozen=True)
class Snapshot:
    """A config file as read: its bytes and what identifies this version of it."""

    path: Path
    data: bytes
    identity: tuple[Any, ...]
    mode: int
    owner: tuple[int, int]
    link: str | None
    """The symlink's target when the path is a symlink."""

    @classmethod
    def take(cls, path: Path) -> Snapshot:
        """Read ``path`` (bounded, following a symlink).

        :raises OSError: it cannot be looked at (``FileNotFoundError``: it is gone).
        :raises ConfLoadError: it cannot be read as a config (FIFO, too large, ...).
        """
        before = os.lstat(path)
        link = os.readlink(path) if stat.S_ISLNK(before.st_mode) else None
        data = read_conf(path)
        after = os.stat(path)
        identity = (before.st_dev, before.st_ino, link, after.st_dev, after.st_ino)
        mode, owner = stat.S_IMODE(after.st_mode), (after.st_uid, after.st_gid)
        return cls(path, data, identity, mode, owner, link)

    @classmethod
    def maybe(cls, path: Path) -> Snapshot | None:
        """:meth:`take`, or ``None`` when nothing is at ``path``."""
        if not os.path.lexists(path):
            return None
        return cls.take(path)

    def changed(self) -> bool:
        """Whether ``path`` now holds another file or other bytes than this snapshot."""
        try:
            now = Snapshot.take(self.path)
        except (OSError, ConfLoadError):
            return True
        return now.identity != self.identity or now.data != self.data


@dataclass
class ChainPlan:
    """What chaining into the conf dir would do now."""

    source: Snapshot
    """The file a runtime uses, as read."""
    target: Path
    """Where the chained config goes: the source, or the ``.conflist`` a ``.conf`` becomes."""
    data: bytes | None
    """The bytes to write; ``None`` when the file already holds our entries."""
    record: FileRecord | None = None
    """The record of the edit, for the install record."""
    existing: Snapshot | None = None
    """For a conversion: what is at ``target`` already (``None``: nothing)."""
    notes: list[str] = field(default_factory=list)


Pause = Callable[[], None]


def pause_for_tests(environ: Mapping[str, str]) -> Pause:
    """The pause :data:`PAUSE_ENV` asks for (capped at a minute), else a no-op."""
    try:
        seconds = min(float(environ.get(PAUSE_ENV, "") or 0), 60.0)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        return lambda: None
    return lambda: time.sleep(seconds)


@contextlib.contextmanager
def conf_dir_locked(conf_dir: Path) -> Iterator[None]:
    """Hold the conf dir's install lock, and clear temporary files a killed writer left.

    :raises InstallError: the lock cannot be taken (another installer holds it too long, or
        the lock file cannot be opened).
    """
    try:
        with locked(conf_dir / LOCK_NAME, timeout=LOCK_TIMEOUT):
            # Under the lock no cnisdk writer is between write and rename in this directory,
            # so any temporary file here is an orphan of a killed one.
            with contextlib.suppress(OSError):
                for stale in conf_dir.glob(f".*{TMP_SUFFIX}"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
            yield
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            raise InstallError(str(exc)) from None
        if exc.filename is not None and Path(os.fsdecode(exc.filename)).name == LOCK_NAME:
            raise InstallError(f"cannot lock {conf_dir}: {exc.strerror or exc}") from None
        raise


@contextlib.contextmanager
def too_deep_fails(conf_dir: Path) -> Iterator[None]:
    """Fail closed on a config nested deeper than Python's recursion allows (Go reads up to
    10000 levels): skipping such a file could chain us into one the runtime does not use."""
    try:
        yield
    except RecursionError:
        raise InstallError(
            f"a config in {conf_dir} is nested too deeply to be read here; flatten it or chain "
            "the plugin in by hand"
        ) from None


def _select(conf_dir: Path) -> tuple[Path, list[str]]:
    try:
        selection = select_network(conf_dir)
    except OSError as exc:
        raise NoPrimaryConfig(f"cannot list {conf_dir}: {exc.strerror or exc}") from None
    skipped = list(selection.skipped())
    if selection.chosen is None:
        detail = "".join(f"\n  {line}" for line in skipped)
        raise NoPrimaryConfig(
            f"no usable CNI network config in {conf_dir} (the primary CNI has not written one "
            f"yet?){detail}"
        )
    return selection.chosen.path, skipped


def _plugins(data: bytes) -> list[Any]:
    try:
        doc = loads_go(data)
    except GoJSONError:
        return []
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    return plugins if isinstance(plugins, list) else []


def _added_by_us(plugins: Sequence[Any], prior: FileRecord | None) -> list[int]:
    """Indexes of the elements that are entries a recorded install added."""
    if prior is None:
        return []
    found = []
    for index, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if (
            isinstance(kind, str)
            and kind in prior.types
            and same_json(plugin, prior.types[kind].added)
        ):
            found.append(index)
    return found


def _plan_list(
    source: Snapshot, entries: Sequence[Mapping[str, Any]], prior: FileRecord | None
) -> ChainPlan:
    types = [e["type"] for e in entries]
    plugins = _plugins(source.data)
    ours = entries_of({"plugins": plugins}, types)
    new = add_entries(source.data, entries, ours)
    if new == source.data:
        return ChainPlan(source, source.path, None)
    mine = _added_by_us(plugins, prior)
    base = remove_elements(source.data, mine) if mine else source.data
    untouched = prior is not None and source.link is None and digest(source.data) == prior.written
    name = source.path.name
    if prior is not None and untouched:
        restore = prior.restore
    elif source.link is not None and not mine:
        restore = Restore(name, link=source.link)
    else:
        restore = Restore(name, data=base)
    types_record = dict(prior.types) if prior is not None else {}
    base_plugins, base_raw = _plugins(base), plugin_elements(base)
    for entry in entries:
        kind = entry["type"]
        if prior is not None and untouched and kind in prior.types:
            replaced = prior.types[kind].replaced
        else:
            replaced = [
                (i, base_raw[i])
                for i in entries_of({"plugins": base_plugins}, [kind])
                if i < len(base_raw)
            ]
        types_record[kind] = TypeRecord(added=dict(entry), replaced=replaced)
    record = FileRecord(digest(new), restore, types_record)
    return ChainPlan(source, source.path, new, record)


def _conflist_name(path: Path) -> Path:
    name = path.name
    return path.with_name(name[: name.rfind(".")] + ".conflist")


def _plan_conversion(
    source: Snapshot, entries: Sequence[Mapping[str, Any]], record: InstallRecord
) -> ChainPlan:
    target = _conflist_name(source.path)
    new = wrap_conf(source.data, entries)
    try:
        existing = Snapshot.maybe(target)
    except (OSError, ConfLoadError) as exc:
        raise InstallError(f"cannot convert {source.path} to a conflist: {exc}") from None
    prior = record.files.get(target.name)
    if existing is not None:
        ours = (
            prior is not None and existing.link is None and digest(existing.data) == prior.written
        )
        if not ours and existing.data != new:
            raise InstallError(
                f"cannot convert {source.path} to a conflist: {target} exists with other "
                "content; remove one of them"
            )
    if source.link is not None:
        restore = Restore(source.path.name, link=source.link)
    else:
        restore = Restore(source.path.name, data=source.data)
    types = {e["type"]: TypeRecord(added=dict(e)) for e in entries}
    return ChainPlan(source, target, new, FileRecord(digest(new), restore, types), existing)


def plan_chain(
    conf_dir: Path, entries: Sequence[Mapping[str, Any]], record: InstallRecord
) -> ChainPlan:
    """What chaining ``entries`` into the file a runtime uses would write now; nothing is
    written.

    :raises NoPrimaryConfig: no file in ``conf_dir`` loads.
    :raises ConfigChanged: the chosen file changed while it was being read.
    :raises InstallError: the file cannot be edited.
    """
    with too_deep_fails(conf_dir):
        path, skipped = _select(conf_dir)
        try:
            source = Snapshot.take(path)
        except (OSError, ConfLoadError):
            raise ConfigChanged() from None  # loaded a moment ago: it is being replaced
        try:
            if is_conflist_name(path):
                plan = _plan_list(source, entries, record.files.get(path.name))
            else:
                plan = _plan_conversion(source, entries, record)
        except EditError as exc:
            raise InstallError(f"cannot add our entries to {path}: {exc}") from None
    plan.notes = skipped
    return plan


def _unchanged(snapshot: Snapshot | None, path: Path) -> None:
    if snapshot is None:
        if os.path.lexists(path):
            raise ConfigChanged()
    elif snapshot.changed():
        raise ConfigChanged()


def _apply(
    plan: ChainPlan,
    data: bytes,
    file_record: FileRecord,
    record: InstallRecord,
    conf_dir: Path,
    outcome: Outcome,
    pause: Pause,
) -> None:
    source, target = plan.source, plan.target
    converting = target != source.path

    def check() -> None:
        pause()
        _unchanged(source, source.path)
        if converting:
            _unchanged(plan.existing, target)

    # The record first: a crash after it leaves a record of an edit that did not happen
    # (harmless to uninstall), never an edit without its record.
    record.files[target.name] = file_record
    record.save(conf_dir)
    if not converting or plan.existing is None or plan.existing.data != data:
        write_atomic(target, data, source.mode, owner=source.owner, before_replace=check)
        outcome.configs.append(str(target))
    if converting:
        if source.changed():
            # Rewritten while the conflist went in: that old copy must not stay behind.
            with contextlib.suppress(OSError, ConfLoadError):
                if digest(read_conf(target)) == file_record.written:
                    remove_durably(target)
            raise ConfigChanged()
        if remove_durably(source.path):
            outcome.configs.append(str(source.path))


def chain_into(
    conf_dir: Path,
    entries: Sequence[Mapping[str, Any]],
    record: InstallRecord,
    outcome: Outcome,
    pause: Pause,
    *,
    settle: bool = True,
) -> None:
    """Chain ``entries`` into the file a runtime uses, under the conf dir lock (held by the
    caller), until that file holds them (``settle=False``: until one edit went in).

    :raises NoPrimaryConfig: no file in ``conf_dir`` loads.
    :raises InstallError: the file cannot be edited, or kept changing.
    :raises OSError: a write failed.
    """
    writes = 0
    while True:
        try:
            plan: ChainPlan | None = plan_chain(conf_dir, entries, record)
        except ConfigChanged:
            plan = None
        if plan is not None:
            outcome.config = plan.target
            if plan.data is None or plan.record is None:
                outcome.notes.extend(plan.notes)
                return
        if writes >= MAX_ATTEMPTS:
            raise InstallError(
                f"the config in {conf_dir} kept changing while it was being edited "
                f"({MAX_ATTEMPTS} tries); another tool is rewriting it"
            )
        writes += 1
        if plan is not None and plan.data is not None and plan.record is not None:
            try:
                _apply(plan, plan.data, plan.record, record, conf_dir, outcome, pause)
            except ConfigChanged:
                continue
            if not settle:
                return


# --- uninstall -------------------------------------------------------------------------------


def _take_out(data: bytes, record: FileRecord, leaving: Sequence[str]) -> bytes:
    """``data`` without the entries install added for ``leaving``; the entries they replaced
    go back where they were, where ours was still there to swap back."""
    plugins = _plugins(data)
    remove = [
        i
        for i in _added_by_us(plugins, record)
        if isinstance(plugins[i], dict) and plugins[i].get("type") in leaving
    ]
    if not remove:
        return data
    swapped = {plugins[i]["type"] for i in remove}
    new = remove_elements(data, remove)
    back = sorted(
        (index, raw)
        for kind in leaving
        if kind in swapped
        for index, raw in record.types[kind].replaced
    )
    for index, raw in back:
        try:
            element = loads_go(raw)
        except GoJSONError:
            continue
        if not any(same_json(p, element) for p in _plugins(new)):
            new = insert_element(new, index, raw)
    return new


def _restore(
    path: Path, restore: Restore, current: Snapshot, outcome: Outcome, pause: Pause
) -> None:
    original = path.with_name(restore.name)

    def check() -> None:
        pause()
        _unchanged(current, path)

    if original == path:
        if restore.link is not None:
            check()
            symlink_atomic(path, restore.link)
        else:
            data = restore.data or b""
            write_atomic(path, data, current.mode, owner=current.owner, before_replace=check)
        outcome.configs.append(str(path))
        return
    # A converted .conf: put it back first (it sorts before the .conflist, so a runtime
    # switches to it at once), then remove the conflist.
    if os.path.lexists(original):
        outcome.notes.append(f"left {original} as it is: it was written again after install")
    elif restore.link is not None:
        symlink_atomic(original, restore.link)
        outcome.configs.append(str(original))
    else:
        write_atomic(original, restore.data or b"", current.mode, owner=current.owner)
        outcome.configs.append(str(original))
    check()
    if remove_durably(path):
        outcome.configs.append(str(path))


def _unchain_file(
    conf_dir: Path,
    name: str,
    leaving: Sequence[str],
    record: InstallRecord,
    outcome: Outcome,
    pause: Pause,
) -> None:
    entry = record.files[name]
    path = conf_dir / name
    remaining = {k: v for k, v in entry.types.items() if k not in leaving}
    try:
        current = Snapshot.take(path)
    except FileNotFoundError:
        current = None
    except (OSError, ConfLoadError) as exc:
        outcome.notes.append(f"left {path}: {exc}")
        current = None
    if current is None:
        pass
    elif current.link is None and digest(current.data) == entry.written and not remaining:
        _restore(path, entry.restore, current, outcome, pause)
    else:
        try:
            new = _take_out(current.data, entry, leaving)
        except EditError as exc:
            outcome.notes.append(f"left {path}: cannot take our entries out: {exc}")
            new = current.data
        if new != current.data:

            def check() -> None:
                pause()
                _unchanged(current, path)

            write_atomic(path, new, current.mode, owner=current.owner, before_replace=check)
            outcome.configs.append(str(path))
            if remaining and digest(current.data) == entry.written:
                entry.written = digest(new)
    if remaining and current is not None:
        entry.types = remaining
    else:
        del record.files[name]


def unchain(
    conf_dir: Path, types: Sequence[str], record: InstallRecord, outcome: Outcome, pause: Pause
) -> None:
    """Take out of the conf dir what install recorded for ``types``, under the conf dir lock
    (held by the caller); ``record`` is updated (the caller saves it).

    :raises InstallError: a file kept changing.
    :raises OSError: a write failed.
    """
    for name in sorted(record.files):
        leaving = [t for t in types if t in record.files[name].types]
        if not leaving:
            continue
        for _ in range(MAX_ATTEMPTS):
            try:
                with too_deep_fails(conf_dir):
                    _unchain_file(conf_dir, name, leaving, record, outcome, pause)
                break
            except ConfigChanged:
                continue
        else:
            raise InstallError(
                f"{conf_dir / name} kept changing while our entries were taken out "
                f"({MAX_ATTEMPTS} tries); another tool is rewriting it"
            )
