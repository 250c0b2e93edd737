"""Shared fixtures for the example plugins' tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """cnisdk runs on anyio's asyncio backend."""
    return "asyncio"
