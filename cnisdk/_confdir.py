"""A CNI config directory as runtimes read it: which files exist, which load, which one is used.

Every part of cnisdk that looks at a node's config directory — the runtime and ``cnisdk exec``,
``cnisdk validate``, ``cnisdk install`` — asks this module, so they all agree on what a
container runtime will do with the same directory.

- **Which files exist** (:func:`conf_files`): libcni's ``ConfFiles``: every directory entry
  that is not itself a directory (a symlink counts, whatever it points to) whose extension is
  ``.conf``, ``.conflist`` or ``.json``, in lexical (byte) order of the name.
- **Which load** (:func:`load_network`): libcni's ``NetworkConfFromFile`` for ``.conflist``
  (plus ``<dir>/<network name>/*.conf`` unless ``loadOnlyInlinedPlugins``) and
  ``ConfFromFile`` + ``ConfListFromConf`` for ``.conf``/``.json``, with libcni's messages. Bytes
  are read as Go reads them (invalid UTF-8 is accepted). Symlinks are followed; a FIFO, device
  or directory behind a name is refused without blocking, and a file over
  :data:`MAX_CONF_BYTES` is refused (Go would read either forever).
- **Which one is used** (:func:`select_network`): the first file in that order that loads and
  has at least one plugin. CRI-O (ocicni) and kubelet skip files that fail to load; containerd
  (go-cni) stops at the first one instead, which ``cnisdk validate`` reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from cnisdk._files import go_path_error, read_bounded
from cnisdk.spec._config import NetConfList, parse_conflist, parse_netconf
from cnisdk.spec._errors import CNIError
from cnisdk.spec._json import GoJSONError, dumps_compact, fold_keys, go_sorted, loads_go
from cnisdk.spec._names import validate_network_name

__all__ = [
    "CONF_EXTENSIONS",
    "MAX_CONF_BYTES",
    "Candidate",
    "ConfLoadError",
    "LoadedConfList",
    "NoNetworkError",
    "Selection",
    "conf_files",
    "conflist_from_bytes",
    "conflist_from_conf",
    "find_network",
    "is_conf_file_name",
    "is_conflist_name",
    "load_network",
    "primary_network",
    "read_conf",
    "select_network",
]

CONF_EXTENSIONS: tuple[str, ...] = (".conf", ".conflist", ".json")
"""The extensions libcni's ``ConfFiles`` is given by kubelet, containerd and CRI-O."""
MAX_CONF_BYTES = 1 << 20
"""The largest config file read (1 MiB; real ones are a few KiB)."""


class ConfLoadError(ValueError):
    """A config file a runtime would not load; ``str()`` is libcni's message."""


