"""``cnisdk install --watch``: re-asserting, readiness, token rotation, SIGTERM uninstalls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cnisdk._discovery import get_plugin
from cnisdk._install import InstallSpec, Readiness, watch

from .conftest import API_ENV, CONFIGS, ENTRY, install_argv, service_account, snapshot, started


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


FLANNEL = (CONFIGS / "flannel" / "10-flannel.conflist").read_bytes()


def has_entry(path: Path) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return bool(doc["plugins"][-1].get("type") == "passthrough")


def replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.other-writer")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_watch_reasserts_rotates_and_uninstalls_on_sigterm(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()  # empty: the installer waits for the primary CNI
    sa = service_account(tmp_path / "sa")
    port = free_port()
    ready_file = tmp_path / "ready"
    argv = install_argv(
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
    )
    with started(argv, {**os.environ, **API_ENV}) as proc:
        wait_for(lambda: readyz(port) == 503)
        assert not ready_file.exists()
        # The primary CNI arrives.
        shutil.copy(CONFIGS / "calico" / "10-calico.conflist", conf_dir)
        primary = conf_dir / "10-calico.conflist"
        wait_for(lambda: has_entry(primary) and readyz(port) == 200)
        assert ready_file.exists()
        kubeconfig = conf_dir / "ZZZ-passthrough-kubeconfig"
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        # Another component rewrites the config without our entry: we put it back.
        replace_file(primary, (CONFIGS / "calico" / "10-calico.conflist").read_bytes())
        wait_for(lambda: has_entry(primary))
        # The token rotates: the kubeconfig follows.
        (sa / "token").write_text("token-2")
        wait_for(lambda: "token-2" in kubeconfig.read_text())
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "re-asserted" in out
    assert primary.read_bytes() == (CONFIGS / "calico" / "10-calico.conflist").read_bytes()
    assert not kubeconfig.exists() and not (tmp_path / "bin" / "passthrough").exists()
    assert not ready_file.exists()


class WatchedReadiness(Readiness):
    """Readiness that checks, each time it turns true, that the entry really is there."""

    def __init__(self, primary: Callable[[], Path]) -> None:
        super().__init__(None, None)
        self.primary = primary
        self.history: list[bool] = []

    def set(self, ready: bool) -> None:
        if ready and ready != self.ready:
            assert has_entry(self.primary()), "ready while our entry is missing"
        if ready != self.ready:
            self.history.append(ready)
        super().set(ready)


def run_watch(
    spec: InstallSpec, ready: Readiness, report: Callable[[str], None], **kwargs: float
) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=watch,
        args=(spec, stop, ready),
        kwargs={"interval": 0.02, "throttle": 0.1, "report": report, **kwargs},
    )
    thread.start()
    return thread, stop


def flannel_spec(tmp_path: Path) -> InstallSpec:
    conf_dir = tmp_path / "net.d"
    shutil.copytree(CONFIGS / "flannel", conf_dir)
    return InstallSpec(
        plugins=[get_plugin("passthrough")],
        bin_dir=tmp_path / "bin",
        conf_dir=conf_dir,
        entries=[ENTRY],
    )


def fight(tmp_path: Path, fight_limit: int) -> list[str]:
    """Watch a config that another component rewrites, without our entry, each time we have
    put it back (at once, from the report of our write), six times; the watch's messages."""
    spec = flannel_spec(tmp_path)
    assert spec.conf_dir is not None
    primary = spec.conf_dir / "10-flannel.conflist"
    messages: list[str] = []
    strikes: list[float] = []

    def report(message: str) -> None:
        messages.append(message)
        if message.startswith(("wrote " + str(primary), "re-asserted")) and len(strikes) < 6:
            strikes.append(time.monotonic())
            replace_file(primary, FLANNEL)

    ready = WatchedReadiness(lambda: primary)
    # Throttle 0.5 s: a rewrite counts as part of a fight within 1 s of the one before.
    thread, stop = run_watch(spec, ready, report, fight_limit=fight_limit, throttle=0.5)
    try:
        wait_for(lambda: len(strikes) == 6 and has_entry(primary) and ready.ready, timeout=30)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert sum("re-asserted" in m for m in messages) == 6
    # Throttled: six rewrites after the first write cannot take less than six throttles.
    assert time.monotonic() - strikes[0] >= 6 * 0.5
    assert primary.read_bytes() == FLANNEL
    assert snapshot(spec.conf_dir) == snapshot(CONFIGS / "flannel")
    assert ready.history == [True, False]
    return messages


def test_watch_warns_when_something_keeps_fighting(tmp_path: Path) -> None:
    # More than 2 in a row: the fighter strikes at once, so each rewrite follows the last by
    # one throttle (plus a poll), well within two.
    messages = fight(tmp_path, fight_limit=2)
    warnings = [m for m in messages if m.startswith("warning")]
    assert warnings and "keeps removing our entry" in warnings[0]


def test_no_warning_below_the_fight_limit(tmp_path: Path) -> None:
    assert not [m for m in fight(tmp_path, fight_limit=6) if m.startswith("warning")]


def test_a_rewrite_right_after_our_write_is_seen(tmp_path: Path) -> None:
    """The other writer strikes between our write and our next look (synchronously, from
    the report of our write): the next poll finds the entry missing and puts it back, and
    readiness is never true while it is missing."""
    spec = flannel_spec(tmp_path)
    assert spec.conf_dir is not None
    primary = spec.conf_dir / "10-flannel.conflist"
    ready = WatchedReadiness(lambda: primary)
    strikes: list[str] = []

    def report(message: str) -> None:
        if message.startswith(("wrote " + str(primary), "re-asserted")) and len(strikes) < 3:
            strikes.append(message)
            replace_file(primary, FLANNEL)  # right after our rename

    thread, stop = run_watch(spec, ready, report)
    try:
        wait_for(lambda: len(strikes) == 3 and has_entry(primary) and ready.ready)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    # Ready once, after the third strike was repaired; not ready again when stopped.
    assert ready.history == [True, False]
    assert primary.read_bytes() == FLANNEL


def test_ready_follows_the_file_a_runtime_uses(tmp_path: Path) -> None:
    spec = flannel_spec(tmp_path)
    assert spec.conf_dir is not None
    conf_dir = spec.conf_dir
    current = [conf_dir / "10-flannel.conflist"]
    ready = WatchedReadiness(lambda: current[0])
    thread, stop = run_watch(spec, ready, lambda m: None)
    try:
        wait_for(lambda: ready.ready)
        # A new file that sorts first: a runtime now uses it, without our entry.
        current[0] = conf_dir / "05-new.conflist"
        replace_file(current[0], FLANNEL.replace(b'"cbr0"', b'"new"'))
        wait_for(lambda: has_entry(current[0]) and ready.ready)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert ready.history == [True, False, True, False]
    # Uninstall took our entries out of both files.
    assert (conf_dir / "10-flannel.conflist").read_bytes() == FLANNEL
    assert not has_entry(conf_dir / "05-new.conflist")
