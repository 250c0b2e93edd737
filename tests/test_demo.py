"""The README's main job: `cnisdk demo` runs a real chain and proves redirection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk.testing import require_netns

CNISDK = Path(sys.executable).parent / "cnisdk"


@pytest.mark.netns
def test_demo_redirects_and_cleans_up() -> None:
    require_netns()
    done = subprocess.run(
        [str(CNISDK), "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in done.stdout
    assert "accepted by the listener on :15001, original destination" in done.stdout
    assert "demo finished" in done.stdout
    # Other test runs may add and remove namespaces meanwhile: look for the demo's own only.
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "cnisdk-demo-" not in after
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "cnidemo" not in links
