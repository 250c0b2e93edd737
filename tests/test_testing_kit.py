"""The public test kit: in-process and subprocess invocation, bin dirs, the netns guard."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cnisdk import CNIError, Context, NetConf, Plugin, Result
from cnisdk.testing import cni_env, invoke, invoke_subprocess

pytestmark = pytest.mark.anyio

PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
    "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
}
CONFIG = {"cniVersion": "1.0.0", "name": "net", "type": "passthrough", "prevResult": PREV}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Refuser(Plugin[NetConf]):
    async def add(self, ctx: Context[NetConf]) -> Result:
        raise CNIError(11, "busy", ctx.container_id)


async def test_invoke_in_process_parses_result_in_config_version() -> None:
    from cnisdk_examples.passthrough import Passthrough

    prev_040 = {k: v for k, v in PREV.items() if k != "cniVersion"}  # inherits 0.4.0
    config = {**CONFIG, "cniVersion": "0.4.0", "prevResult": prev_040}
    outcome = await invoke(Passthrough, "ADD", config, netns="/x")
    assert outcome.ok
    result = outcome.result
    assert result.to_dict() == {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
        "dns": {},
    }


async def test_invoke_reports_errors() -> None:
    outcome = await invoke(Refuser, "ADD", CONFIG, netns="/x", container_id="c1")
    assert outcome.exit_code == 1
    assert outcome.error == CNIError(11, "busy", "c1")
    with pytest.raises(CNIError):
        _ = outcome.result


def test_cni_env_sets_every_variable_like_libcni() -> None:
    env = cni_env("DEL", args={"K8S_POD_NAME": "p", "IgnoreUnknown": "1"}, cni_path=["/a", "/b"])
    assert env == {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "cnisdk-test",
        "CNI_NETNS": "",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAME=p;IgnoreUnknown=1",
        "CNI_PATH": "/a:/b",
    }


async def test_cni_bin_dir_launcher_runs_as_subprocess(
    cni_bin_dir: Callable[..., list[str]],
) -> None:
    cni_path = cni_bin_dir("passthrough")
    launcher = Path(cni_path[0]) / "passthrough"
    assert os.access(launcher, os.X_OK)
    assert "/usr/lib/cni" in cni_path
    outcome = await invoke_subprocess(launcher, "ADD", CONFIG, netns="/x", cni_path=cni_path)
    assert outcome.ok, outcome.stdout
    assert outcome.json() == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
    }


def test_netns_marked_skip_fails_when_netns_is_required(tmp_path: Path) -> None:
    test_file = tmp_path / "test_guard.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.netns
            def test_would_skip():
                pytest.skip("no namespaces here")
            """
        )
    )
    env = {**os.environ, "CNISDK_REQUIRE_NETNS": "1"}
    required = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert required.returncode == 1, required.stdout
    assert "netns test skipped under CNISDK_REQUIRE_NETNS=1" in required.stdout
    env["CNISDK_REQUIRE_NETNS"] = "0"
    relaxed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert relaxed.returncode == 0, relaxed.stdout
    assert "1 skipped" in relaxed.stdout
