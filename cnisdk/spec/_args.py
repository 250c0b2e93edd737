"""``CNI_ARGS``: the ``K=V;K=V`` string a runtime passes, and loading it into a typed model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["CNIArgs", "KubernetesArgs", "load_cni_args", "parse_cni_args"]

_ModelT = TypeVar("_ModelT", bound=BaseModel)
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}


class CNIArgs(Mapping[str, str]):
    """The parsed pairs of ``CNI_ARGS``, in order; the last of repeated keys wins on lookup."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._map = dict(pairs)

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"CNIArgs({self.pairs!r})"

    @property
    def ignore_unknown(self) -> bool:
        """True when ``IgnoreUnknown`` is set to a true value anywhere, as in Go's ``LoadArgs``."""
        return any(k == "IgnoreUnknown" and v.lower() in _TRUE for k, v in self.pairs)


def parse_cni_args(raw: str) -> CNIArgs:
    """Split ``CNI_ARGS`` on ``;`` and each pair on its first ``=``, so values may contain ``=``.

    ``""`` means no args. A pair without ``=`` (including the empty pair a trailing ``;``
    leaves) is refused with Go's message, e.g. ``ARGS: invalid pair ""``.
    """
    if raw == "":
        return CNIArgs([])
    pairs: list[tuple[str, str]] = []
    for item in raw.split(";"):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f'ARGS: invalid pair "{item}"')
        pairs.append((key, value))
    return CNIArgs(pairs)


def load_cni_args(raw: str | CNIArgs, model: type[_ModelT]) -> _ModelT:
    """Load ``CNI_ARGS`` into a pydantic model whose field names (or aliases) are the keys.

    Keys are matched case-sensitively, as Go matches struct field names. Unknown keys are an
    error (``ARGS: unknown args ["Foo=bar"]``) unless ``IgnoreUnknown`` is true. ``bool``
    fields take ``1``/``true``/``0``/``false`` in any case, like Go.

    :raises ValueError: with Go's message for an invalid pair, an unknown key or a bad value.
    """
    args = parse_cni_args(raw) if isinstance(raw, str) else raw
    known: dict[str, str] = {}
    for name, info in model.model_fields.items():
        known[info.alias or name] = name
    known.setdefault("IgnoreUnknown", "")
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in args.pairs:
        if key not in known:
            unknown.append(f"{key}={value}")
            continue
        field_name = known[key]
        if key == "IgnoreUnknown" or _is_bool_field(model, field_name):
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError(
                    f'ARGS: error parsing value of pair "{key}={value}": '
                    f"boolean unmarshal error: invalid input {value}"
                )
            if field_name:
                values[field_name] = value.lower() in _TRUE
            continue
        values[field_name] = value
    if unknown and not args.ignore_unknown:
        quoted = " ".join(f'"{item}"' for item in unknown)
        raise ValueError(f"ARGS: unknown args [{quoted}]")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"ARGS: error parsing value of {where}: {first['msg']}") from exc


def _is_bool_field(model: type[BaseModel], field_name: str) -> bool:
    info = model.model_fields.get(field_name)
    return info is not None and info.annotation in (bool, bool | None)


class KubernetesArgs(BaseModel):
    """The ``CNI_ARGS`` keys Kubernetes runtimes (containerd, CRI-O) send for a pod."""

    model_config = {"populate_by_name": True, "defer_build": True}

    K8S_POD_NAMESPACE: str = ""
    K8S_POD_NAME: str = ""
    K8S_POD_INFRA_CONTAINER_ID: str = ""
    K8S_POD_UID: str = ""
