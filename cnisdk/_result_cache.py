"""The result cache of a runtime, in libcni's own on-disk format.

One file per attachment, ``<cache dir>/results/<network>-<containerID>-<ifname>``, holding
libcni's ``cachedInfo``::

    {"kind":"cniCacheV1","containerId":..,"config":<base64 of the list's bytes>,"ifName":..,
     "networkName":..,"netns"?:..,"cniArgs"?:[[k,v],..],"capabilityArgs"?:{..},"result":{..}}

so a node can switch between this runtime and a Go one (or ``cnitool``) without losing track
of attachments. Files are written atomically (:func:`cnisdk._files.write_atomic`, mode 0600,
directory 0700), so parallel ADD/DEL of different containers never see a torn entry.

Reading is bounded and forgiving where libcni is: an entry whose fields have the wrong JSON
types is skipped when listing, exactly as Go's typed decoding makes libcni skip it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnisdk._files import TMP_SUFFIX, read_bounded, write_atomic
from cnisdk.spec._convert import convert_result
from cnisdk.spec._errors import CNIError
from cnisdk.spec._json import GoJSONError, dumps_compact, go_quote, go_sorted, loads_go
from cnisdk.spec._names import (
    validate_container_id,
    validate_interface_name,
    validate_network_name,
)
from cnisdk.spec._result import AnyResult, result_to_dict
from cnisdk.spec._result_decode import parse_result

__all__ = ["CACHE_KIND", "DEFAULT_CACHE_DIR", "CachedAttachment", "ResultCache"]

DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"
_MAX_ENTRY_BYTES = 8 << 20  # the list's config (base64) plus a result: far below this


@dataclass(frozen=True)
class CachedAttachment:
    """One cached attachment (libcni's ``NetworkAttachment``)."""

    container_id: str
    network: str
    ifname: str
    config: bytes
    netns: str
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]


@dataclass(frozen=True)
class _Entry:
    """A ``cachedInfo`` that decoded as Go decodes it."""

    kind: str
    attachment: CachedAttachment
    result: dict[str, Any] | None


class _Corrupt(ValueError):
    """A cache file Go's typed decoding would refuse."""


