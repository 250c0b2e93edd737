"""Keys of a config object against the model of the plugin that reads it: the ones the plugin
does not read (likely typos, with the closest known key), and the ones added after a release.

The walk follows the model's fields into nested models (``ranges[0][1]``, ``kubernetes``) and
stops at free-form values (``dict[str, Any]``), whose keys are anyone's.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cnisdk._suggest import closest
from cnisdk._validate._findings import join
from cnisdk._validate._reference import Release, Since

__all__ = ["KeyNote", "nested_models", "suggest", "walk_keys", "without"]


@dataclass(frozen=True)
class KeyNote:
    """A key worth a finding: unknown to the model, or added in a later release."""

    location: str
    key: str
    parts: tuple[str | int, ...]
    """The key's path in the walked object, as written there."""
    known: tuple[str, ...]
    """The keys the object can have (for a suggestion), when ``key`` is unknown."""
    since: Release | None = None
    """For a known key: the release that added it."""


def _fields(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """Lower-cased JSON key -> (JSON key, field): Go matches keys case-insensitively."""
    out: dict[str, tuple[str, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        out[key.lower()] = (key, info)
    return out


def _nested(annotation: Any) -> tuple[type[BaseModel], int] | None:
    """The model inside an annotation and how many list levels wrap it (``list[list[M]]``)."""
    depth = 0
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return None
            annotation = members[0]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
            depth += 1
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, depth
        else:
            return None


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, at any depth, each once."""
    found = [model]
    for current in found:
        for info in current.model_fields.values():
            nested = _nested(info.annotation)
            if nested is not None and nested[0] not in found:
                found.append(nested[0])
    return found


def walk_keys(
    model: type[BaseModel], data: Any, where: str, *, exempt: frozenset[str] = frozenset()
) -> Iterator[KeyNote]:
    """Every unknown key (not in ``exempt``) and every key with a release, at any depth."""
    Parts = tuple[str | int, ...]
    pending: list[tuple[type[BaseModel], Any, str, Parts, frozenset[str]]] = [
        (model, data, where, (), frozenset(k.lower() for k in exempt))
    ]
    while pending:
        current, value, location, parts, skip = pending.pop()
        if not isinstance(value, dict):
            continue
        fields = _fields(current)
        for key, item in value.items():
            found = fields.get(key.lower())
            if found is None:
                if key.lower() not in skip:
                    known = tuple(k for k, _ in fields.values())
                    yield KeyNote(join(location, key), key, (*parts, key), known)
                continue
            name, info = found
            since = next((m.release for m in info.metadata if isinstance(m, Since)), None)
            if since is not None:
                yield KeyNote(join(location, name), name, (*parts, key), (), since)
            nested = _nested(info.annotation)
            if nested is None:
                continue
            inner, depth = nested
            items: list[tuple[Any, str, Parts]] = [(item, join(location, name), (*parts, key))]
            for _ in range(depth):
                items = [
                    (child, join(loc, i), (*path, i))
                    for parent, loc, path in items
                    if isinstance(parent, list)
                    for i, child in enumerate(parent)
                ]
            pending.extend((inner, child, loc, path, frozenset()) for child, loc, path in items)


def suggest(key: str, known: tuple[str, ...]) -> str | None:
    """The known key ``key`` most likely misspells, or ``None``."""
    return closest(key, known)


def without(data: dict[str, Any], paths: list[tuple[str | int, ...]]) -> dict[str, Any]:
    """``data`` without the keys at ``paths`` (copying only what changes)."""
    if not paths:
        return data
    out = dict(data)
    for path in paths:
        node: Any = out
        for part in path[:-1]:
            child = node[part]
            node[part] = child = list(child) if isinstance(child, list) else dict(child)
            node = child
        node.pop(path[-1], None)
    return out
