"""Fixtures for the validate tests: a registered example plugin and a bin dir of stub plugins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnisdk import _discovery
from cnisdk.spec import ALL_VERSIONS

CORPUS = Path(__file__).parent / "corpus"
REAL_CNI = "/usr/lib/cni"
# Binaries of real clusters that this machine does not have: stubs answer VERSION like them.
STUB_TYPES = ("calico", "calico-ipam", "cilium-cni", "flannel", "istio-cni", "passthrough")

PASSTHROUGH = _discovery.PluginEntry(
    type="passthrough",
    module="cnisdk_examples.passthrough",
    attr="Passthrough",
    distribution="cnisdk-examples",
    version="0.1.0",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def registered_plugins(monkeypatch: pytest.MonkeyPatch) -> dict[str, _discovery.PluginEntry]:
    """Only the passthrough example is registered, whatever this machine has installed."""
    plugins = {"passthrough": PASSTHROUGH}
    monkeypatch.setattr(_discovery, "find_plugins", lambda: dict(plugins))
    return plugins


def write_plugin(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    """A shell-script plugin; ``body`` runs with CNI_COMMAND set."""
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(mode)
    return path


def version_answer(versions: list[str] | tuple[str, ...]) -> str:
    doc = {"cniVersion": versions[-1], "supportedVersions": list(versions)}
    return f"cat >/dev/null; echo '{json.dumps(doc)}'"


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    directory = tmp_path / "stub-bin"
    directory.mkdir()
    for name in STUB_TYPES:
        write_plugin(directory, name, version_answer(ALL_VERSIONS))
    return directory
