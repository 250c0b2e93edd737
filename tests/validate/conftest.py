"""Fixtures for the validate tests: registered cnisdk plugins and a bin dir of stub plugins."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cnisdk import _discovery
from cnisdk.spec import ALL_VERSIONS

CORPUS = Path(__file__).parent / "corpus"
REAL_CNI = "/usr/lib/cni"
# Binaries of real clusters that this machine does not have (Debian's plugins are 1.1.1, without
# dummy and tap): stubs answer VERSION like them.
STUB_TYPES = (
    "calico", "calico-ipam", "cilium-cni", "flannel", "istio-cni", "passthrough", "dummy", "tap",
    "istio-redirect",
)  # fmt: skip

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


ISTIO_REDIRECT = _discovery.PluginEntry(
    type="istio-redirect",
    module="cnisdk_istio_redirect",
    attr="IstioRedirect",
    distribution="cnisdk-istio-redirect",
    version="0.1.0",
)


@pytest.fixture(autouse=True)
def registered_plugins(monkeypatch: pytest.MonkeyPatch) -> dict[str, _discovery.PluginEntry]:
    """Only passthrough and istio-redirect are registered, whatever this machine has installed."""
    plugins = {"passthrough": PASSTHROUGH, "istio-redirect": ISTIO_REDIRECT}
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


def gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` dies (or is a zombie awaiting its new parent) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