def _string(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Corrupt(f"{key} is not a string")
    return value


def _decode_entry(data: bytes) -> _Entry:
    """``json.Unmarshal(data, &cachedInfo)``: the field types Go requires, nothing more."""
    try:
        doc = loads_go(data)
    except GoJSONError as exc:
        raise _Corrupt(str(exc)) from None
    if not isinstance(doc, dict):
        raise _Corrupt("not a JSON object")
    try:
        config = base64.b64decode(_string(doc, "config"), validate=True)
    except (binascii.Error, ValueError):
        raise _Corrupt("config is not base64") from None
    raw_args = doc.get("cniArgs")
    if raw_args is None:
        raw_args = []
    if not isinstance(raw_args, list):
        raise _Corrupt("cniArgs is not a list")
    cni_args: list[tuple[str, str]] = []
    for pair in raw_args:
        # Go decodes each into a [2]string: extra elements are dropped, missing ones are "".
        if not isinstance(pair, list) or not all(isinstance(p, str | None) for p in pair):
            raise _Corrupt("cniArgs holds something other than pairs of strings")
        padded = [p or "" for p in pair[:2]] + ["", ""]
        cni_args.append((padded[0], padded[1]))
    capability_args = doc.get("capabilityArgs")
    if capability_args is None:
        capability_args = {}
    result = doc.get("result")
    if not isinstance(capability_args, dict) or not isinstance(result, dict | None):
        raise _Corrupt("capabilityArgs or result is not a JSON object")
    attachment = CachedAttachment(
        container_id=_string(doc, "containerId"),
        network=_string(doc, "networkName"),
        ifname=_string(doc, "ifName"),
        config=config,
        netns=_string(doc, "netns"),
        cni_args=cni_args,
        capability_args=capability_args,
    )
    return _Entry(_string(doc, "kind"), attachment, result)


class ResultCache:
    """The ``results`` directory under a cache root (libcni's ``CacheDir``)."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_CACHE_DIR) -> None:
        self.root = Path(root)

    @property
    def directory(self) -> Path:
        return self.root / "results"

    def path(self, network: str, container_id: str, ifname: str) -> Path:
        """``<root>/results/<network>-<containerID>-<ifname>``.

        :raises CNIError: a name that fails the spec's validation (so it never becomes a path).
        """
        validate_container_id(container_id)
        validate_network_name(network)
        validate_interface_name(ifname)
        return self.directory / f"{network}-{container_id}-{ifname}"

    def write(
        self,
        result: AnyResult,
        config: bytes,
        attachment: CachedAttachment,
    ) -> None:
        """Cache the final result of an ADD, with what DEL/GC need to replay the attachment."""
        # Field order and omissions of libcni's cachedInfo struct; nested maps are sorted
        # because Go marshals them from map[string]interface{}.
        doc: dict[str, Any] = {
            "kind": CACHE_KIND,
            "containerId": attachment.container_id,
            "config": base64.b64encode(config).decode("ascii"),
            "ifName": attachment.ifname,
            "networkName": attachment.network,
        }
        if attachment.netns:
            doc["netns"] = attachment.netns
        if attachment.cni_args:
            doc["cniArgs"] = [[k, v] for k, v in attachment.cni_args]
        if attachment.capability_args:
            doc["capabilityArgs"] = go_sorted(attachment.capability_args)
        doc["result"] = go_sorted(result_to_dict(result))
        path = self.path(attachment.network, attachment.container_id, attachment.ifname)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, dumps_compact(doc), 0o600)

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        """Remove an entry; an invalid name or a missing file is not an error."""
        try:
            path = self.path(network, container_id, ifname)
        except CNIError:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def result(
        self, network: str, container_id: str, ifname: str, version: str
    ) -> AnyResult | None:
        """The cached result of the last ADD, converted to ``version``.

        Reads ``cniCacheV1`` files and legacy files holding a bare result.

        :return: ``None`` when there is no (readable) cache file.
        :raises ValueError: the file is corrupt or the result does not convert.
        :raises CNIError: invalid container ID, network name or interface name.
        """
        path = self.path(network, container_id, ifname)
        try:
            data = read_bounded(path, _MAX_ENTRY_BYTES)
        except OSError:
            return None  # libcni ignores read errors: the attachment may never have been cached
        try:
            entry = _decode_entry(data)
        except _Corrupt:
            entry = None
        if entry is not None and entry.kind == CACHE_KIND:
            raw: Any = entry.result or {}
        else:
            try:
                raw = loads_go(data)  # a legacy cache file is the bare result
            except GoJSONError as exc:
                raise ValueError(f"failed to parse cached result {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"cached result {path} is not a JSON object")
        result_version = raw.get("cniVersion") or "0.1.0"
        if not isinstance(result_version, str):
            raise ValueError(f"cached result {path} has a non-string cniVersion")
        parsed = parse_result(raw, result_version)
        try:
            return convert_result(parsed, version)
        except ValueError as exc:
            raise ValueError(
                f"failed to convert cached result to config version {go_quote(version)}: {exc}"
            ) from exc

    def attachments(self, container_id: str = "") -> list[CachedAttachment]:
        """Every readable ``cniCacheV1`` entry (libcni's ``GetCachedAttachments``).

        Files that cannot be read or decoded, or lack an interface or network name, are
        skipped, as libcni skips them.

        :param container_id: only this container's entries, when not empty.
        """
        try:
            names = sorted(os.listdir(self.directory), key=os.fsencode)
        except OSError:
            return []
        found: list[CachedAttachment] = []
        for name in names:
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                continue  # an in-flight write of ours
            if container_id:
                part = f"-{container_id}-"
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            try:
                entry = _decode_entry(read_bounded(self.directory / name, _MAX_ENTRY_BYTES))
            except (OSError, _Corrupt):
                continue
            attachment = entry.attachment
            if entry.kind != CACHE_KIND:
                continue
            if container_id and attachment.container_id != container_id:
                continue
            if not attachment.ifname or not attachment.network:
                continue
            found.append(attachment)
        return found
