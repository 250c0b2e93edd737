"""The agent and its shims without network namespaces: exec-mode equivalence, fallbacks,
timeouts, cancellation, graceful shutdown, the socket's permissions, peer credentials and
health. Every test that runs a shim runs with both the Python and the compiled shim."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from agent_kit import (
    AgentProcess,
    chained_config,
    cni_env,
    run_plugin,
    write_exec_launchers,
    write_shims,
)

from cnisdk._agent_protocol import encode_frame, request_health
from cnisdk._launcher import is_launcher

TYPES = ["passthrough", "boom", "slow", "netns"]
PLAIN = b'{"cniVersion":"1.0.0","name":"n"}'
OWN_NETNS = {"CNI_NETNS": "/proc/self/ns/net"}


@pytest.fixture(scope="module")
def agent(sock_dir: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(sock_dir / "agent.sock", args=["--health", "127.0.0.1:0"])
    proc.wait_ready()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def bins(
    sock_dir: Path, agent: AgentProcess, shim_kind: str, shim_binary: Path | None
) -> dict[str, Path]:
    dirs = {name: sock_dir / f"{name}-{shim_kind}" for name in ("shim", "fail", "nobody")}
    dirs["exec"] = sock_dir / "exec"
    if not dirs["exec"].exists():
        write_exec_launchers(dirs["exec"], TYPES)
    absent = sock_dir / "absent.sock"
    write_shims(dirs["shim"], agent.socket_path, TYPES, shim_binary=shim_binary)
    write_shims(dirs["fail"], absent, ["passthrough"], fallback="fail", shim_binary=shim_binary)
    write_shims(dirs["nobody"], absent, ["passthrough"], fallback="exec", shim_binary=shim_binary)
    return dirs


CASES = {
    "add": ("passthrough", cni_env("ADD"), chained_config("passthrough")),
    "add-0.3.1": ("passthrough", cni_env("ADD"), chained_config("passthrough", "0.3.1")),
    "del": ("passthrough", cni_env("DEL"), chained_config("passthrough")),
    "check": ("passthrough", cni_env("CHECK"), chained_config("passthrough")),
    "version": ("passthrough", cni_env("VERSION"), b""),
    "about": ("passthrough", {"PATH": "/usr/bin:/bin"}, b""),
    "missing-env": ("passthrough", {"CNI_COMMAND": "ADD", "CNI_PATH": "/x"}, b"{}"),
    "bad-version": ("passthrough", cni_env("ADD"), chained_config("passthrough", "9.9.9")),
    "bad-json": ("passthrough", cni_env("ADD"), b'{"cniVersion": "1.0.0", '),
    "unknown-command": ("passthrough", cni_env("FROB"), chained_config("passthrough")),
    "not-chained": ("passthrough", cni_env("ADD"), b'{"cniVersion":"1.0.0","name":"n"}'),
    "bad-name": ("passthrough", cni_env("ADD"), b'{"cniVersion":"1.0.0","name":"a/b"}'),
    "exception": ("boom", cni_env("ADD"), b'{"cniVersion":"1.0.0","name":"n"}'),
    "bad-container-id": ("passthrough", cni_env("DEL", CNI_CONTAINERID="a b"), b"{}"),
    "own-netns": ("netns", cni_env("ADD", **OWN_NETNS), PLAIN),
    "own-netns-override": (
        "netns",
        cni_env("ADD", **OWN_NETNS, CNI_NETNS_OVERRIDE="true"),
        PLAIN,
    ),
    # Environment values need not be UTF-8: they reach the plugin as exec mode sees them.
    "undecodable-env": (
        "passthrough",
        {**cni_env("DEL"), "CNI_CONTAINERID": b"ctr-\xff\xfe"},  # type: ignore[dict-item]
        chained_config("passthrough"),
    ),
    "empty-stdin": ("passthrough", cni_env("ADD"), b""),
    # More than a socket buffer (and, on fallback, the memfd) holds in one go.
    "big-config": ("passthrough", cni_env("ADD"), chained_config("passthrough", pad="x" * 2**21)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_shim_agent_and_exec_mode_are_byte_identical(case: str, bins: dict[str, Path]) -> None:
    plugin_type, env, stdin = CASES[case]
    via_exec = run_plugin(bins["exec"] / plugin_type, env, stdin)
    via_agent = run_plugin(bins["shim"] / plugin_type, env, stdin)
    assert (via_agent.stdout, via_agent.returncode) == (via_exec.stdout, via_exec.returncode)
    if case == "about":
        assert via_agent.stderr == via_exec.stderr
        assert b"CNI protocol versions supported" in via_agent.stderr
    if plugin_type == "passthrough":
        # Falling back to exec mode (no agent) gives the same bytes too, stdin included.
        fallback = run_plugin(bins["nobody"] / plugin_type, env, stdin)
        assert (fallback.stdout, fallback.returncode) == (via_exec.stdout, via_exec.returncode)


def test_overridden_own_netns_reaches_the_plugin_through_the_agent(
    bins: dict[str, Path],
) -> None:
    # CNI_NETNS is the agent's own namespace: refused without the override; with it, the
    # plugin gets a handle that runs code there (the skel decided, ctx.netns does not again).
    env = cni_env("ADD", **OWN_NETNS)
    refused = run_plugin(bins["shim"] / "netns", env, PLAIN)
    assert (refused.returncode, json.loads(refused.stdout)["code"]) == (1, 8)
    done = run_plugin(bins["shim"] / "netns", {**env, "CNI_NETNS_OVERRIDE": "1"}, PLAIN)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["interfaces"] == [{"name": "inside"}]


def test_version_and_about_read_no_stdin(bins: dict[str, Path]) -> None:
    # A runtime (or a terminal) may leave stdin open: VERSION and the about text must not
    # wait for it, in exec mode or through a shim.
    for env in (cni_env("VERSION"), {"PATH": "/usr/bin:/bin"}):
        outputs = set()
        for launcher in (bins["exec"], bins["shim"], bins["nobody"]):
            with subprocess.Popen(
                [str(launcher / "passthrough")],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ) as proc:
                assert proc.wait(30) == 0  # stdin is still open
                assert proc.stdout is not None and proc.stderr is not None
                outputs.add((proc.stdout.read(), proc.stderr.read()))
                assert proc.stdin is not None
                proc.stdin.close()
        assert len(outputs) == 1, outputs


def test_requests_really_went_through_the_agent(agent: AgentProcess, bins: dict[str, Path]) -> None:
    before = request_health(agent.socket_path)["served"]
    done = run_plugin(
        bins["shim"] / "passthrough",
        cni_env("ADD", CNI_CONTAINERID="seen-1"),
        chained_config("passthrough"),
    )
    assert done.returncode == 0
    assert request_health(agent.socket_path)["served"] == before + 1
    record = next(e for e in agent.events() if e.get("container_id") == "seen-1")
    assert record["event"] == "request"
    assert record["type"] == "passthrough" and record["command"] == "ADD"
    assert record["exit_code"] == 0 and record["duration_ms"] >= 0


def test_request_log_comes_back_on_stderr(bins: dict[str, Path]) -> None:
    env = cni_env("ADD", CNISDK_LOG_LEVEL="info", CNI_CONTAINERID="logged")
    done = run_plugin(bins["shim"] / "passthrough", env, chained_config("passthrough"))
    assert done.returncode == 0
    assert b"ADD container=logged ifname=eth0" in done.stderr


def test_fallback_fail_answers_code_11(sock_dir: Path, bins: dict[str, Path]) -> None:
    done = run_plugin(bins["fail"] / "passthrough", cni_env("ADD"), chained_config("passthrough"))
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["code"] == 11
    assert doc["msg"].startswith(f"cnisdk agent unavailable at {sock_dir / 'absent.sock'}: ")
    assert done.stdout.startswith(b'{\n    "code": 11,') and not done.stdout.endswith(b"\n")


def test_shim_needs_nothing_but_the_interpreter_or_libc(
    bins: dict[str, Path], shim_kind: str
) -> None:
    shim = bins["shim"] / "passthrough"
    assert is_launcher(shim)
    if shim_kind == "compiled":
        done = subprocess.run(["ldd", str(shim)], capture_output=True, text=True, check=False)
        assert "not a dynamic executable" in done.stdout + done.stderr
        return
    text = shim.read_text()
    assert text.splitlines()[0].endswith(" -IS")
    imports = {line.split()[1] for line in text.splitlines() if line.startswith(("import", "from"))}
    # Modules built into the interpreter or an extension module at most: no json, struct,
    # socket, os (and no cnisdk: -S leaves site-packages out).
    assert imports == {"_socket", "posix", "time"}


def test_unserved_type_falls_back_to_exec(
    sock_dir: Path, agent: AgentProcess, shim_kind: str, shim_binary: Path | None
) -> None:
    # An agent serving only `slow` does not know passthrough: the shim runs it in exec mode.
    only = AgentProcess(sock_dir / f"only-{shim_kind}.sock", args=["--types", ""])
    only.wait_ready()
    try:
        bin_dir = sock_dir / f"only-bin-{shim_kind}"
        write_shims(bin_dir, only.socket_path, ["passthrough"], shim_binary=shim_binary)
        done = run_plugin(bin_dir / "passthrough", cni_env("ADD"), chained_config("passthrough"))
        assert done.returncode == 0 and json.loads(done.stdout)["ips"]
        assert any(e["event"] == "unserved" for e in only.events())
    finally:
        assert only.stop() == 0


def test_request_timeout_answers_try_again_later(
    sock_dir: Path, shim_kind: str, shim_binary: Path | None
) -> None:
    quick = AgentProcess(sock_dir / f"timeout-{shim_kind}.sock", args=["--request-timeout", "0.5"])
    quick.wait_ready()
    try:
        bin_dir = sock_dir / f"timeout-bin-{shim_kind}"
        write_shims(bin_dir, quick.socket_path, ["slow"], fallback="fail", shim_binary=shim_binary)
        started = time.monotonic()
        done = run_plugin(bin_dir / "slow", cni_env("ADD"), chained_config("slow", sleep=30))
        assert time.monotonic() - started < 5
        assert done.returncode == 1
        doc = json.loads(done.stdout)
        assert doc["code"] == 11 and "timed out after 0.5 s" in doc["msg"]
        assert any(e["event"] == "timeout" for e in quick.events())
    finally:
        assert quick.stop() == 0


def _raw_request(path: Path, plugin_type: str, env: dict[str, str], stdin: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    header = json.dumps({"v": 2, "op": "request", "type": plugin_type}).encode()
    environ = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    sock.sendall(encode_frame(header) + encode_frame(environ) + encode_frame(stdin))
    return sock


def _frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        size = int.from_bytes(data[:4], "big")
        frames.append(data[4 : 4 + size])
        data = data[4 + size :]
    return frames


def _answer(path: Path, request: bytes) -> list[bytes]:
    """Send raw bytes, half-close, and split what comes back into frames."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        # An agent that closes without reading all we sent resets instead of ending.
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return _frames(data)


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_client_disconnect_cancels_the_request(agent: AgentProcess, sock_dir: Path) -> None:
    marker = sock_dir / "cancel.marker"
    env = cni_env("ADD", CNI_CONTAINERID="gone-1")
    sock = _raw_request(
        agent.socket_path, "slow", env, chained_config("slow", sleep=30, marker=str(marker))
    )
    _wait_for(marker)
    sock.close()
    deadline = time.monotonic() + 5
    while not any(e.get("container_id") == "gone-1" for e in agent.events()):
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.05)
    record = next(e for e in agent.events() if e.get("container_id") == "gone-1")
    assert record["event"] == "disconnect" and record["cancelled"] is True
    assert request_health(agent.socket_path)["in_flight"] == 0