class NoNetworkError(FileNotFoundError):
    """No file in a config directory loads as a network.

    :ivar skipped: one line per file that was tried, saying why it does not load.
    """

    def __init__(self, message: str, skipped: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.skipped = skipped


class LoadedConfList(NetConfList):
    """A :class:`NetConfList` that remembers the bytes it was read from (libcni caches them)."""

    _raw: bytes = PrivateAttr(default=b"")

    @property
    def raw(self) -> bytes:
        """The bytes as read (a list built from a single config: Go's marshalled wrapper)."""
        return self._raw or dumps_compact(self.to_dict())


def _go_ext(name: str) -> str:
    """Go's ``filepath.Ext`` of a file name: from its last dot on, so ``.conf`` for a file
    named ``.conf`` (where ``os.path.splitext`` sees no extension)."""
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def is_conf_file_name(name: str) -> bool:
    """Whether a runtime reads a file of this name (by its extension, as ``filepath.Ext``)."""
    return _go_ext(os.path.basename(name)) in CONF_EXTENSIONS


def is_conflist_name(name: str | os.PathLike[str]) -> bool:
    """Whether a runtime reads a config file of this name as a list (``.conflist``) rather
    than as a single plugin's config (``.conf``, ``.json``)."""
    return _go_ext(os.path.basename(os.fspath(name))) == ".conflist"


def conf_files(
    directory: str | os.PathLike[str], extensions: tuple[str, ...] = CONF_EXTENSIONS
) -> list[Path]:
    """The config files of a directory as libcni's ``ConfFiles`` lists them, in runtime order.

    A missing directory has none (as libcni). Entries are judged by their own type: a symlink
    is listed whatever it points to (a runtime follows it when reading), a directory is not.

    :raises OSError: the directory exists but cannot be listed.
    """
    base = Path(directory)
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    names = [
        entry.name
        for entry in entries
        if not entry.is_dir(follow_symlinks=False) and _go_ext(entry.name) in extensions
    ]
    # Go sorts strings by bytes; names that are not UTF-8 sort by their original bytes too.
    return [base / name for name in sorted(names, key=os.fsencode)]


def read_conf(path: str | os.PathLike[str]) -> bytes:
    """A config file's bytes, read as a runtime reads them but bounded.

    :raises ConfLoadError: ``error reading <path>: <why>`` (libcni's wording).
    """
    try:
        return read_bounded(path, MAX_CONF_BYTES)
    except OSError as exc:
        raise ConfLoadError(
            f"error reading {os.fspath(path)}: {go_path_error('open', path, exc)}"
        ) from None


def conflist_from_bytes(data: bytes) -> LoadedConfList:
    """Parse conflist bytes (libcni's ``ConfListFromBytes``), keeping the bytes for the cache.

    :raises ConfLoadError: with libcni's message.
    """
    try:
        loaded = parse_conflist(data, LoadedConfList)
    except ValueError as exc:
        raise ConfLoadError(str(exc)) from None
    loaded._raw = data
    return loaded


def conflist_from_conf(data: bytes) -> LoadedConfList:
    """Wrap a single plugin config in a list, as libcni's ``ConfFromBytes`` +
    ``ConfListFromConf`` do.

    The list carries the config's ``name`` and ``cniVersion``; its bytes are the Go-marshalled
    wrapper (keys sorted), which is what libcni caches for such a network.

    :raises ConfLoadError: with libcni's message.
    """
    try:
        conf = parse_netconf(data)
    except ValueError as exc:
        raise ConfLoadError(str(exc)) from None
    # The values Go's struct decoding gives the fields (keys match case-insensitively).
    fields = fold_keys(conf, ("cniVersion", "name"))
    wrapper = {
        "cniVersion": fields.get("cniVersion") or "",
        "name": fields.get("name") or "",
        "plugins": [conf],
    }
    return conflist_from_bytes(dumps_compact(go_sorted(wrapper)))


def _shape_by_content(data: bytes) -> bool | None:
    """``True`` for a list (a ``plugins`` key), ``False`` for a single config (a ``type`` and
    no ``plugins``), ``None`` when the content does not tell."""
    try:
        doc = loads_go(data)
    except GoJSONError:
        return None
    if not isinstance(doc, dict):
        return None
    if "plugins" in doc:
        return True
    return False if "type" in fold_keys(doc, ("type",)) else None


def load_network(path: str | os.PathLike[str], *, by_content: bool = False) -> LoadedConfList:
    """Load one config file as a runtime loads it from a config directory.

    ``.conflist`` files are lists (with ``<dir>/<name>/*.conf`` appended unless
    ``loadOnlyInlinedPlugins``); ``.conf`` and ``.json`` files are single configs upgraded to a
    list. With ``by_content`` (a file named on a command line), the content decides where it
    can: a ``plugins`` key makes a list and a ``type`` without one a single config, whatever
    the file's name.

    :raises ConfLoadError: libcni's message (including ``error reading <path>: ...``).
    """
    file = Path(path)
    data = read_conf(file)
    shape = _shape_by_content(data) if by_content else None
    is_list = shape if shape is not None else is_conflist_name(file)
    if not is_list:
        return conflist_from_conf(data)
    loaded = conflist_from_bytes(data)
    if not loaded.load_only_inlined_plugins:
        extra = _plugins_from_dir(file.parent, loaded.name)
        if extra:
            loaded.plugins = [*loaded.plugins, *extra]
    if not loaded.plugins:
        raise ConfLoadError("no plugin configs found")
    return loaded


def _plugins_from_dir(base: Path, network: str) -> list[dict[str, Any]]:
    """libcni's ``NetworkPluginConfsFromFiles``: ``<base>/<network>/*.conf``, in name order."""
    try:
        validate_network_name(network)
    except CNIError:
        return []  # never turn an unchecked name into a path
    plugins: list[dict[str, Any]] = []
    for conf in conf_files(base / network, (".conf",)):
        try:
            plugins.append(parse_netconf(read_conf(conf)))
        except ValueError as exc:
            raise ConfLoadError(str(exc)) from None
    return plugins


@dataclass(frozen=True)
class Candidate:
    """One config file of a directory and what loading it gave."""

    path: Path
    network: LoadedConfList | None
    """The loaded network, or ``None`` when it does not load."""
    error: str | None
    """Why it does not load (libcni's message), or ``None``."""


@dataclass(frozen=True)
class Selection:
    """What a runtime makes of a config directory."""

    directory: Path
    candidates: tuple[Candidate, ...]
    """The files tried, in runtime order: up to the chosen one, or all of them when asked."""
    chosen: Candidate | None
    """The file a runtime uses, or ``None`` when none loads."""

    def skipped(self) -> tuple[str, ...]:
        """One line per file before the chosen one (or every file) that was passed over."""
        end = next(
            (i for i, c in enumerate(self.candidates) if c is self.chosen), len(self.candidates)
        )
        return tuple(
            f"skipping {c.path}: {c.error}" for c in self.candidates[:end] if c.error is not None
        )


def select_network(directory: str | os.PathLike[str], *, read_all: bool = False) -> Selection:
    """Choose a directory's network as runtimes do: the first file that loads with a plugin.

    :param read_all: load every file (``cnisdk validate`` reports on all of them); otherwise
        stop at the chosen one, as a runtime does.
    :raises OSError: the directory cannot be listed.
    """
    base = Path(directory)
    candidates: list[Candidate] = []
    chosen: Candidate | None = None
    for path in conf_files(base):
        if chosen is not None and not read_all:
            break
        try:
            network = load_network(path)
        except ConfLoadError as exc:
            candidates.append(Candidate(path, None, str(exc)))
            continue
        candidate = Candidate(path, network, None)
        candidates.append(candidate)
        if chosen is None:
            chosen = candidate
    return Selection(base, tuple(candidates), chosen)


def primary_network(directory: str | os.PathLike[str]) -> tuple[Path, LoadedConfList]:
    """The file a runtime uses in ``directory`` and its network.

    :raises NoNetworkError: no file loads (``skipped`` says why for each file tried), or the
        directory cannot be listed.
    """
    try:
        selection = select_network(directory)
    except OSError as exc:
        message = f"no networks found in {os.fspath(directory)}: {exc.strerror or exc}"
        raise NoNetworkError(message) from None
    if selection.chosen is None or selection.chosen.network is None:
        raise NoNetworkError(f"no networks found in {os.fspath(directory)}", selection.skipped())
    return selection.chosen.path, selection.chosen.network


def find_network(directory: str | os.PathLike[str], name: str) -> LoadedConfList:
    """The network named ``name`` in a config directory (libcni's ``LoadConfList``).

    ``.conflist`` files first, then ``.conf``/``.json`` single configs, each in name order.
    Files that do not load are passed over, so one broken file does not hide the others.

    :raises FileNotFoundError: ``no net configuration with name "<name>" in <dir>``.
    """
    for extensions in ((".conflist",), (".conf", ".json")):
        for path in conf_files(directory, extensions):
            try:
                loaded = load_network(path)
            except ConfLoadError:
                continue
            if loaded.name == name:
                return loaded
    raise FileNotFoundError(f'no net configuration with name "{name}" in {os.fspath(directory)}')
