"""``cnisdk install --watch``: re-asserting, readiness, token rotation, SIGTERM uninstalls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cnisdk._discovery import get_plugin
from cnisdk._node_install import InstallSpec, ReadyServer, watch

from .conftest import CONFIGS, ENTRY, GOLDEN, install_argv, snapshot


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def has_entry(path: Path) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return doc["plugins"][-1].get("type") == "passthrough"


def test_watch_reasserts_rotates_and_uninstalls_on_sigterm(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()  # empty: the installer waits for the primary CNI
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("token-1")
    (sa / "ca.crt").write_text("ca")
    port = free_port()
    ready_file = tmp_path / "ready"
    proc = subprocess.Popen(
        install_argv(
            tmp_path / "bin",
            conf_dir,
            "--kubeconfig-from-serviceaccount",
            str(sa),
            "--watch",
            "--interval",
            "0.1",
            "--throttle",
            "0.5",
            "--ready-address",
            f"127.0.0.1:{port}",
            "--ready-file",
            str(ready_file),
        ),
        env={
            **os.environ,
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: readyz(port) == 503)
        assert not ready_file.exists()
        # The primary CNI arrives.
        shutil.copy(CONFIGS / "calico" / "10-calico.conflist", conf_dir)
        primary = conf_dir / "10-calico.conflist"
        wait_for(lambda: has_entry(primary) and readyz(port) == 200)
        assert ready_file.exists()
        kubeconfig = conf_dir / "ZZZ-passthrough-kubeconfig"
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        # Another component rewrites the config without our entry: we are back quickly.
        shutil.copy(CONFIGS / "calico" / "10-calico.conflist", conf_dir / ".tmp")
        os.replace(conf_dir / ".tmp", primary)
        took = wait_for(lambda: has_entry(primary), timeout=5)
        assert took < 3
        # The token rotates: the kubeconfig follows.
        (sa / "token").write_text("token-2")
        wait_for(lambda: "token-2" in kubeconfig.read_text())
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "re-asserted" in out
    assert primary.read_bytes() == (CONFIGS / "calico" / "10-calico.conflist").read_bytes()
    assert not kubeconfig.exists() and not (tmp_path / "bin" / "passthrough").exists()
    assert not ready_file.exists()


def test_watch_warns_when_something_keeps_fighting(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    shutil.copytree(CONFIGS / "flannel", conf_dir)
    primary = conf_dir / "10-flannel.conflist"
    spec = InstallSpec(
        plugins=[get_plugin("passthrough")],
        bin_dir=tmp_path / "bin",
        conf_dir=conf_dir,
        entries=[ENTRY],
    )
    stop = threading.Event()
    messages: list[str] = []
    ready = ReadyServer(None, None)
    thread = threading.Thread(
        target=watch,
        args=(spec, stop, ready),
        kwargs={"interval": 0.02, "throttle": 0.1, "fight_limit": 3, "report": messages.append},
    )
    thread.start()
    try:
        wait_for(lambda: has_entry(primary))
        start = time.monotonic()
        for _ in range(6):  # a component that keeps removing us
            shutil.copy(CONFIGS / "flannel" / "10-flannel.conflist", primary)
            wait_for(lambda: has_entry(primary))
        # Throttled: six reinstalls cannot take less than five throttle periods.
        assert time.monotonic() - start >= 5 * 0.1
        wait_for(lambda: any("warning" in m for m in messages))
    finally:
        stop.set()
        thread.join(10)
    assert sum("re-asserted" in m for m in messages) == 6
    assert primary.read_bytes() == (CONFIGS / "flannel" / "10-flannel.conflist").read_bytes()
    assert (GOLDEN / "flannel.installed").exists()
    assert snapshot(conf_dir) == snapshot(CONFIGS / "flannel")