def test_bad_requests_are_refused(agent: AgentProcess) -> None:
    # Version 2 (and anything without a usable version) is answered in text ...
    for header in (b"[1]", b'{"v": 2, "op": "request"}', b'{"v": 3, "op": "request"}', b"nope"):
        (head,) = _answer(agent.socket_path, encode_frame(header) + encode_frame(b""))
        assert head.startswith(b"bad-request "), head
    # ... version 1 in its own JSON.
    header = b'{"v": 1, "op": "request"}'
    (head,) = _answer(agent.socket_path, encode_frame(header) + encode_frame(b""))
    assert json.loads(head) == {"v": 1, "status": "bad-request", "error": "no plugin type"}


def test_protocol_version_1_is_still_served(agent: AgentProcess, bins: dict[str, Path]) -> None:
    # Shims written by an earlier cnisdk speak version 1 until the installer replaces them.
    env = cni_env("ADD", CNI_CONTAINERID="v1-client")
    stdin = chained_config("passthrough")
    header = json.dumps({"v": 1, "op": "request", "type": "passthrough", "env": env}).encode()
    head, out, _err = _answer(agent.socket_path, encode_frame(header) + encode_frame(stdin))
    assert json.loads(head) == {"v": 1, "status": "ok", "exit_code": 0}
    assert out == run_plugin(bins["exec"] / "passthrough", env, stdin).stdout


