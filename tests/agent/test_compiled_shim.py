"""The compiled shim as ``cnisdk`` builds, installs and removes it: a static executable with a
configuration trailer per plugin type, written atomically, recognised as a cnisdk launcher."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from agent_kit import cni_env, run_plugin

from cnisdk._compiled_shim import DEFAULT_PATH, MAGIC, SOURCE, read_trailer
from cnisdk._launcher import is_launcher

CNISDK = Path(sys.executable).parent / "cnisdk"


def cnisdk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CNISDK), *args], capture_output=True, text=True, timeout=300)


def test_the_source_is_clean_c99() -> None:
    done = subprocess.run(
        ["cc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only", SOURCE],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_build_shim_writes_a_static_executable(tmp_path: Path) -> None:
    output = tmp_path / "libexec" / "cnisdk-shim"
    done = cnisdk("build-shim", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"built {output}\n"
    assert stat.S_IMODE(output.stat().st_mode) == 0o755
    ldd = subprocess.run(["ldd", str(output)], capture_output=True, text=True)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    assert sorted(p.name for p in output.parent.iterdir()) == ["cnisdk-shim"]
    # Without its trailer it knows it is not configured, and says so as a CNI error.
    run = subprocess.run([str(output)], env=cni_env("ADD"), capture_output=True, input=b"{}")
    assert run.returncode == 1
    assert json.loads(run.stdout)["code"] == 999
    assert b"no configuration" in run.stdout


def test_build_shim_without_a_compiler_fails_clearly(tmp_path: Path) -> None:
    done = cnisdk("build-shim", "--output", str(tmp_path / "x"), "--cc", "no-such-cc")
    assert done.returncode == 1
    assert done.stderr == "cnisdk build-shim: no C compiler 'no-such-cc' found\n"
    assert list(tmp_path.iterdir()) == []


def test_install_copies_it_per_type_with_a_trailer(tmp_path: Path, compiled_shim: Path) -> None:
    bin_dir = tmp_path / "bin"
    args = ["install", "passthrough", "istio-redirect", "--bin-dir", str(bin_dir)]
    args += ["--agent-socket", "/run/x/agent.sock", "--shim-binary", str(compiled_shim)]
    done = cnisdk(*args, "--python", "/opt/py/bin/python3", "--agent-fallback", "fail")
    assert done.returncode == 0, done.stderr
    assert "(compiled shim for the agent at /run/x/agent.sock)" in done.stdout
    binary = compiled_shim.read_bytes()
    for plugin_type in ("passthrough", "istio-redirect"):
        path = bin_dir / plugin_type
        assert is_launcher(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        data = path.read_bytes()
        assert data.startswith(binary) and data.endswith(MAGIC)
        config = read_trailer(path)
        assert config["type"] == plugin_type
        assert config["socket"] == "/run/x/agent.sock"
        assert config["fallback"] == "fail"
        assert config["python"] == "/opt/py/bin/python3"
        assert config["exec"].startswith("from cnisdk import run\n")
        assert config["header"] == '{"v":2,"op":"request","type":' + json.dumps(plugin_type)
    assert sorted(p.name for p in bin_dir.iterdir()) == ["istio-redirect", "passthrough"]
    # Reinstalling changes nothing; a changed setting is written by rename.
    inode = (bin_dir / "passthrough").stat().st_ino
    assert (
        cnisdk(*args, "--python", "/opt/py/bin/python3", "--agent-fallback", "fail").returncode == 0
    )
    assert (bin_dir / "passthrough").stat().st_ino == inode
    assert cnisdk(*args, "--python", "/opt/py/bin/python3").returncode == 0
    assert (bin_dir / "passthrough").stat().st_ino != inode
    assert read_trailer(bin_dir / "passthrough")["fallback"] == "exec"
    # A configured copy is a fine source too: its trailer is replaced, not stacked.
    again = tmp_path / "again"
    args = ["install", "passthrough", "--bin-dir", str(again), "--agent-socket", "/run/y.sock"]
    assert cnisdk(*args, "--shim-binary", str(bin_dir / "passthrough")).returncode == 0
    assert (again / "passthrough").read_bytes().count(MAGIC) == binary.count(MAGIC) + 1
    assert read_trailer(again / "passthrough")["socket"] == "/run/y.sock"
    done = cnisdk("uninstall", "passthrough", "istio-redirect", "--bin-dir", str(bin_dir))
    assert done.returncode == 0, done.stderr
    assert list(bin_dir.iterdir()) == []


def test_the_installed_copy_runs_its_fallback(tmp_path: Path, compiled_shim: Path) -> None:
    # No agent at the socket: exec mode with this interpreter, same bytes as the launcher.
    args = ["install", "passthrough", "--bin-dir", str(tmp_path / "c")]
    agent = ["--agent-socket", str(tmp_path / "none.sock"), "--shim-binary", str(compiled_shim)]
    assert cnisdk(*args, *agent).returncode == 0
    assert cnisdk("install", "passthrough", "--bin-dir", str(tmp_path / "e")).returncode == 0
    for command in ("VERSION", "ADD"):
        env = cni_env(command)
        stdin = b'{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0"}}'
        via_shim = run_plugin(tmp_path / "c" / "passthrough", env, stdin)
        via_exec = run_plugin(tmp_path / "e" / "passthrough", env, stdin)
        assert (via_shim.stdout, via_shim.returncode) == (via_exec.stdout, via_exec.returncode)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shim", "compiled", "--shim-binary", "/no/such/shim"], "no compiled shim at"),
        (["--shim-binary", "/bin/true"], "is not a cnisdk compiled shim"),
        (["--agent-socket", "/" + "s" * 120], "agent socket path longer than 107 bytes"),
        (["--shim-timeout", "0.1"], "shim answer timeout must be 1 to 86400 s"),
    ],
    ids=["missing", "not-a-shim", "long-socket", "short-timeout"],
)
def test_install_refuses_what_a_shim_could_not_use(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    args = ["install", "passthrough", "--bin-dir", str(tmp_path), "--agent-socket", "/run/a.sock"]
    done = cnisdk(*args, *extra)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_auto_picks_the_compiled_shim_where_it_is_installed(tmp_path: Path) -> None:
    args = ["install", "passthrough", "--bin-dir", str(tmp_path), "--agent-socket", "/run/a.sock"]
    assert cnisdk(*args).returncode == 0
    compiled = (tmp_path / "passthrough").read_bytes().startswith(b"\x7fELF")
    assert compiled == DEFAULT_PATH.is_file()
    assert cnisdk(*args, "--shim", "python").returncode == 0
    assert (tmp_path / "passthrough").read_text().startswith("#!")


def test_a_compiled_shim_is_read_from_proc_self_exe_even_when_renamed(
    tmp_path: Path, compiled_shim: Path
) -> None:
    args = ["install", "passthrough", "--bin-dir", str(tmp_path), "--shim-binary"]
    agent = [str(compiled_shim), "--agent-socket", "/nonexistent/a.sock", "--agent-fallback"]
    assert cnisdk(*args, *agent, "fail").returncode == 0
    linked = tmp_path / "linked"
    os.symlink(tmp_path / "passthrough", linked)
    done = run_plugin(linked, cni_env("VERSION"))
    reason = "connect: No such file or directory"
    assert json.loads(done.stdout) == {
        "code": 11,
        "msg": f"cnisdk agent unavailable at /nonexistent/a.sock: {reason}",
    }


def test_the_image_builds_it_where_install_looks() -> None:
    dockerfile = (Path(__file__).parents[2] / "deploy" / "Dockerfile").read_text()
    build_stage = dockerfile.split("\nFROM ")[1]
    assert "gcc libc6-dev" in build_stage
    # The image's Python is /opt/cnisdk/python: its default location is what it builds into,
    # so the installer in the DaemonSet needs no flag to find the shim.
    assert "RUN /opt/cnisdk/python/bin/cnisdk build-shim \\\n" in build_stage
    assert Path(sys.prefix) / "libexec" / "cnisdk" / "cnisdk-shim" == DEFAULT_PATH
    assert "ldd /opt/cnisdk/python/libexec/cnisdk/cnisdk-shim" in build_stage
    assert "COPY --from=build /opt/cnisdk/python /opt/cnisdk/python" in dockerfile
