"""CNI error values: the ``{"code", "msg", "details"}`` document a plugin prints on failure."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CNIError", "ConversionError", "ErrorCode"]


class ErrorCode(enum.IntEnum):
    """The well-known CNI error codes (0-99 are reserved by the spec; 100+ are plugin-specific)."""

    UNKNOWN = 0
    INCOMPATIBLE_CNI_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT_VARIABLES = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    INVALID_NETNS = 8
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


class CNIError(Exception):
    """A CNI error with a code, a message and optional details.

    Raise it from a plugin verb to report a specific code; any other exception is reported
    as code 999 (``ErrorCode.INTERNAL``) with its message, as Go's skel does.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(code, msg, details)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        # Same text as Go's types.Error.Error().
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CNIError):
            return NotImplemented
        return (self.code, self.msg, self.details) == (other.code, other.msg, other.details)

    def __hash__(self) -> int:
        return hash((self.code, self.msg, self.details))

    def to_dict(self) -> dict[str, Any]:
        """The error document; ``details`` is left out when empty, as Go does."""
        doc: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def to_json(self) -> bytes:
        """The bytes a plugin prints: 4-space indented JSON without a trailing newline."""
        from cnisdk.spec._json import dumps_go

        return dumps_go(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CNIError:
        """Read an error document as a runtime does: no code means 0; ``cniVersion`` is ignored."""
        code = doc.get("code", 0)
        msg = doc.get("msg", "")
        details = doc.get("details", "")
        if not isinstance(code, int) or isinstance(code, bool) or code < 0:
            raise ValueError(f"invalid error code {code!r}")
        if not isinstance(msg, str) or not isinstance(details, str):
            raise ValueError("error msg and details must be strings")
        return cls(code, msg, details)

    @classmethod
    def from_json(cls, data: bytes | str) -> CNIError:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("an error document must be a JSON object")
        return cls.from_dict(doc)


class ConversionError(ValueError):
    """A result cannot be parsed in, or converted to, a CNI version.

    The message is the one Go's ``pkg/types`` gives for the same case, so a plugin that
    lets it escape reports ``{"code": 999, "msg": <that message>}`` exactly as a Go plugin would.
    """
