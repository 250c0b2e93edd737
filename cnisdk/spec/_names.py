"""Validation of the names a runtime passes: container ID, interface name, network name.

Same rules, codes and messages as Go's ``pkg/utils``; these names end up in file paths, so
they are checked before anything uses them.
"""

from __future__ import annotations

import re

from cnisdk.spec._errors import CNIError, ErrorCode

__all__ = ["validate_container_id", "validate_interface_name", "validate_network_name"]

# Go's RE2 `$` matches only at the very end; `\Z` is the Python equivalent.
_ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z", re.ASCII)
# unicode.IsSpace in Go; str.isspace() would also accept \x1c-\x1f, which Go does not.
_GO_SPACE = frozenset("\t\n\v\f\r \u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_MAX_IFNAME_BYTES = 15


def validate_container_id(container_id: str) -> None:
    """:raises CNIError: code 3 when empty, code 4 when it has characters Go rejects."""
    if container_id == "":
        raise CNIError(ErrorCode.UNKNOWN_CONTAINER, "missing containerID")
    if not _ID_PATTERN.match(container_id):
        raise CNIError(
            ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            "invalid characters in containerID",
            container_id,
        )


def validate_network_name(name: str) -> None:
    """:raises CNIError: code 7 when empty or with characters Go rejects."""
    if name == "":
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "missing network name")
    if not _ID_PATTERN.match(name):
        raise CNIError(
            ErrorCode.INVALID_NETWORK_CONFIG, "invalid characters found in network name", name
        )


def validate_interface_name(ifname: str) -> None:
    """:raises CNIError: code 4, checked in Go's order: empty, too long, dots, bad characters."""
    size = len(ifname.encode("utf-8", "surrogateescape"))
    if size == 0:
        raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, "interface name is empty")
    if size > _MAX_IFNAME_BYTES:
        raise CNIError(
            ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            "interface name is too long",
            f"interface name should be less than {_MAX_IFNAME_BYTES + 1} characters",
        )
    if ifname in (".", ".."):
        raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, "interface name is . or ..")
    if any(ch in "/:" or ch in _GO_SPACE for ch in ifname):
        raise CNIError(
            ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            "interface name contains / or : or whitespace characters",
        )
