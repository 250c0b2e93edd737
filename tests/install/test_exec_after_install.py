"""After ``cnisdk install`` into a bridge ``.conf``, the chain runs in a real namespace."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

import pytest

from cnisdk.testing import require_netns, temporary_netns

from .conftest import ENTRY, cli


@pytest.mark.netns
def test_exec_add_del_runs_our_plugin_chained(tmp_path: Path) -> None:
    require_netns()
    bridge = f"cnii{secrets.token_hex(4)}"
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-inst.conf").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "instnet",
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.250.241.0/24",
                    "dataDir": str(tmp_path / "ipam"),
                },
            },
            indent=2,
        )
    )
    bin_dir = tmp_path / "bin"
    done = cli(
        "install",
        "passthrough",
        "--bin-dir",
        str(bin_dir),
        "--conf-dir",
        str(conf_dir),
        "--chain",
        json.dumps(ENTRY),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in conf_dir.iterdir() if not p.name.startswith(".")) == [
        "10-inst.conflist"
    ]
    common = [
        "--cni-path",
        f"{bin_dir}:/usr/lib/cni",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--conf-dir",
        str(conf_dir),
    ]
    try:
        with temporary_netns("cnii-") as ns:
            added = cli("exec", "add", "instnet", ns, *common)
            assert added.returncode == 0, added.stderr
            result = json.loads(added.stdout)
            # passthrough returns the bridge's result unchanged, so the IP made it through.
            assert result["ips"][0]["address"].startswith("10.250.241.")
            cached = json.loads(next((tmp_path / "cache" / "results").iterdir()).read_text())
            # The config libcni-style runtimes cached is the installed chain, ours last.
            chain = json.loads(base64.b64decode(cached["config"]))
            assert [p["type"] for p in chain["plugins"]] == ["bridge", "passthrough"]
            deleted = cli("exec", "del", "instnet", ns, *common)
            assert deleted.returncode == 0, deleted.stderr
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    removed = cli(
        "uninstall", "passthrough", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir)
    )
    assert removed.returncode == 0, removed.stderr
    # Nobody changed the conflist since: the .conf it came from is back, as it was.
    assert sorted(p.name for p in conf_dir.iterdir() if not p.name.startswith(".")) == [
        "10-inst.conf"
    ]
    assert json.loads((conf_dir / "10-inst.conf").read_bytes())["type"] == "bridge"
