"""CNI spec versions: the known ones, Go's ordering rules, and what each allows."""

from __future__ import annotations

import re

__all__ = [
    "ALL_VERSIONS",
    "CURRENT_VERSION",
    "VersionFamily",
    "parse_version",
    "supports_check",
    "supports_gc",
    "supports_prev_result_on_delete",
    "supports_status",
    "version_at_least",
    "version_family",
]

ALL_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""Every spec version this SDK speaks, oldest first."""

CURRENT_VERSION = "1.1.0"
"""The version the SDK reports in VERSION output and uses for results internally."""

VersionFamily = str
"""One of ``"0.2"`` (0.1.0, 0.2.0), ``"0.4"`` (0.3.0, 0.3.1, 0.4.0) or ``"1.0"`` (1.0.0, 1.1.0)."""

_FAMILIES: dict[str, VersionFamily] = {
    "0.1.0": "0.2",
    "0.2.0": "0.2",
    "0.3.0": "0.4",
    "0.3.1": "0.4",
    "0.4.0": "0.4",
    "1.0.0": "1.0",
    "1.1.0": "1.0",
}


def parse_version(version: str) -> tuple[int, int, int]:
    """Parse a version as Go's ``version.ParseVersion`` does, for ordering.

    ``""`` is 0.1.0; one to three dot-separated integers, missing parts are 0 (so ``"1.0"``
    orders like ``"1.0.0"``, although it never matches it exactly).

    :raises ValueError: with Go's message, e.g. ``invalid version "1.0.0.0": too many parts``.
    """
    if version == "":
        version = "0.1.0"
    parts = version.split(".")
    if len(parts) >= 4:
        raise ValueError(f'invalid version "{version}": too many parts')
    numbers: list[int] = []
    for name, part in zip(("major", "minor", "micro"), parts, strict=False):
        # Go's strconv.Atoi accepts an optional sign; a negative part still parses.
        if not re.fullmatch(r"[+-]?[0-9]+", part):
            raise ValueError(
                f'failed to convert {name} version part "{part}": '
                f'strconv.Atoi: parsing "{part}": invalid syntax'
            )
        numbers.append(int(part))
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


def version_at_least(version: str, minimum: str) -> bool:
    """``version >= minimum`` by Go's ordering. :raises ValueError: if either does not parse."""
    return parse_version(version) >= parse_version(minimum)


def version_family(version: str) -> VersionFamily | None:
    """The result family of an exact version string, or ``None`` if the version is unknown."""
    return _FAMILIES.get(version)


def supports_check(version: str) -> bool:
    """CHECK exists from 0.4.0 on."""
    return version_at_least(version, "0.4.0")


def supports_gc(version: str) -> bool:
    """GC exists from 1.1.0 on."""
    return version_at_least(version, "1.1.0")


def supports_status(version: str) -> bool:
    """STATUS exists from 1.1.0 on."""
    return version_at_least(version, "1.1.0")


def supports_prev_result_on_delete(version: str) -> bool:
    """From 0.4.0 on a runtime passes the cached result to DEL."""
    return version_at_least(version, "0.4.0")
