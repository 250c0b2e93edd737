"""Put cnisdk plugins on a node: launchers, the chained config entry, a kubeconfig; and back.

This is what Istio's ``install-cni`` does for ``istio-cni``, for any cnisdk plugin type.

Which file. The node's primary config is chosen as libcni and kubelet choose it
(:func:`cnisdk._confdir.select_network`: ``.conf``/``.conflist``/``.json`` in lexical order, the
first that loads and has a plugin). Broken files before it are skipped, as a runtime skips them.
No usable file is :class:`NoPrimaryConfig`: a one-shot install fails with a clear message, a
``--watch`` install waits for the primary CNI to write one (as Istio does).

How it is changed. A single-plugin ``.conf``/``.json`` becomes a ``.conflist`` (Istio's way):
``{"cniVersion": <the conf's, else "0.3.1">, "name": <the conf's>, "plugins": [<the conf minus
cniVersion>, <ours>]}`` written under the ``.conflist`` name, then the old file is removed; the
network name stays the conf's own (not Istio's fixed ``k8s-pod-network``) so libcni's cache
keys for running pods do not change. In a conflist, existing entries of our types are removed
and ours are appended last. Uninstall does not rename a ``.conflist`` back (neither does Istio).

Bytes. Conflists are edited as text: our entry is spliced in after the last plugin, copying
the separator and indentation already used between plugins, and uninstall cuts exactly that
span again, so install + uninstall gives back the original bytes and every byte outside our
entry is kept. Every splice is checked by parsing the result against the intended document;
when that fails (or for a converted ``.conf``) the document is written as ``json.dumps(indent=2)``
plus a newline, the format most CNI installers use. Files that already hold the intended
document are not written at all, which makes a second run a no-op.

Safety. Every write goes to a temporary file in the same directory (named ``.<name>.*.cnisdk-tmp``,
which no runtime reads), is fsynced, gets the old file's mode and owner, and is renamed over
the target; the directory is fsynced after. All changes to a conf dir happen under
``fcntl.flock`` on ``<conf dir>/.cnisdk-install.lock``, so two cnisdk installers never
interleave (other tools do not take this lock; re-asserting in ``--watch`` covers them).

Watching. :func:`watch` polls: every ``interval`` seconds it compares a fingerprint (name,
inode, size, mtime of every file in the conf dir; the launchers; the service account token's
content) and re-runs the idempotent install when it changed. Polling rather than inotify because
it needs no ctypes, sees a service-account token swapped through its ``..data`` symlink, and
works on any hostPath file system; a stat of a few files twice a second is negligible.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from cnisdk._confdir import select_network
from cnisdk._discovery import PluginEntry
from cnisdk._launcher import is_launcher, launcher_bytes, write_launcher

__all__ = [
    "DEFAULT_CNI_VERSION",
    "LOCK_NAME",
    "InstallError",
    "InstallSpec",
    "NoPrimaryConfig",
    "Outcome",
    "ReadyServer",
    "add_entries",
    "chain_entries",
    "install",
    "install_runtime",
    "kubeconfig_document",
    "remove_entries",
    "render_json",
    "uninstall",
    "watch",
]

log = logging.getLogger("cnisdk.install")

DEFAULT_CNI_VERSION = "0.3.1"
"""The list version for a converted ``.conf`` that has none (Istio's choice)."""
LOCK_NAME = ".cnisdk-install.lock"
_TMP_SUFFIX = ".cnisdk-tmp"
_PAUSE_ENV = "CNISDK_INSTALL_TEST_PAUSE"
"""Tests only: seconds to sleep between writing a temp file and renaming it."""
_SINGLE_SUFFIXES = (".conf", ".json")
_CONTEXT_PREFIX = "cnisdk-"


class InstallError(Exception):
    """The install cannot be done; the message says why and what to do."""


class NoPrimaryConfig(InstallError):
    """The conf dir holds no usable network config (the primary CNI has not written one)."""


@dataclass
class InstallSpec:
    """Everything one install or uninstall needs.

    Paths named ``*_dir`` are as this process sees them; ``host_root`` is where the node's
    ``/`` is mounted here (``/`` when running on the node itself), used to translate between
    the two for paths that end up inside files the node reads (the kubeconfig path).
    """

    plugins: Sequence[PluginEntry]
    bin_dir: Path
    conf_dir: Path | None = None
    entries: Sequence[Mapping[str, Any]] = ()
    """Chained config entries (``type`` set); a type without one gets ``{"type": T}``."""
    python: str | None = None
    """The interpreter launchers run (a path on the node)."""
    serviceaccount_dir: Path | None = None
    kubeconfig: str | None = None
    """Node path of the kubeconfig (default: the entry's, else ``<conf>/ZZZ-<type>-kubeconfig``)."""
    host_root: Path = field(default_factory=lambda: Path("/"))
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def types(self) -> list[str]:
        return [p.type for p in self.plugins]

    def to_host(self, local: Path) -> PurePosixPath:
        """The node path of a path seen here."""
        absolute = Path(os.path.abspath(local))
        root = Path(os.path.abspath(self.host_root))
        try:
            return PurePosixPath("/") / absolute.relative_to(root)
        except ValueError:
            raise InstallError(f"{local} is not under --host-root {self.host_root}") from None

    def to_local(self, host: str) -> Path:
        """Where a node path is seen here."""
        return Path(os.path.abspath(self.host_root)) / PurePosixPath(host).relative_to("/")


@dataclass
class Outcome:
    """What one install/uninstall did; ``changed`` lists the files written or removed."""

    config: Path | None = None
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- atomic writes and the lock ---------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a mix.

    The temp file gets ``mode`` (and ``owner`` when given) before its first byte, so the
    content is never readable with wider permissions than the final file.
    """
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(handle.fileno(), *owner)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        pause = os.environ.get(_PAUSE_ENV)
        if pause:
            time.sleep(float(pause))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


@contextlib.contextmanager
def locked(conf_dir: Path) -> Iterator[None]:
    """Hold the conf dir's install lock (blocking), and clear temp files a killed writer left."""
    fd = os.open(conf_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Under the lock no cnisdk writer is between write and rename, so any temp file
        # is an orphan of a killed one.
        for stale in conf_dir.glob(f".*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield
    finally:
        os.close(fd)  # closing drops the flock


# --- JSON text surgery ----------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _object_members(text: str, start: int) -> list[tuple[str, int, int]]:
    """``(key, value_start, value_end)`` for each member of the object at ``start``."""
    i = _skip_ws(text, start)
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    members: list[tuple[str, int, int]] = []
    i = _skip_ws(text, i + 1)
    if text[i : i + 1] == "}":
        return members
    while True:
        if text[i : i + 1] != '"':
            raise ValueError("expected a key")
        key, i = _DECODER.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i : i + 1] != ":":
            raise ValueError("expected ':'")
        i = _skip_ws(text, i + 1)
        _, end = _DECODER.raw_decode(text, i)
        members.append((key, i, end))
        i = _skip_ws(text, end)
        if text[i : i + 1] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if text[i : i + 1] == "}":
            return members
        raise ValueError("expected ',' or '}'")


def _array_elements(text: str, start: int) -> tuple[list[tuple[int, int]], int]:
    """Spans of the elements of the array at ``start``, and the index of its ``]``."""
    if text[start : start + 1] != "[":
        raise ValueError("not an array")
    spans: list[tuple[int, int]] = []
    i = _skip_ws(text, start + 1)
    if text[i : i + 1] == "]":
        return spans, i
    while True:
        _, end = _DECODER.raw_decode(text, i)
        spans.append((i, end))
        i = _skip_ws(text, end)
        if text[i : i + 1] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if text[i : i + 1] == "]":
            return spans, i
        raise ValueError("expected ',' or ']'")


def _plugins_array(text: str) -> tuple[int, list[tuple[int, int]], int]:
    # Go and Python both keep the last of duplicate keys, so the last "plugins" is the one.
    members = [m for m in _object_members(text, 0) if m[0] == "plugins"]
    if not members:
        raise ValueError("no plugins")
    start = members[-1][1]
    spans, close = _array_elements(text, start)
    return start, spans, close


def _cut_element(text: str, index: int) -> str:
    _, spans, _ = _plugins_array(text)
    s, e = spans[index]
    if index > 0:  # take the separator before it: exactly what _append_element added
        return text[: spans[index - 1][1]] + text[e:]
    if len(spans) > 1:
        return text[:s] + text[spans[1][0] :]
    return text[:s] + text[e:]


def _render_inline(entry: Mapping[str, Any], indent: str, unit: str | None) -> str:
    if unit is None:
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(entry, ensure_ascii=False, indent=unit).replace("\n", "\n" + indent)


def _append_element(text: str, entry: Mapping[str, Any]) -> str:
    start, spans, close = _plugins_array(text)
    if spans:
        if len(spans) > 1:
            sep = text[spans[-2][1] : spans[-1][0]]
        else:
            sep = "," + text[start + 1 : spans[0][0]]
        indent = sep.rsplit("\n", 1)[1] if "\n" in sep else ""
        unit = _indent_unit(text) if "\n" in sep else None
        at = spans[-1][1]
        return text[:at] + sep + _render_inline(entry, indent, unit) + text[at:]
    return text[: start + 1] + _render_inline(entry, "", None) + text[close:]


def _indent_unit(text: str) -> str:
    # The whitespace before the first top-level key is the file's indent step.
    i = _skip_ws(text, 0) + 1
    gap = text[i : _skip_ws(text, i)]
    unit = gap.rsplit("\n", 1)[-1] if "\n" in gap else ""
    return unit or "  "


def render_json(doc: Any) -> str:
    """How a whole file is written when it cannot be spliced: 2-space indent, a final newline."""
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def _edit(text: str, doc: Mapping[str, Any], edit: Callable[[str], str]) -> str:
    """Apply a text edit; fall back to a full rendering if it does not give ``doc``."""
    try:
        new = edit(text)
        if json.loads(new) == doc:
            return new
    except (ValueError, IndexError, KeyError):
        pass
    return render_json(doc)


# --- the document ----------------------------------------------------------------------------


def chain_entries(types: Sequence[str], given: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per type, in ``types`` order: the given one (minus ``cniVersion``) or a bare one.

    :raises InstallError: an entry without a type, for a type not being installed, or twice.
    """
    by_type: dict[str, dict[str, Any]] = {}
    for entry in given:
        plugin_type = entry.get("type")
        if not isinstance(plugin_type, str) or plugin_type not in types:
            raise InstallError(
                f"--chain entry has type {plugin_type!r}; expected one of {', '.join(types)}"
            )
        if plugin_type in by_type:
            raise InstallError(f"--chain has two entries of type {plugin_type!r}")
        # The list's cniVersion applies to every plugin; a stale one here only confuses.
        by_type[plugin_type] = {k: v for k, v in entry.items() if k != "cniVersion"}
    return [by_type.get(t, {"type": t}) for t in types]


def _our_indexes(doc: Mapping[str, Any], types: Sequence[str]) -> list[int]:
    plugins = doc.get("plugins")
    if not isinstance(plugins, list):
        return []
    return [i for i, p in enumerate(plugins) if isinstance(p, Mapping) and p.get("type") in types]


def add_entries(
    text: str, is_list: bool, entries: Sequence[Mapping[str, Any]], types: Sequence[str]
) -> str:
    """The new file text: our entries (replacing old ones of our types) appended last.

    :param is_list: ``text`` is a conflist; else a single config, which is wrapped.
    """
    doc = json.loads(text)
    if not is_list:
        inner = {k: v for k, v in doc.items() if k != "cniVersion"}
        wrapped = {
            "cniVersion": doc.get("cniVersion") or DEFAULT_CNI_VERSION,
            "name": doc.get("name") or "k8s-pod-network",
            "plugins": [inner, *entries],
        }
        return render_json(wrapped)
    ours = set(_our_indexes(doc, types))
    target = dict(doc)
    target["plugins"] = [p for i, p in enumerate(doc["plugins"]) if i not in ours]
    target["plugins"].extend(entries)
    if json.loads(text) == target:
        return text

    def edit(current: str) -> str:
        for index in sorted(ours, reverse=True):
            current = _cut_element(current, index)
        for entry in entries:
            current = _append_element(current, entry)
        return current

    return _edit(text, target, edit)


def remove_entries(text: str, types: Sequence[str]) -> str:
    """The conflist text without entries of ``types`` (``text`` itself when there are none)."""
    doc = json.loads(text)
    ours = _our_indexes(doc, types)
    if not ours:
        return text
    target = dict(doc)
    target["plugins"] = [p for i, p in enumerate(doc["plugins"]) if i not in set(ours)]

    def edit(current: str) -> str:
        for index in sorted(ours, reverse=True):
            current = _cut_element(current, index)
        return current

    return _edit(text, target, edit)


# --- kubeconfig ------------------------------------------------------------------------------


def kubeconfig_document(sa_dir: Path, name: str, environ: Mapping[str, str]) -> bytes:
    """A kubeconfig (JSON, which every kubeconfig reader accepts) from a service account dir.

    Same shape as Istio's: cluster ``local`` at ``https://$KUBERNETES_SERVICE_HOST:PORT`` with
    the SA's ``ca.crt``, a user with the SA token, one context set as current.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise InstallError(
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set to write a "
            "kubeconfig (they are in every pod; outside one, export them)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    try:
        token = (sa_dir / "token").read_text().strip()
        ca = (sa_dir / "ca.crt").read_bytes()
    except OSError as exc:
        raise InstallError(f"cannot read the service account in {sa_dir}: {exc}") from None
    if not token:
        raise InstallError(f"{sa_dir / 'token'} is empty")
    context = f"{_CONTEXT_PREFIX}{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": f"https://{host}:{port}",
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "local", "user": name}}],
        "current-context": context,
    }
    return render_json(doc).encode()