def test_stdin_closed_answers_code_5_as_go_does(bins: dict[str, Path]) -> None:
    # Go's skel: `error reading from stdin: read /dev/stdin: bad file descriptor`, code 5;
    # Debian's Go tuning answers exactly that when fd 0 is closed.
    env = cni_env("ADD")

    def closed_stdin(path: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(path)],
            env=env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.close(0),
            timeout=30,
            check=False,
        )

    expected = {"code": 5, "msg": "error reading from stdin: read /dev/stdin: bad file descriptor"}
    go = closed_stdin(Path("/usr/lib/cni/tuning"))
    assert (json.loads(go.stdout), go.returncode) == (expected, 1)
    for launcher in (bins["exec"], bins["shim"], bins["nobody"]):
        done = closed_stdin(launcher / "passthrough")
        assert (done.stdout, done.returncode) == (go.stdout, 1), launcher
        assert b"Traceback" not in done.stderr


def test_health_over_http_and_socket(agent: AgentProcess) -> None:
    doc = request_health(agent.socket_path)
    assert doc["status"] == "ok" and {"passthrough", "istio-redirect", "slow"} <= set(doc["types"])
    line = next(e for e in agent.events() if e["event"] == "listening")
    assert line["socket"] == str(agent.socket_path)
    port = line["health_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        assert answer.status == 200
        assert json.loads(answer.read())["pid"] == agent.proc.pid


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def test_socket_is_owner_only(
    agent: AgentProcess, bins: dict[str, Path], shim_binary: Path | None
) -> None:
    st = os.stat(agent.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid() == 0
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
    )
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    done = subprocess.run([*nobody, "/usr/bin/python3", "-c", probe, str(agent.socket_path)])
    assert done.returncode == 3
    # A shim run by another user cannot reach the agent either: with fallback "fail" it says so.
    fail_bin = bins["fail"].with_name(bins["fail"].name + "-nobody")
    write_shims(
        fail_bin, agent.socket_path, ["passthrough"], fallback="fail", shim_binary=shim_binary
    )
    done = subprocess.run(
        [*nobody, str(fail_bin / "passthrough")], env=cni_env("VERSION"), capture_output=True
    )
    assert json.loads(done.stdout) == {
        "code": 11,
        "msg": f"cnisdk agent unavailable at {agent.socket_path}: connect: Permission denied",
    }


@contextlib.contextmanager
def _agent_with_shim(
    sock_dir: Path, name: str, args: list[str], shim_binary: Path | None
) -> Iterator[tuple[AgentProcess, Path]]:
    """An agent started with ``args`` and a passthrough shim for it (fallback "fail")."""
    agent = AgentProcess(sock_dir / f"{name}.sock", args=args)
    agent.wait_ready()
    bin_dir = sock_dir / f"{name}-bin"
    write_shims(bin_dir, agent.socket_path, ["passthrough"], "fail", shim_binary=shim_binary)
    try:
        yield agent, bin_dir / "passthrough"
    finally:
        assert agent.stop() == 0


def _version_as_nobody(shim: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*NOBODY, str(shim)], env=cni_env("VERSION"), capture_output=True)


