"""The tutorial end to end: `cnisdk install`, then tutorial.conflist through `cnisdk exec`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk.testing import require_netns, temporary_netns

HERE = Path(__file__).resolve().parent


def cnisdk(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``cnisdk`` command as the tutorial does (with this interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "CNISDK_LOG_LEVEL"},
    )


@pytest.mark.netns
def test_tutorial_chain_with_cnisdk_install_and_exec(tmp_path: Path) -> None:
    """The tutorial's steps: install the launcher, run tutorial.conflist with `cnisdk exec`."""
    require_netns()
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        pytest.skip("Debian's containernetworking-plugins are not installed")
    # The tutorial's conflist, with a bridge name and IPAM store of this test's own.
    conflist = json.loads((HERE / "tutorial.conflist").read_text())
    bridge = f"cnitut{secrets.token_hex(3)}"
    conflist["plugins"][0]["bridge"] = bridge
    conflist["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    conf = tmp_path / "tutorial.conflist"
    conf.write_text(json.dumps(conflist))
    bin_dir = tmp_path / "bin"

    installed = cnisdk("install", "--bin-dir", str(bin_dir), "passthrough")
    assert installed.returncode == 0, installed.stderr
    assert os.access(bin_dir / "passthrough", os.X_OK)

    common = ["--cni-path", f"{bin_dir}:/usr/lib/cni", "--cache-dir", str(tmp_path / "cache")]
    try:
        with temporary_netns() as netns:
            added = cnisdk("exec", "add", str(conf), netns, *common)
            assert added.returncode == 0, added.stderr
            result = json.loads(added.stdout)
            assert result["ips"][0]["address"].startswith("10.98.0.")
            assert "ADD container=" in added.stderr  # passthrough logs at "log_level": "info"
            checked = cnisdk("exec", "check", str(conf), netns, *common)
            assert checked.returncode == 0, checked.stderr
            deleted = cnisdk("exec", "del", str(conf), netns, *common)
            assert deleted.returncode == 0, deleted.stderr
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
