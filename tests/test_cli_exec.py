"""``cnisdk exec`` end to end: a real namespace, Debian's Go plugins, a subprocess per verb."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk._commands.exec_ import default_container_id
from cnisdk.testing import require_netns, temporary_netns

ROOT = Path(__file__).resolve().parents[1]


def cnisdk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", "exec", *args],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=60,
    )


def test_default_container_id_is_cnitools() -> None:
    expected = "cnitool-" + hashlib.sha512(b"/var/run/netns/x").hexdigest()[:20]
    assert default_container_id("/var/run/netns/x") == expected


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cnisdk("bogus", "x", "y").returncode == 2
    conf = tmp_path / "n.conflist"
    conf.write_text('{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}')
    done = cnisdk("add", str(conf), "/var/run/netns/x", "--args", "A=B=C")
    assert done.returncode == 2 and "invalid CNI_ARGS pair" in done.stderr


def test_help_has_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cnisdk._cli", "exec", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert "example:" in done.stdout and "--capability-args" in done.stdout


@pytest.mark.netns
def test_exec_add_check_del_in_a_namespace(tmp_path: Path) -> None:
    require_netns()
    bridge = f"cnix{secrets.token_hex(4)}"
    data_dir = tmp_path / "ipam"
    cache = tmp_path / "cache"
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-clinet.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "clinet",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipam": {
                            "type": "host-local",
                            "subnet": "10.250.240.0/24",
                            "dataDir": str(data_dir),
                        },
                    }
                ],
            }
        )
    )
    common = ["--cni-path", "/usr/lib/cni", "--cache-dir", str(cache), "--conf-dir", str(conf_dir)]
    try:
        with temporary_netns("cnix-") as ns:
            added = cnisdk(
                "add", "clinet", ns, *common, "--args", "IgnoreUnknown=1;K8S_POD_NAME=web"
            )
            assert added.returncode == 0, added.stderr
            result = json.loads(added.stdout)
            assert result["ips"][0]["address"].startswith("10.250.240.")
            assert added.stdout.startswith('{\n    "cniVersion": "1.0.0"')  # Go's 4-space indent
            container_id = default_container_id(ns)
            cache_file = cache / "results" / f"clinet-{container_id}-eth0"
            cached = json.loads(cache_file.read_text())
            assert cached["cniArgs"] == [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]]

            checked = cnisdk("check", str(conf_dir / "10-clinet.conflist"), ns, *common)
            assert checked.returncode == 0, checked.stderr
            assert cnisdk("status", "clinet", ns, *common).returncode == 0  # 1.0.0: no-op

            failed = cnisdk("add", "clinet", ns, *common, "--ifname", "eth0/x")
            assert failed.returncode == 1
            (line,) = failed.stderr.splitlines()
            assert line.startswith('cnisdk exec: plugin type="bridge" failed (add): ')
            assert line.endswith("(CNI error code 4)")

            deleted = cnisdk("del", "clinet", ns, *common)
            assert deleted.returncode == 0, deleted.stderr
            assert not cache_file.exists()
            assert not list((data_dir / "clinet").glob("10.250.240.*"))
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