def test_peer_credentials_are_checked_not_only_the_file_mode(
    sock_dir: Path, shim_kind: str, shim_binary: Path | None
) -> None:
    with _agent_with_shim(sock_dir, f"strict-{shim_kind}", [], shim_binary) as (strict, shim):
        # An operator loosened the socket's mode: other users can connect, and are refused.
        strict.socket_path.chmod(0o666)
        served = request_health(strict.socket_path)["served"]
        done = _version_as_nobody(shim)
        assert json.loads(done.stdout) == {
            "code": 11,
            "msg": f"cnisdk agent unavailable at {strict.socket_path}: refused: peer uid is "
            "not allowed to use this agent (cnisdk agent --allow-uid)",
        }
        assert request_health(strict.socket_path)["served"] == served
        refused = [e for e in strict.events() if e["event"] == "refused"]
        assert refused and refused[-1]["uid"] == 65534 and refused[-1]["gid"] == 65534
        # Root is served through the same socket.
        done = run_plugin(shim, cni_env("VERSION"))
        assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.1.0"


def test_allow_uid_serves_that_user(
    sock_dir: Path, bins: dict[str, Path], shim_kind: str, shim_binary: Path | None
) -> None:
    args = ["--allow-uid", "65534"]
    with _agent_with_shim(sock_dir, f"allow-{shim_kind}", args, shim_binary) as (allowed, shim):
        assert stat.S_IMODE(os.stat(allowed.socket_path).st_mode) == 0o666
        served = request_health(allowed.socket_path)["served"]
        done = _version_as_nobody(shim)
        via_exec = run_plugin(bins["exec"] / "passthrough", cni_env("VERSION"))
        assert (done.stdout, done.returncode) == (via_exec.stdout, 0), done.stdout
        assert request_health(allowed.socket_path)["served"] == served + 1
        assert not any(e["event"] == "refused" for e in allowed.events())