def _is_our_kubeconfig(path: Path, name: str) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("current-context") == f"{_CONTEXT_PREFIX}{name}"


def _kubeconfig_host_path(spec: InstallSpec, entries: Sequence[Mapping[str, Any]]) -> str:
    if spec.kubeconfig:
        return spec.kubeconfig
    for entry in entries:
        if isinstance(entry.get("kubeconfig"), str):
            return str(entry["kubeconfig"])
        legacy = entry.get("kubernetes")
        if isinstance(legacy, Mapping) and isinstance(legacy.get("kubeconfig"), str):
            return str(legacy["kubeconfig"])
    if spec.conf_dir is None:
        raise InstallError("--kubeconfig-from-serviceaccount needs --conf-dir or --kubeconfig")
    # Like Istio <= 1.23: next to the configs; runtimes ignore names without a config suffix.
    return str(spec.to_host(spec.conf_dir) / f"ZZZ-{spec.types[0]}-kubeconfig")


def _with_kubeconfig(entries: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        legacy = entry.get("kubernetes")
        has_legacy = isinstance(legacy, Mapping) and "kubeconfig" in legacy
        if "kubeconfig" not in entry and not has_legacy:
            entry = {**entry, "kubeconfig": path}
        out.append(entry)
    return out


# --- install / uninstall ---------------------------------------------------------------------


def _write_launchers(spec: InstallSpec, outcome: Outcome) -> None:
    for plugin in spec.plugins:
        target = spec.bin_dir / plugin.type
        wanted = launcher_bytes(plugin, spec.python)
        with contextlib.suppress(OSError):
            if target.read_bytes() == wanted and target.stat().st_mode & 0o777 == 0o755:
                continue
        write_launcher(spec.bin_dir, plugin, spec.python)
        outcome.changed.append(str(target))


def _single_to_list_name(path: Path) -> Path:
    return path.with_suffix(".conflist")


def _chain_into(spec: InstallSpec, entries: list[dict[str, Any]], outcome: Outcome) -> None:
    assert spec.conf_dir is not None
    selection = select_network(spec.conf_dir)
    skipped = selection.skipped()
    if selection.chosen is None:
        detail = "".join(f"\n  {line}" for line in skipped)
        raise NoPrimaryConfig(
            f"no usable CNI network config in {spec.conf_dir} (the primary CNI has not written "
            f"one yet?){detail}"
        ) from None
    outcome.notes.extend(skipped)
    path = selection.chosen.path
    stat = path.stat()
    mode, owner = stat.st_mode & 0o7777, (stat.st_uid, stat.st_gid)
    text = path.read_bytes().decode("utf-8")
    is_list = path.suffix not in _SINGLE_SUFFIXES
    new = add_entries(text, is_list, entries, spec.types)
    if is_list:
        outcome.config = path
        if new != text:
            write_atomic(path, new.encode(), mode, owner)
            outcome.changed.append(str(path))
        return
    target = _single_to_list_name(path)
    outcome.config = target
    if target.exists():
        # Left by a run that died between writing the conflist and removing the .conf, or
        # somebody else's file: replace it only in the first case.
        try:
            existing = json.loads(target.read_bytes())
            ours_removed = json.loads(remove_entries(target.read_text(), spec.types))
        except (OSError, ValueError):
            existing = ours_removed = None
        expected = json.loads(new)
        expected_base = json.loads(remove_entries(new, spec.types))
        if ours_removed != expected_base:
            raise InstallError(
                f"cannot convert {path} to a conflist: {target} exists with other content; "
                "remove one of them"
            )
        if existing != expected:
            write_atomic(target, new.encode(), mode, owner)
            outcome.changed.append(str(target))
    else:
        write_atomic(target, new.encode(), mode, owner)
        outcome.changed.append(str(target))
    # Only now: until here runtimes still pick the old .conf, which is complete.
    if _remove(path):
        outcome.changed.append(str(path))


def install(spec: InstallSpec) -> Outcome:
    """Install launchers, and with a conf dir the chained entries and kubeconfig. Idempotent.

    Order matters for a node taking pods: binaries and the kubeconfig first, the config entry
    last, so a runtime never sees our entry before the plugin can run.

    :raises NoPrimaryConfig: the conf dir has no usable config yet.
    :raises InstallError: anything else that stops the install.
    """
    outcome = Outcome()
    entries = chain_entries(spec.types, spec.entries)
    try:
        _write_launchers(spec, outcome)
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot write launchers into {spec.bin_dir}: {exc}") from None
    if spec.serviceaccount_dir is not None:
        host_path = _kubeconfig_host_path(spec, entries)
        entries = _with_kubeconfig(entries, host_path)
        local = spec.to_local(host_path)
        data = kubeconfig_document(spec.serviceaccount_dir, spec.types[0], spec.environ)
        try:
            current = local.read_bytes()
            same_mode = local.stat().st_mode & 0o777 == 0o600
        except OSError:
            current, same_mode = b"", False
        if current != data or not same_mode:
            local.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(local, data, 0o600)
            outcome.changed.append(str(local))
    if spec.conf_dir is None:
        return outcome
    if not spec.conf_dir.is_dir():
        raise NoPrimaryConfig(f"{spec.conf_dir} is not a directory")
    try:
        with locked(spec.conf_dir):
            _chain_into(spec, entries, outcome)
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot update the config in {spec.conf_dir}: {exc}") from None
    return outcome


def _config_files(conf_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in conf_dir.iterdir()
        if p.suffix in (".conf", ".conflist", ".json") and p.is_file() and not p.is_symlink()
    )


def uninstall(spec: InstallSpec) -> Outcome:
    """Remove our entries from every conflist in the conf dir, our launchers and kubeconfig.

    Only launchers cnisdk wrote (:func:`cnisdk._launcher.is_launcher`) and a kubeconfig this
    module wrote are deleted; a foreign binary or file of the same name stays.
    """
    outcome = Outcome()
    kubeconfigs: list[str] = []
    if spec.conf_dir is not None and spec.conf_dir.is_dir():
        with locked(spec.conf_dir):
            for path in _config_files(spec.conf_dir):
                try:
                    text = path.read_bytes().decode("utf-8")
                    doc = json.loads(text)
                except (OSError, ValueError):
                    continue  # not ours to judge, and we never wrote it broken
                if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
                    continue
                for index in _our_indexes(doc, spec.types):
                    entry = doc["plugins"][index]
                    if isinstance(entry.get("kubeconfig"), str):
                        kubeconfigs.append(entry["kubeconfig"])
                new = remove_entries(text, spec.types)
                if new != text:
                    stat = path.stat()
                    write_atomic(
                        path, new.encode(), stat.st_mode & 0o7777, (stat.st_uid, stat.st_gid)
                    )
                    outcome.changed.append(str(path))
    for plugin in spec.plugins:
        launcher = spec.bin_dir / plugin.type
        if is_launcher(launcher) and _remove(launcher):
            outcome.changed.append(str(launcher))
        elif launcher.exists():
            outcome.notes.append(f"left {launcher}: not a cnisdk launcher")
    candidates = list(kubeconfigs)
    if spec.kubeconfig:
        candidates.append(spec.kubeconfig)
    elif spec.conf_dir is not None:
        with contextlib.suppress(InstallError):
            candidates.append(str(spec.to_host(spec.conf_dir) / f"ZZZ-{spec.types[0]}-kubeconfig"))
    for host_path in dict.fromkeys(candidates):
        with contextlib.suppress(ValueError):
            local = spec.to_local(host_path)
            if _is_our_kubeconfig(local, spec.types[0]) and _remove(local):
                outcome.changed.append(str(local))
    return outcome


# --- a Python environment for the node -------------------------------------------------------


def _tree_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if (Path(root) / d).is_symlink()]):
            path = Path(root) / name
            st = path.lstat()
            rel = path.relative_to(source)
            link = os.readlink(path) if path.is_symlink() else ""
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\0{link}\n".encode())
    return digest.hexdigest()[:16]


