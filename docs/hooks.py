"""MkDocs hooks: the version of cnisdk the site documents, for the header."""

from __future__ import annotations

from typing import Any


def on_config(config: Any) -> Any:
    from cnisdk import __version__

    config.extra["cnisdk_version"] = __version__
    return config
