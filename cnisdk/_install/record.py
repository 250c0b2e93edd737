"""The install record: what ``cnisdk install`` added to a conf dir, for uninstall to take out.

It lives next to the install lock as ``<conf dir>/.cnisdk-install.state`` (a dot file: no
runtime reads it), mode 0600, JSON, replaced atomically under the lock, so it survives
restarts of the installer and of the node. For each config file install wrote it holds:

- ``written``: the SHA-256 of the bytes install wrote last;
- ``restore``: what was there before (the bytes, or the symlink, under the file's former name:
  a converted ``.conf`` is restored under its own name);
- per plugin type: the entry install ``added``, and the entries of that type that were in
  the file before and that install ``replaced`` (their bytes and positions).

Uninstall puts ``restore`` back when the file still holds exactly what install wrote;
otherwise someone changed it since, and uninstall cuts only our ``added`` entries and puts
the ``replaced`` ones back where they were, leaving everything else as it is now.

The record is written before the config it describes, so a crash in between leaves a
record of an edit that did not happen, which uninstall handles (nothing of ours is found);
never an edit without its record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnisdk._files import read_bounded, remove_durably, write_atomic

__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD_NAME",
    "FileRecord",
    "InstallRecord",
    "Restore",
    "TypeRecord",
    "digest",
]

RECORD_NAME = ".cnisdk-install.state"
MAX_RECORD_BYTES = 16 << 20
"""The largest record read (a few conf files of at most 1 MiB each, base64-encoded)."""
_VERSION = 1


def digest(data: bytes) -> str:
    """How the record names file content."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Restore:
    """What a file was before install: its bytes or a symlink, under its former name."""

    name: str
    data: bytes | None = None
    link: str | None = None


@dataclass
class TypeRecord:
    """What install did for one plugin type in one file."""

    added: Any
    """The entry install appended (decoded JSON)."""
    replaced: list[tuple[int, bytes]] = field(default_factory=list)
    """Entries of the type that were there before: (index in the plugins list, bytes)."""


@dataclass
class FileRecord:
    """What install did to one config file."""

    written: str
    restore: Restore
    types: dict[str, TypeRecord] = field(default_factory=dict)


class _Malformed(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _Malformed("expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _Malformed("invalid base64") from None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Malformed("expected a string")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed("expected an object")
    return value


def _file_from_json(doc: Any) -> FileRecord:
    doc = _object(doc)
    restore_doc = _object(doc.get("restore"))
    restore = Restore(
        name=_str(restore_doc.get("name")),
        data=_unb64(restore_doc["data"]) if "data" in restore_doc else None,
        link=_str(restore_doc["link"]) if "link" in restore_doc else None,
    )
    if (restore.data is None) == (restore.link is None) or "/" in restore.name:
        raise _Malformed("restore needs a plain name and one of data, link")
    types: dict[str, TypeRecord] = {}
    for plugin_type, entry in _object(doc.get("types")).items():
        entry = _object(entry)
        replaced = entry.get("replaced", [])
        if not isinstance(replaced, list):
            raise _Malformed("replaced must be a list")
        pairs = []
        for item in replaced:
            item = _object(item)
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise _Malformed("index must be a non-negative integer")
            pairs.append((index, _unb64(item.get("data"))))
        types[plugin_type] = TypeRecord(added=entry.get("added"), replaced=pairs)
    return FileRecord(written=_str(doc.get("written")), restore=restore, types=types)


def _file_to_json(record: FileRecord) -> dict[str, Any]:
    restore: dict[str, Any] = {"name": record.restore.name}
    if record.restore.link is not None:
        restore["link"] = record.restore.link
    else:
        restore["data"] = _b64(record.restore.data or b"")
    return {
        "written": record.written,
        "restore": restore,
        "types": {
            plugin_type: {
                "added": entry.added,
                "replaced": [{"index": i, "data": _b64(raw)} for i, raw in entry.replaced],
            }
            for plugin_type, entry in record.types.items()
        },
    }


@dataclass
class InstallRecord:
    """Everything install added to one conf dir."""

    files: dict[str, FileRecord] = field(default_factory=dict)
    """By the config file's name in the conf dir."""
    kubeconfigs: dict[str, str] = field(default_factory=dict)
    """Node path of the kubeconfig written, by plugin type."""

    @classmethod
    def load(cls, conf_dir: Path) -> tuple[InstallRecord, str | None]:
        """The conf dir's record (empty when there is none) and, when the file is there but
        cannot be used, a note saying why (it is then treated as empty)."""
        path = conf_dir / RECORD_NAME
        try:
            data = read_bounded(path, MAX_RECORD_BYTES)
        except FileNotFoundError:
            return cls(), None
        except OSError as exc:
            return cls(), f"ignoring the install record {path}: {exc.strerror or exc}"
        try:
            doc = _object(json.loads(data))
            if doc.get("version") != _VERSION:
                raise _Malformed(f"unknown version {doc.get('version')!r}")
            files = {
                _str(name): _file_from_json(entry)
                for name, entry in _object(doc.get("files", {})).items()
            }
            if any("/" in name or name in ("", ".", "..") for name in files):
                raise _Malformed("a file name with a path")
            kubeconfigs = {_str(k): _str(v) for k, v in _object(doc.get("kubeconfigs", {})).items()}
        except (ValueError, RecursionError) as exc:
            return cls(), f"ignoring the install record {path}: not a valid record ({exc})"
        return cls(files, kubeconfigs), None

    def save(self, conf_dir: Path) -> None:
        """Replace the conf dir's record atomically (or remove it when it is empty)."""
        path = conf_dir / RECORD_NAME
        if not self.files and not self.kubeconfigs:
            remove_durably(path)
            return
        doc = {
            "version": _VERSION,
            "files": {name: _file_to_json(r) for name, r in sorted(self.files.items())},
            "kubeconfigs": dict(sorted(self.kubeconfigs.items())),
        }
        write_atomic(path, json.dumps(doc, indent=1).encode() + b"\n", 0o600)