def install_runtime(source: Path, dest: Path) -> tuple[Path, bool]:
    """Copy a self-contained Python tree onto the node: ``dest/<digest>``, ``dest/current`` -> it.

    Each version lands in its own directory (copied to a temp name, then renamed), and the
    ``current`` symlink is swapped atomically, so a plugin exec never sees a half-copied tree.
    The previous version is kept for execs still running from it; older ones are removed.

    :return: the ``current`` path (as seen here) and whether anything changed.
    """
    digest = _tree_digest(source)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / digest
    current = dest / "current"
    previous = os.readlink(current) if current.is_symlink() else None
    if previous == digest and final.is_dir():
        return current, False
    if not final.is_dir():
        staging = dest / f".{digest}{_TMP_SUFFIX}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, symlinks=True)
        os.rename(staging, final)
    link_tmp = dest / f".current{_TMP_SUFFIX}"
    with contextlib.suppress(FileNotFoundError):
        link_tmp.unlink()
    os.symlink(digest, link_tmp)
    os.replace(link_tmp, current)
    _fsync_dir(dest)
    for child in dest.iterdir():
        if child.name not in (digest, previous, "current") and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
    return current, True


# --- watch -----------------------------------------------------------------------------------


class ReadyServer:
    """``GET /readyz``: 200 while the install is in place, 503 otherwise; also a ready file."""

    def __init__(self, address: tuple[str, int] | None, ready_file: Path | None) -> None:
        self.ready = False
        self._file = ready_file
        self._server: ThreadingHTTPServer | None = None
        if address is not None:
            owner = self

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    if self.path.split("?")[0] not in ("/readyz", "/healthz"):
                        self.send_error(404)
                        return
                    ok = owner.ready or self.path.startswith("/healthz")
                    body = b"ok\n" if ok else b"not ready\n"
                    self.send_response(200 if ok else 503)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, format: str, *args: Any) -> None:
                    pass  # probes every few seconds would drown the useful lines

            self._server = ThreadingHTTPServer(address, Handler)
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def set(self, ready: bool) -> None:
        if ready == self.ready:
            return
        self.ready = ready
        if self._file is not None:
            if ready:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self._file, b"ready\n", 0o644)
            else:
                self._file.unlink(missing_ok=True)

    def close(self) -> None:
        self.set(False)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _fingerprint(spec: InstallSpec) -> tuple[Any, ...]:
    parts: list[Any] = []
    dirs = [spec.bin_dir] + ([spec.conf_dir] if spec.conf_dir is not None else [])
    for directory in dirs:
        try:
            with os.scandir(directory) as it:
                for item in it:
                    if directory == spec.bin_dir and item.name not in spec.types:
                        continue
                    with contextlib.suppress(OSError):
                        st = item.stat(follow_symlinks=False)
                        parts.append((item.path, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            parts.append((str(directory), None))
    if spec.serviceaccount_dir is not None:
        with contextlib.suppress(OSError):
            parts.append(hashlib.sha256((spec.serviceaccount_dir / "token").read_bytes()).digest())
    return tuple(sorted(parts, key=repr))


def watch(
    spec: InstallSpec,
    stop: threading.Event,
    ready: ReadyServer,
    *,
    interval: float = 0.5,
    throttle: float = 5.0,
    fight_limit: int = 5,
    report: Callable[[str], None] = print,
) -> None:
    """Keep the install in place until ``stop`` is set, then uninstall.

    A change seen in the fingerprint re-runs :func:`install`; a run that had to write the
    config is a *reinstall*. Reinstalls are at most one per ``throttle`` seconds; more than
    ``fight_limit`` in a row, each within ``2 * throttle`` of the last, is reported as another
    component fighting over the config (Istio's hint for Cilium: ``cni.exclusive=false``).
    """
    last_print: tuple[Any, ...] | None = None
    last_reinstall = -1e9
    streak = 0
    waiting_reported = False
    while not stop.is_set():
        seen = _fingerprint(spec)
        if seen != last_print:
            since = time.monotonic() - last_reinstall
            if since < throttle and last_print is not None:
                stop.wait(throttle - since)
                continue  # look again: the throttle wait may have seen more changes
            try:
                outcome = install(spec)
            except NoPrimaryConfig as exc:
                ready.set(False)
                if not waiting_reported:
                    report(f"waiting: {exc}")
                    waiting_reported = True
                last_print = _fingerprint(spec)
                stop.wait(interval)
                continue
            except InstallError as exc:
                ready.set(False)
                report(f"install failed, retrying: {exc}")
                last_print = None
                stop.wait(max(interval, throttle))
                continue
            waiting_reported = False
            config_changed = outcome.config is not None and any(
                c.endswith((".conf", ".conflist", ".json")) for c in outcome.changed
            )
            if config_changed and last_print is not None:
                now = time.monotonic()
                streak = streak + 1 if now - last_reinstall < 2 * throttle else 1
                last_reinstall = now
                report(f"re-asserted {outcome.config} (another component rewrote it)")
                if streak > fight_limit:
                    report(
                        f"warning: the config in {spec.conf_dir} was rewritten {streak} times in "
                        "a row; another component keeps removing our entry (for Cilium set "
                        "cni.exclusive=false)"
                    )
            elif outcome.changed:
                if config_changed:
                    last_reinstall = time.monotonic()
                for path in outcome.changed:
                    report(f"wrote {path}")
            ready.set(True)
            last_print = _fingerprint(spec)
        stop.wait(interval)
    outcome = uninstall(spec)
    ready.close()
    for path in outcome.changed:
        report(f"removed our part of {path}")
