""" "Did you mean ...?": the known name a mistyped one most likely stands for.

One rule for every place that suggests: config keys in ``cnisdk validate``, plugin types on the
command line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest"]


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The name in ``known`` that ``name`` most likely misspells, or ``None``.

    Case, ``_`` and ``-`` are ignored first (``exclude_namespace`` is ``excludeNamespace``);
    otherwise the nearest by edit similarity, if it is close enough (difflib's ratio >= 0.7).
    """
    candidates = list(known)
    by_normal = {_normal(k): k for k in candidates}
    if _normal(name) in by_normal:
        return by_normal[_normal(name)]
    lowered = {k.lower(): k for k in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[close[0]] if close else None
