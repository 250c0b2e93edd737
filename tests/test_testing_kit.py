"""The public test kit: in-process and subprocess invocation, bin dirs, the netns guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from cnisdk import CNIError, Context, NetConf, Plugin, Result
from cnisdk.testing import ExecCall, FakeExec, cni_env, invoke, invoke_subprocess

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


class IPAMUser(Plugin[NetConf]):
    """ADD delegates to its config's ``ipam.type`` and returns what it said; DEL releases."""

    async def add(self, ctx: Context[NetConf]) -> Result:
        ipam = str((ctx.config.ipam or {}).get("type"))
        return (await ctx.delegate_add(ipam, ctx.request.stdin)).to_current()

    async def delete(self, ctx: Context[NetConf]) -> None:
        await ctx.delegate_delete(str((ctx.config.ipam or {}).get("type")), ctx.request.stdin)


def ipam_config(data_dir: Path, ipam_type: str = "host-local") -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "kitnet",
        "type": "ipam-user",
        "ipam": {"type": ipam_type, "subnet": "10.251.7.0/24", "dataDir": str(data_dir)},
    }


async def test_a_kit_invocation_without_a_fake_runs_no_host_plugin(tmp_path: Path) -> None:
    # Debian's host-local is in /usr/lib/cni; without a fake and without cni_path=, the kit's
    # CNI_PATH must not find it (nor any other binary), whatever the host has installed.
    data_dir = tmp_path / "ipam"
    for command in ("ADD", "DEL"):
        outcome = await invoke(IPAMUser, command, ipam_config(data_dir), netns="/x")
        assert outcome.error == CNIError(
            999, 'failed to find plugin "host-local" in path [/dev/null]'
        )
    assert not data_dir.exists()  # host-local never ran
    assert cni_env("ADD")["CNI_PATH"] == "/dev/null"  # non-empty: the skel's env check passes


@pytest.mark.skipif(not os.access("/usr/lib/cni/host-local", os.X_OK), reason="needs host-local")
async def test_a_test_that_asks_for_host_plugins_gets_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "ipam"
    config = ipam_config(data_dir)
    outcome = await invoke(IPAMUser, "ADD", config, netns="/x", cni_path=["/usr/lib/cni"])
    assert outcome.ok, outcome.stdout
    assert outcome.json()["ips"][0]["address"] == "10.251.7.2/24"
    deleted = await invoke(IPAMUser, "DEL", config, netns="/x", cni_path=["/usr/lib/cni"])
    assert deleted.ok, deleted.stdout
    assert not (data_dir / "kitnet" / "10.251.7.2").exists()


async def test_fake_exec_records_calls_and_gives_canned_answers(tmp_path: Path) -> None:
    fake = FakeExec()
    fake.respond("ADD", "host-local", {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24"}]})
    fake.respond("DEL", "host-local", CNIError(11, "busy", "retry"))
    config = ipam_config(tmp_path)
    added = await invoke(IPAMUser, "ADD", config, netns="/x", container_id="c1", exec=fake)
    assert added.ok, added.stdout
    assert added.json()["ips"] == [{"address": "10.9.0.2/24"}]
    deleted = await invoke(IPAMUser, "DEL", config, exec=fake)
    assert deleted.error == CNIError(11, "busy", "retry")  # the delegate's error, passed on
    [add, delete] = fake.calls
    assert (add.command, add.plugin_type, add.config) == ("ADD", "host-local", config)
    assert add.environ["CNI_CONTAINERID"] == "c1" and add.environ["CNI_PATH"] == "/dev/null"
    assert (delete.command, delete.environ["CNI_COMMAND"]) == ("DEL", "DEL")
    # Unanswered: ADD gets an empty result of the config's version, other verbs succeed.
    other = await invoke(IPAMUser, "ADD", ipam_config(tmp_path, "other"), netns="/x", exec=fake)
    assert other.json() == {"cniVersion": "1.0.0"}


async def test_fake_exec_handler_answers_first_and_may_be_async(tmp_path: Path) -> None:
    seen: list[ExecCall] = []

    async def handler(call: ExecCall) -> object:
        seen.append(call)
        await anyio.lowlevel.checkpoint()
        if call.plugin_type == "broken":
            return b"not json"
        return None  # fall through to respond() / the default

    fake = FakeExec(handler)
    fake.respond("ADD", "host-local", {"cniVersion": "0.4.0", "ips": []})
    outcome = await invoke(IPAMUser, "ADD", ipam_config(tmp_path), netns="/x", exec=fake)
    assert outcome.json()["cniVersion"] == "1.0.0"  # a 0.4.0 answer, printed as the config's
    broken = await invoke(IPAMUser, "ADD", ipam_config(tmp_path, "broken"), netns="/x", exec=fake)
    assert broken.error.code == 999
    assert broken.error.msg.startswith("failed to unmarshal raw result")
    assert [c.plugin_type for c in seen] == ["host-local", "broken"]


class Doubler(Plugin[NetConf]):
    """A chained plugin that delegates to ``inner`` and adds its address to the result."""

    chained = True

    async def add(self, ctx: Context[NetConf]) -> Result:
        prev = ctx.require_prev_result()
        inner = (await ctx.delegate_add("inner", {"cniVersion": "1.0.0", "name": "n"})).to_current()
        prev.ips.extend(inner.ips)
        return prev


class Inner(Plugin[NetConf]):
    async def add(self, ctx: Context[NetConf]) -> Result:
        if ctx.container_id == "refuse":
            raise CNIError(11, "no addresses left")
        return Result.model_validate({"cniVersion": "1.1.0", "ips": [{"address": "10.3.0.9/24"}]})


async def test_fake_exec_runs_installed_plugins_in_process() -> None:
    fake = FakeExec()
    fake.install("doubler", Doubler)
    fake.install("inner", Inner())
    stdin = json.dumps({**CONFIG, "type": "doubler"}).encode()
    env = cni_env("ADD", netns="/x")
    stdout = await fake.exec_plugin(fake.find_plugin("doubler", ["/bin-dir"]), env, stdin)
    assert [ip["address"] for ip in json.loads(stdout)["ips"]] == ["10.1.2.3/24", "10.3.0.9/24"]
    assert [(c.plugin_type, c.command) for c in fake.calls] == [
        ("doubler", "ADD"),
        ("inner", "ADD"),
    ]
    assert fake.calls[0].environ is not env and fake.calls[1].environ["CNI_PATH"] == "/dev/null"
    # A failing installed plugin is an error document, read back as exec mode reads it.
    refused = cni_env("ADD", netns="/x", container_id="refuse")
    with pytest.raises(CNIError) as info:
        await fake.exec_plugin("/bin-dir/doubler", refused, stdin)
    assert info.value == CNIError(11, "no addresses left")


async def test_fake_exec_keeps_the_timeout() -> None:
    async def stuck(call: ExecCall) -> object:
        await anyio.sleep(30)
        return None

    fake = FakeExec(stuck)
    with pytest.raises(TimeoutError, match=r"^plugin /d/p timed out after 0.05s$"):
        await fake.exec_plugin("/d/p", cni_env("ADD"), b"{}", timeout=0.05)


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
