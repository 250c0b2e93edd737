"""Helpers for the agent tests: start ``cnisdk agent`` as a subprocess, write shims (Python or
compiled), run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnisdk._agent_protocol import request_health
from cnisdk._discovery import PluginEntry, get_plugin
from cnisdk._launcher import ANSWER_TIMEOUT, AgentEntry, Fallback, write_launcher

HERE = Path(__file__).resolve().parent
CNISDK = Path(sys.executable).parent / "cnisdk"
TEST_PLUGINS = {
    "slow": "agent_plugins:Slow",
    "boom": "agent_plugins:Boom",
    "netns": "agent_plugins:NetnsProbe",
}


def test_entry(plugin_type: str) -> PluginEntry:
    module, _, attr = TEST_PLUGINS[plugin_type].partition(":")
    return PluginEntry(plugin_type, module, attr, "agent-tests", "0")


class AgentProcess:
    """``cnisdk agent`` serving passthrough, istio-redirect and the test plugins."""

    def __init__(
        self,
        socket_path: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.socket_path = socket_path
        name = f"{socket_path.name}.{time.monotonic_ns()}.log"
        self.log_path = (log_dir or socket_path.parent) / name
        command = [str(CNISDK), "agent", "--socket", str(socket_path)]
        for name, target in TEST_PLUGINS.items():
            command += ["--plugin", f"{name}={target}"]
        command += list(args)
        environ = dict(os.environ if env is None else env)
        environ["PYTHONPATH"] = str(HERE)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, env=environ
            )

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
            try:
                return request_health(self.socket_path, timeout=2)
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def write_shims(
    bin_dir: Path,
    socket_path: Path,
    types: Sequence[str],
    fallback: Fallback = "exec",
    shim_binary: Path | None = None,
    answer_timeout: float = ANSWER_TIMEOUT,
) -> None:
    """Shims for ``types``: the compiled shim when ``shim_binary`` is given, else Python's."""
    for plugin_type in types:
        entry = test_entry(plugin_type) if plugin_type in TEST_PLUGINS else get_plugin(plugin_type)
        binary = None if shim_binary is None else str(shim_binary)
        agent_entry = AgentEntry.of(entry, str(socket_path), fallback, binary, answer_timeout)
        write_launcher(bin_dir, agent_entry)


def write_exec_launchers(bin_dir: Path, types: Sequence[str]) -> None:
    """Exec-mode launchers; the test plugins' ones find their module on sys.path explicitly."""
    for plugin_type in types:
        if plugin_type not in TEST_PLUGINS:
            write_launcher(bin_dir, get_plugin(plugin_type))
            continue
        module, _, attr = TEST_PLUGINS[plugin_type].partition(":")
        path = bin_dir / plugin_type
        path.write_text(
            f"#!{sys.executable} -I\n"
            f"import sys\nsys.path.insert(0, {str(HERE)!r})\n"
            f"from cnisdk import run\nfrom {module} import {attr}\nrun({attr})\n"
        )
        path.chmod(0o755)


def run_plugin(
    path: Path, env: Mapping[str, str], stdin: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """Run a plugin binary as a runtime does: only the given environment, stdin bytes."""
    return subprocess.run(
        [str(path)], input=stdin, env=dict(env), capture_output=True, timeout=timeout
    )


def cni_env(command: str, **extra: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "ctr-1",
        "CNI_NETNS": "/var/run/netns/does-not-exist",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    env.update(extra)
    return env


def chained_config(plugin_type: str, version: str = "1.0.0", **extra: Any) -> bytes:
    doc = {
        "cniVersion": version,
        "name": "agent-test",
        "type": plugin_type,
        **extra,
        "prevResult": {
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
        },
    }
    return json.dumps(doc).encode()
