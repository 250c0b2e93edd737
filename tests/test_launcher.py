"""Launchers written by the real ``cnisdk install``, exec'd the way a container runtime does.

A runtime gives a plugin only the ``CNI_*`` variables (and usually ``PATH``), a config on
stdin, and reads one JSON document from stdout plus the exit code.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cnisdk._discovery import PluginEntry
from cnisdk._launcher import LAUNCHER_MARKER, is_launcher, render_launcher

VENV_BIN = Path(sys.executable).parent
CNISDK = VENV_BIN / "cnisdk"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
FULL_ENV = {
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/nonexistent",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "",
    "CNI_PATH": "/opt/cni/bin",
}


def cnisdk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CNISDK), *args], capture_output=True, text=True, check=False, timeout=60
    )


def execute(
    launcher: Path, env: Mapping[str, str], stdin: bytes | str = b""
) -> subprocess.CompletedProcess[bytes]:
    """Exec ``launcher`` with only ``env`` + ``PATH``, as a runtime does."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [str(launcher)],
        input=data,
        env={**env, "PATH": PATH},
        capture_output=True,
        check=False,
        timeout=60,
    )


def go_indent(doc: Any) -> bytes:
    """Go's ``json.MarshalIndent(v, "", "    ")``: 4-space indent, no trailing newline."""
    return json.dumps(doc, indent=4).encode()


def assert_go_document(stdout: bytes) -> Any:
    """stdout is exactly one 4-space-indented JSON document without a trailing newline."""
    doc = json.loads(stdout)
    assert stdout == go_indent(doc), stdout
    assert not stdout.endswith(b"\n")
    return doc


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bin")
    done = cnisdk("install", "--bin-dir", str(directory), "passthrough")
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture(scope="module")
def launcher(bin_dir: Path) -> Path:
    return bin_dir / "passthrough"


# -- cnisdk install ------------------------------------------------------------------------


def test_install_writes_an_executable_launcher(bin_dir: Path, launcher: Path) -> None:
    mode = stat.S_IMODE(launcher.stat().st_mode)
    assert mode == 0o755
    lines = launcher.read_text().splitlines()
    assert lines[0].startswith("#!") and lines[0].endswith(" -I")
    assert Path(lines[0][2:].split()[0]).is_file()
    assert lines[1].startswith(LAUNCHER_MARKER)
    assert "passthrough" in lines[1]
    assert is_launcher(launcher)
    # Atomic write: no temporary files are left behind.
    assert sorted(p.name for p in bin_dir.iterdir()) == ["passthrough"]


def test_install_reports_what_it_wrote(tmp_path: Path) -> None:
    done = cnisdk("install", "--bin-dir", str(tmp_path), "passthrough", "istio-redirect")
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "passthrough") in done.stdout
    assert str(tmp_path / "istio-redirect") in done.stdout
    assert is_launcher(tmp_path / "istio-redirect")


def test_reinstall_replaces_the_launcher(tmp_path: Path) -> None:
    target = tmp_path / "passthrough"
    target.write_text("#!/bin/sh\necho stale\n")
    target.chmod(0o700)
    old_inode = target.stat().st_ino
    done = cnisdk("install", "--bin-dir", str(tmp_path), "passthrough")
    assert done.returncode == 0, done.stderr
    assert is_launcher(target)
    assert "stale" not in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    # Replaced by rename (a runtime exec'ing concurrently sees the old or the new file).
    assert target.stat().st_ino != old_inode
    first = target.read_text()
    assert cnisdk("install", "--bin-dir", str(tmp_path), "passthrough").returncode == 0
    assert target.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passthrough"]


def test_install_creates_the_bin_dir(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    assert cnisdk("install", "--bin-dir", str(directory), "passthrough").returncode == 0
    assert is_launcher(directory / "passthrough")


def test_install_unknown_type_fails_clearly(tmp_path: Path) -> None:
    done = cnisdk("install", "--bin-dir", str(tmp_path), "passthrough", "no-such-plugin")
    assert done.returncode == 1
    assert "no plugin of type 'no-such-plugin'" in done.stderr
    assert "passthrough" in done.stderr  # lists what is installed
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written when any type is unknown


def test_install_requires_bin_dir() -> None:
    done = cnisdk("install", "passthrough")
    assert done.returncode == 2
    assert "--bin-dir" in done.stderr


# -- the launcher as a runtime sees it -------------------------------------------------------

PREV_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
    "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    "dns": {"nameservers": ["10.0.0.53"]},
}