def test_refuses_a_live_socket_and_replaces_a_stale_one(
    agent: AgentProcess, sock_dir: Path
) -> None:
    second = AgentProcess(agent.socket_path)
    assert second.proc.wait(20) == 1
    assert "already serving" in second.log()
    stale = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: what a killed agent leaves
    fresh = AgentProcess(stale)
    try:
        assert fresh.wait_ready()["status"] == "ok"
    finally:
        assert fresh.stop() == 0
    assert not stale.exists()
    plain = sock_dir / "plain-file"
    plain.write_text("not a socket")
    third = AgentProcess(plain)
    assert third.proc.wait(20) == 1 and "not a socket" in third.log()
    assert plain.read_text() == "not a socket"


def test_graceful_shutdown_finishes_the_in_flight_request(
    sock_dir: Path, shim_kind: str, shim_binary: Path | None
) -> None:
    draining = AgentProcess(sock_dir / f"drain-{shim_kind}.sock")
    draining.wait_ready()
    bin_dir = sock_dir / f"drain-bin-{shim_kind}"
    write_shims(bin_dir, draining.socket_path, ["slow"], fallback="fail", shim_binary=shim_binary)
    marker = sock_dir / f"drain-{shim_kind}.marker"
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            run_plugin,
            bin_dir / "slow",
            cni_env("ADD"),
            chained_config("slow", sleep=1.5, marker=str(marker)),
        )
        _wait_for(marker)
        draining.proc.terminate()
        # New requests find no agent at once (the socket is gone) ...
        deadline = time.monotonic() + 1
        while draining.socket_path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = run_plugin(bin_dir / "slow", cni_env("VERSION"))
        assert json.loads(refused.stdout)["code"] == 11
        # ... and the one in flight still completes.
        done = pending.result(30)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ips"][0]["address"] == "10.1.2.3/24"
    assert draining.proc.wait(10) == 0
    draining.stop()
    events = [e["event"] for e in draining.events()]
    assert events.index("shutdown") < events.index("request") < events.index("stopped")