def test_add_prints_the_prev_result(launcher: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "passthrough", "prevResult": PREV_100}
    done = execute(launcher, {**FULL_ENV, "CNI_COMMAND": "ADD"}, json.dumps(conf))
    assert done.returncode == 0, done.stderr
    # [new] skel: 1.0.0 results are re-marshalled through a map, keys alphabetical at every level.
    assert done.stdout == json.dumps(PREV_100, indent=4, sort_keys=True).encode()


def test_add_output_follows_the_config_version(launcher: Path) -> None:
    # The prevResult is printed in the config's version, byte for byte.
    conf = {
        "cniVersion": "0.4.0",
        "name": "n",
        "prevResult": {
            "cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "10.0.0.2/24"}],
        },
    }
    done = execute(launcher, {**FULL_ENV, "CNI_COMMAND": "ADD"}, json.dumps(conf))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        b'{\n    "cniVersion": "0.4.0",\n    "ips": [\n        {\n'
        b'            "version": "4",\n            "address": "10.0.0.2/24"\n'
        b'        }\n    ],\n    "dns": {}\n}'
    )


def test_add_without_prev_result_is_refused(launcher: Path) -> None:
    done = execute(
        launcher, {**FULL_ENV, "CNI_COMMAND": "ADD"}, '{"cniVersion":"1.0.0","name":"n"}'
    )
    assert done.returncode == 1
    assert done.stdout == go_indent({"code": 7, "msg": "must be called as chained plugin"})


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_succeeds_silently(launcher: Path, version: str) -> None:
    prev = {**PREV_100, "cniVersion": version}
    if version == "0.4.0":
        prev["ips"] = [{**PREV_100["ips"][0], "version": "4"}]  # type: ignore[index]
    conf = {"cniVersion": version, "name": "n", "prevResult": prev}
    done = execute(launcher, {**FULL_ENV, "CNI_COMMAND": "CHECK"}, json.dumps(conf))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


def test_check_before_0_4_0_is_refused(launcher: Path) -> None:
    done = execute(
        launcher, {**FULL_ENV, "CNI_COMMAND": "CHECK"}, '{"cniVersion":"0.3.1","name":"n"}'
    )
    assert done.returncode == 1
    assert done.stdout == go_indent({"code": 1, "msg": "config version does not allow CHECK"})


def test_del_succeeds_silently_without_netns(launcher: Path) -> None:
    env = {**FULL_ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}
    done = execute(launcher, env, '{"cniVersion":"1.0.0","name":"n"}')
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


def test_del_with_prev_result(launcher: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "prevResult": PREV_100}
    done = execute(launcher, {**FULL_ENV, "CNI_COMMAND": "DEL"}, json.dumps(conf))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


def test_version_is_compact_with_newline_and_ignores_stdin(launcher: Path) -> None:
    done = execute(launcher, {"CNI_COMMAND": "VERSION"}, b"\xff garbage")
    assert done.returncode == 0, done.stderr
    expected = json.dumps({"cniVersion": "1.1.0", "supportedVersions": ALL}, separators=(",", ":"))
    assert done.stdout == expected.encode() + b"\n"


def test_version_discovery_env_of_libcni(launcher: Path) -> None:
    # What GetVersionInfo sends.
    env = {
        "CNI_COMMAND": "VERSION",
        "CNI_CONTAINERID": "",
        "CNI_NETNS": "dummy",
        "CNI_IFNAME": "dummy",
        "CNI_PATH": "dummy",
        "CNI_ARGS": "",
    }
    done = execute(launcher, env, '{"cniVersion":"1.1.0"}')
    assert done.returncode == 0
    assert json.loads(done.stdout)["supportedVersions"] == ALL


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_succeed_silently(launcher: Path, command: str) -> None:
    conf: dict[str, Any] = {"cniVersion": "1.1.0", "name": "n", "type": "passthrough"}
    if command == "GC":
        conf["cni.dev/valid-attachments"] = None
        conf["cni.dev/attachments"] = [{"containerID": "abc", "ifname": "eth0"}]
    # libcni sends the attachment variables empty for GC and STATUS.
    env = {**{k: "" for k in FULL_ENV}, "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    done = execute(launcher, env, json.dumps(conf))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_before_1_1_0_are_refused(launcher: Path, command: str) -> None:
    env = {"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    done = execute(launcher, env, '{"cniVersion":"1.0.0","name":"n"}')
    assert done.returncode == 1
    assert done.stdout == go_indent({"code": 1, "msg": f"config version does not allow {command}"})


def test_empty_command_prints_about_text(launcher: Path) -> None:
    done = execute(launcher, {})
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr == (
        b"CNI plugin passthrough (cnisdk example)\n"
        b"CNI protocol versions supported: " + ", ".join(ALL).encode() + b"\n"
    )


def test_missing_env_is_error_4(launcher: Path) -> None:
    done = execute(launcher, {"CNI_COMMAND": "ADD"}, b"{}")
    assert done.returncode == 1
    assert done.stdout == go_indent(
        {
            "code": 4,
            "msg": "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing",
        }
    )


def test_error_details_are_printed(launcher: Path) -> None:
    env = {**FULL_ENV, "CNI_COMMAND": "ADD"}
    done = execute(launcher, env, '{"cniVersion":"9.9.9","name":"n"}')
    assert done.returncode == 1
    supported = " ".join(f'"{v}"' for v in ALL)
    assert done.stdout == go_indent(
        {
            "code": 1,
            "msg": "incompatible CNI versions",
            "details": f'config is "9.9.9", plugin supports [{supported}]',
        }
    )


def test_launcher_ignores_pythonpath_and_cwd(launcher: Path, tmp_path: Path) -> None:
    # -I: a hostile PYTHONPATH or working directory cannot shadow cnisdk.
    (tmp_path / "cnisdk").mkdir()
    (tmp_path / "cnisdk" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    done = subprocess.run(
        [str(launcher)],
        input=b"",
        env={"CNI_COMMAND": "VERSION", "PATH": PATH, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cniVersion"] == "1.1.0"


# -- stdout protection in exec mode ------------------------------------------------------------

NOISY_PLUGIN = '''
import os
import subprocess
import sys

from cnisdk import Context, NetConf, Plugin, Result


class Noisy(Plugin[NetConf]):
    """Writes to stdout in every way a careless plugin could."""

    async def add(self, ctx: Context[NetConf]) -> Result:
        print("print noise")
        sys.stdout.write("sys.stdout noise\\n")
        sys.stdout.flush()
        os.write(1, b"fd 1 noise\\n")
        subprocess.run(["echo", "child noise"], check=True)
        subprocess.run(["sh", "-c", "echo shell noise >&1; echo shell err >&2"], check=True)
        return Result(cniVersion="1.0.0", ips=[{"address": "10.9.9.9/24"}])

    async def delete(self, ctx: Context[NetConf]) -> None:
        print("delete noise")
        subprocess.run(["echo", "child noise"], check=True)

    async def check(self, ctx: Context[NetConf]) -> None:
        print("check noise")
        raise RuntimeError("check failed")
'''


@pytest.fixture
def noisy_launcher(tmp_path: Path) -> Path:
    (tmp_path / "noisy_plugin_mod.py").write_text(NOISY_PLUGIN)
    entry = PluginEntry("noisy", "noisy_plugin_mod", "Noisy", "test", "0")
    text = render_launcher(entry)
    lines = text.splitlines(keepends=True)
    # With -I the script's directory is not on sys.path: insert it before the imports.
    lines.insert(2, f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n")
    launcher = tmp_path / "bin" / "noisy"
    launcher.parent.mkdir()
    launcher.write_text("".join(lines))
    launcher.chmod(0o755)
    return launcher


def test_stray_output_never_reaches_stdout_on_add(noisy_launcher: Path) -> None:
    done = execute(
        noisy_launcher, {**FULL_ENV, "CNI_COMMAND": "ADD"}, '{"cniVersion":"1.0.0","name":"n"}'
    )
    assert done.returncode == 0, done.stderr
    doc = assert_go_document(done.stdout)
    assert doc == {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}
    for noise in (b"print noise", b"sys.stdout noise", b"fd 1 noise", b"child noise"):
        assert noise in done.stderr
    assert b"shell noise" in done.stderr and b"shell err" in done.stderr


def test_stray_output_never_reaches_stdout_on_del(noisy_launcher: Path) -> None:
    done = execute(
        noisy_launcher, {**FULL_ENV, "CNI_COMMAND": "DEL"}, '{"cniVersion":"1.0.0","name":"n"}'
    )
    assert (done.returncode, done.stdout) == (0, b"")
    assert b"delete noise" in done.stderr and b"child noise" in done.stderr


def test_stray_output_and_a_plugin_exception(noisy_launcher: Path) -> None:
    done = execute(
        noisy_launcher, {**FULL_ENV, "CNI_COMMAND": "CHECK"}, '{"cniVersion":"1.0.0","name":"n"}'
    )
    assert done.returncode == 1
    assert assert_go_document(done.stdout) == {"code": 999, "msg": "check failed"}
    assert b"check noise" in done.stderr
    assert b"Traceback" not in done.stdout


def test_launcher_without_cnisdk_reports_on_stderr(tmp_path: Path) -> None:
    # A launcher whose plugin module vanished: Python fails before the skel runs. A runtime
    # then sees empty stdout and a non-zero exit ("netplugin failed: ..."), never garbage.
    entry = PluginEntry("gone", "module_that_does_not_exist_xyz", "Gone", "test", "0")
    launcher = tmp_path / "gone"
    launcher.write_text(render_launcher(entry))
    launcher.chmod(0o755)
    done = execute(launcher, {**FULL_ENV, "CNI_COMMAND": "ADD"}, b"{}")
    assert done.returncode != 0
    assert done.stdout == b""
    assert b"module_that_does_not_exist_xyz" in done.stderr


# -- cnisdk list ---------------------------------------------------------------------------------


def test_list_shows_plugins_with_versions() -> None:
    done = cnisdk("list")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for plugin_type, distribution in (
        ("passthrough", "cnisdk_examples"),
        ("istio-redirect", "cnisdk_istio_redirect"),
    ):
        line = lines[plugin_type]
        assert distribution in line
        assert "1.0.0" in line and "chained-only" in line


def test_list_json(bin_dir: Path) -> None:
    done = cnisdk("list", "--output", "json", "--bin-dir", str(bin_dir))
    assert done.returncode == 0, done.stderr
    rows = {row["type"]: row for row in json.loads(done.stdout)}
    assert {"passthrough", "istio-redirect"} <= set(rows)
    passthrough = rows["passthrough"]
    assert passthrough["class"] == "cnisdk_examples.passthrough:Passthrough"
    assert passthrough["distribution"] == "cnisdk_examples"
    assert passthrough["version"]
    assert passthrough["cniVersions"] == ALL
    assert passthrough["chained"] is True
    assert passthrough["installed"] is True
    assert rows["istio-redirect"]["installed"] is False


def test_list_text_with_bin_dir(bin_dir: Path) -> None:
    done = cnisdk("list", "--bin-dir", str(bin_dir))
    assert done.returncode == 0
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "[installed]" in lines["passthrough"]
    assert "[not installed]" in lines["istio-redirect"]


def test_render_launcher_rejects_unsafe_names() -> None:
    for module, attr in (("os; import x", "A"), ("m", "A()"), ("m", "")):
        with pytest.raises(ValueError):
            render_launcher(PluginEntry("t", module, attr, "d", "0"))
    with pytest.raises(ValueError):
        render_launcher(PluginEntry("t", "m", "A", "d", "0"), python="/usr/bin/py thon")


def test_marker_is_on_the_second_line() -> None:
    text = render_launcher(PluginEntry("t", "pkg.mod", "Outer.Inner", "d", "1"))
    lines = text.splitlines()
    assert lines[1].startswith(LAUNCHER_MARKER)
    assert lines[-2:] == ["from pkg.mod import Outer", "run(Outer.Inner)"]


def test_launchers_import_only_the_public_api(launcher: Path) -> None:
    imports = [
        line for line in launcher.read_text().splitlines() if line.startswith(("import", "from"))
    ]
    assert imports == [
        "from cnisdk import run",
        "from cnisdk_examples.passthrough import Passthrough",
    ]


def test_launchers_of_earlier_versions_are_still_recognised(tmp_path: Path) -> None:
    # Written by an earlier cnisdk, which imported the private skel module: uninstall and
    # `cnisdk list` must still know them as ours.
    old = tmp_path / "passthrough"
    old.write_text(
        f"#!{sys.executable} -I\n"
        "# cnisdk launcher for CNI plugin type 'passthrough' (cnisdk_examples 0.1.0); "
        "written by `cnisdk install`.\n"
        "from cnisdk._skel import run\n"
        "from cnisdk_examples.passthrough import Passthrough\n"
        "run(Passthrough)\n"
    )
    old.chmod(0o755)
    assert is_launcher(old)
    done = cnisdk("uninstall", "--bin-dir", str(tmp_path), "passthrough")
    assert done.returncode == 0, done.stderr
    assert not old.exists()
    foreign = tmp_path / "passthrough"
    foreign.write_text("#!/bin/sh\n# not ours\nexit 0\n")
    assert not is_launcher(foreign)


def test_internal_errors_reach_the_configured_log_file(
    noisy_launcher: Path, tmp_path: Path
) -> None:
    log_file = tmp_path / "plugin.log"
    conf = {"cniVersion": "1.0.0", "name": "n", "log_level": "debug", "log_file": str(log_file)}
    done = execute(noisy_launcher, {**FULL_ENV, "CNI_COMMAND": "CHECK"}, json.dumps(conf))
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"code": 999, "msg": "check failed"}
    text = log_file.read_text()
    assert "internal error: check failed" in text
    assert "Traceback" in text and "RuntimeError: check failed" in text
    assert b"internal error: check failed" in done.stderr
