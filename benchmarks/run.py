"""Per-invocation CNI ADD latency: cnisdk plugins against the Go peer and the floors.

Run as root from the repository (not part of the test suite)::

    .venv/bin/python benchmarks/run.py [--repeat N] [--quick]

Every scenario is one process exec'd the way a container runtime execs a plugin. Scenarios run
interleaved round-robin (one iteration of each per round, in a rotating order), so load on the
machine affects them alike and their figures are comparable. Anything an iteration needs that
a runtime would have ready (a fresh network namespace, the pod in the API) is made before and
removed after the timed region. Results go to ``benchmarks/results/latest.md`` (Markdown table
with machine info) and ``latest.png`` (box plot); the docs show both.

Agent-mode rows need ``cnisdk agent`` and shim launchers; without them they say
"not available" instead of showing numbers.

``--runtime-view`` measures instead what each chain adds per pod under a private containerd
driven over CRI (``benchmarks/cri.py``), into ``benchmarks/results/runtime.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from report import (
    AGENT_CPU_RUNS,
    BARE_BURST,
    CONCURRENT,
    GO_TUNING,
    machine_info,
    plot,
    write_report,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DOCS_IMG = REPO / "docs" / "img" / "benchmarks.png"
PYTHON = sys.executable
NETNS_DIR = Path("/run/netns")
NODE = "bench-node"
"""The agent's node (``NODE_NAME``, as the DaemonSet sets it): its pod cache LISTs/WATCHes it."""

sys.path.insert(0, str(REPO / "plugins" / "istio_redirect" / "tests"))


# --------------------------------------------------------------------------- helpers


def _die(message: str) -> NoReturn:
    print(f"benchmarks: {message}", file=sys.stderr)
    raise SystemExit(2)


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _enter_netns(path: str) -> Callable[[], None]:
    """A preexec_fn that moves the child into the namespace at ``path`` before exec."""

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            os._exit(126)
        os.close(fd)

    return enter


_NETNS_PREFIX = f"cnisdk-bench-{os.getpid()}-"
_created: set[str] = set()


def new_netns() -> str:
    name = f"{_NETNS_PREFIX}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    _created.add(name)
    return str(NETNS_DIR / name)


def del_netns(path: str) -> None:
    name = os.path.basename(path)
    subprocess.run(["ip", "netns", "del", name], check=False, stderr=subprocess.DEVNULL)
    _created.discard(name)


def cleanup_netns() -> None:
    for name in list(_created):
        del_netns(str(NETNS_DIR / name))


def cni_env(netns: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "bench" + secrets.token_hex(6),
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    env.update(extra)
    return env


def prev_result(sandbox: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:09:00:05", "sandbox": sandbox}],
        "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
        "dns": {},
    }


def conf(plugin_type: str, sandbox: str, **fields: Any) -> bytes:
    doc: dict[str, Any] = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": plugin_type}
    doc.update(fields)
    doc["prevResult"] = prev_result(sandbox)
    return json.dumps(doc).encode()


@dataclass
class Run:
    """One timed invocation: argv, environment, stdin and optional preexec."""

    argv: list[str]
    env: dict[str, str]
    stdin: bytes = b""
    preexec: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    expect_json: bool = True


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def timed(run: Run) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall ms, CPU ms of the process and its children, result) of one invocation.

    Runs are sequential, so the growth of this process's reaped children's CPU time is the
    invocation's own.
    """
    cpu = _children_cpu_ms()
    start = time.perf_counter_ns()
    done = subprocess.run(
        run.argv,
        input=run.stdin,
        env=run.env,
        capture_output=True,
        preexec_fn=run.preexec,
        check=False,
    )
    elapsed = (time.perf_counter_ns() - start) / 1e6
    return elapsed, _children_cpu_ms() - cpu, done


def check(name: str, done: subprocess.CompletedProcess[bytes], expect_json: bool) -> None:
    if done.returncode != 0:
        _die(
            f"{name}: exit {done.returncode}\nstdout: {done.stdout.decode(errors='replace')}\n"
            f"stderr: {done.stderr.decode(errors='replace')[-2000:]}"
        )
    if expect_json:
        doc = json.loads(done.stdout)
        if "code" in doc:
            _die(f"{name}: CNI error {doc}")


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    label: str
    group: str
    prepare: Callable[[], Run] | None
    unavailable: str = ""
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """CPU time of the invoked process (and anything it ran), per invocation."""


@dataclass
class BinDirs:
    """Launcher directories: exec mode, and agent shims of each kind (``None``: unavailable)."""

    exec_dir: Path
    python_shims: Path | None = None
    compiled_shims: Path | None = None
    no_agent: str = ""
    no_compiled: str = ""


def _install(tmp: Path, name: str, *extra: str) -> Path:
    """``cnisdk install passthrough istio-redirect`` into ``tmp/name``, as an operator would."""
    directory = tmp / name
    subprocess.run(
        [
            str(Path(PYTHON).parent / "cnisdk"),
            "install",
            "passthrough",
            "istio-redirect",
            "--bin-dir",
            str(directory),
            *extra,
        ],
        check=True,
        capture_output=True,
    )
    return directory


def _bin_dirs(tmp: Path) -> BinDirs:
    """Exec launchers, and both kinds of agent shims when the agent and a compiler exist."""
    dirs = BinDirs(_install(tmp, "bin-exec"))
    probe = subprocess.run(
        [str(Path(PYTHON).parent / "cnisdk"), "agent", "--help"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        dirs.no_agent = dirs.no_compiled = "`cnisdk agent` not available"
        return dirs
    # fallback "fail": an unreachable agent must show as an error, never as exec timings.
    agent = ["--agent-socket", str(tmp / "agent.sock"), "--agent-fallback", "fail"]
    dirs.python_shims = _install(tmp, "bin-python-shim", *agent, "--shim", "python")
    shim = tmp / "cnisdk-shim"
    built = subprocess.run(
        [str(Path(PYTHON).parent / "cnisdk"), "build-shim", "--output", str(shim)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        dirs.no_compiled = built.stderr.strip().splitlines()[-1] if built.stderr else "no shim"
        return dirs
    dirs.compiled_shims = _install(tmp, "bin-compiled-shim", *agent, "--shim-binary", str(shim))
    return dirs


class Agent:
    """A ``cnisdk agent`` process for the agent-mode rows."""

    def __init__(self, socket_path: Path, log: Path) -> None:
        self.socket_path = socket_path
        self._log = log.open("wb")
        # As deploy/kubernetes does: NODE_NAME from spec.nodeName feeds the pod cache.
        self.proc = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "cnisdk"),
                "agent",
                "--socket",
                str(socket_path),
                "--types",
                "passthrough,istio-redirect",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_NAME": NODE},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _die(f"cnisdk agent exited with {self.proc.returncode}; see {log}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(socket_path))
                return
            time.sleep(0.05)
        _die("cnisdk agent did not start listening within 30 s")

    def cpu_ms(self) -> float:
        """The agent's CPU time so far (user + system; clock-tick resolution)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the agent process in MiB."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def build_scenarios(
    tmp: Path,
    dirs: BinDirs,
    kubeconfig: str,
    pod: dict[str, Any],
    tuning_ns: str,
    elsewhere: dict[str, Any],
) -> list[Scenario]:
    from cnisdk_istio_redirect._iptables_rules import render_iptables
    from cnisdk_istio_redirect._redirect import RedirectSpec

    rules = render_iptables(RedirectSpec(), 4).encode()
    restore = shutil.which("iptables-restore")
    if restore is None:
        _die("iptables-restore not found")

    def k8s_args(pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};K8S_POD_NAME={meta['name']};"
            f"K8S_POD_INFRA_CONTAINER_ID={secrets.token_hex(8)};K8S_POD_UID={meta['uid']}"
        )

    xtables_lock = str(tmp / "xtables.lock")

    def go_tuning() -> Run:
        return Run([GO_TUNING], cni_env(tuning_ns), conf("tuning", tuning_ns))

    def iptables_floor() -> Run:
        ns = new_netns()
        env = {"PATH": os.environ.get("PATH", ""), "XTABLES_LOCKFILE": xtables_lock}
        return Run(
            [restore, "--noflush"],
            env,
            rules,
            preexec=_enter_netns(ns),
            after=lambda: del_netns(ns),
            expect_json=False,
        )

    def python_cmd(code: str, *flags: str) -> Callable[[], Run]:
        return lambda: Run([PYTHON, "-I", *flags, "-c", code], {}, expect_json=False)

    def passthrough(bin_dir: Path) -> Callable[[], Run]:
        return lambda: Run(
            [str(bin_dir / "passthrough")], cni_env(tuning_ns), conf("passthrough", tuning_ns)
        )

    def istio(bin_dir: Path, target: dict[str, Any] = pod) -> Callable[[], Run]:
        def make() -> Run:
            ns = new_netns()
            env = cni_env(ns, CNI_ARGS=k8s_args(target), XTABLES_LOCKFILE=xtables_lock)
            stdin = conf(
                "istio-redirect",
                ns,
                kubeconfig=kubeconfig,
                kube_api_attempts=1,
                kube_api_timeout=5.0,
            )
            return Run([str(bin_dir / "istio-redirect")], env, stdin, after=lambda: del_netns(ns))

        return make

    py_dir, c_dir, exec_dir = dirs.python_shims, dirs.compiled_shims, dirs.exec_dir
    no_compiled = dirs.no_compiled or dirs.no_agent
    return [
        Scenario("go-tuning", "Go `tuning` (chained, real netns)", "peer", go_tuning),
        Scenario(
            "iptables-restore",
            "bare `iptables-restore --noflush` (istio rules, fresh netns)",
            "floor",
            iptables_floor,
        ),
        Scenario(
            "python-S",
            "`python -I -S -c pass` (bare interpreter, no site)",
            "floor",
            python_cmd("pass", "-S"),
        ),
        Scenario("python", "`python -I -c pass` (bare interpreter)", "context", python_cmd("pass")),
        Scenario(
            "import-floor",
            'import floor: `python -I -c "import anyio, pydantic"`',
            "floor",
            python_cmd("import anyio, pydantic"),
        ),
        Scenario("exec-passthrough", "`passthrough`, exec mode", "exec", passthrough(exec_dir)),
        Scenario(
            "exec-istio",
            "`istio-redirect`, exec mode (API lookup + rules)",
            "exec",
            istio(exec_dir),
        ),
        Scenario(
            "agent-passthrough",
            "`passthrough`, agent mode, Python shim",
            "agent",
            passthrough(py_dir) if py_dir else None,
            dirs.no_agent,
        ),
        Scenario(
            "agent-passthrough-compiled",
            "`passthrough`, agent mode, compiled shim",
            "agent",
            passthrough(c_dir) if c_dir else None,
            no_compiled,
        ),
        Scenario(
            "agent-istio",
            "`istio-redirect`, agent mode, Python shim (pod from the watch cache + rules)",
            "agent",
            istio(py_dir) if py_dir else None,
            dirs.no_agent,
        ),
        Scenario(
            "agent-istio-compiled",
            "`istio-redirect`, agent mode, compiled shim (pod from the watch cache + rules)",
            "agent",
            istio(c_dir) if c_dir else None,
            no_compiled,
        ),
        Scenario(
            "agent-istio-miss",
            "`istio-redirect`, agent mode, compiled shim, pod-cache miss (API GET + rules)",
            "agent",
            istio(c_dir, elsewhere) if c_dir else None,
            no_compiled,
        ),
    ]


def _once(scenario: Scenario) -> None:
    assert scenario.prepare is not None
    run = scenario.prepare()
    try:
        _, _, done = timed(run)
    finally:
        if run.after is not None:
            run.after()
    check(scenario.key, done, run.expect_json)


# --------------------------------------------------------------------------- concurrency


@dataclass
class ConcurrentResult:
    shim: str
    latencies: list[float]
    failures: int
    wall_ms: float
    rss_mib: float
    peak_rss_mib: float


def concurrent_adds(agent: Agent, argv: list[str], tuning_ns: str, shim: str) -> ConcurrentResult:
    """``CONCURRENT`` passthrough ADDs through the agent at once, as a runtime starting pods.

    One thread spawns every shim (``posix_spawn``: no fork of this process's memory, no
    thread per child), each with its config on stdin from a file and its stdout into a file,
    then reaps them as they exit. A latency is spawn to exit, as the runtime sees it.
    """
    with tempfile.TemporaryDirectory(prefix="cnisdk-bench-c-") as tmp_name:
        tmp = Path(tmp_name)
        stdin_path = tmp / "stdin"
        stdin_path.write_bytes(conf("passthrough", tuning_ns))
        env = cni_env(tuning_ns)
        started: dict[int, tuple[float, Path]] = {}
        null = os.open("/dev/null", os.O_WRONLY)
        begin = time.perf_counter()
        try:
            for i in range(CONCURRENT):
                out_path = tmp / f"out-{i}"
                stdin_fd = os.open(stdin_path, os.O_RDONLY)
                out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o600)
                env["CNI_CONTAINERID"] = f"concurrent{i}"
                spawned = time.perf_counter()
                pid = os.posix_spawn(
                    argv[0],
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                        (os.POSIX_SPAWN_DUP2, out_fd, 1),
                        (os.POSIX_SPAWN_DUP2, null, 2),
                    ],
                )
                os.close(stdin_fd)
                os.close(out_fd)
                started[pid] = (spawned, out_path)
            latencies: list[float] = []
            failures = 0
            while started:
                pid, status = os.wait()
                ended = time.perf_counter()
                spawned, out_path = started.pop(pid)
                latencies.append((ended - spawned) * 1000)
                try:
                    ok = os.waitstatus_to_exitcode(status) == 0
                    ok = ok and "code" not in json.loads(out_path.read_bytes())
                except ValueError:
                    ok = False
                failures += 0 if ok else 1
        finally:
            os.close(null)
        wall = (time.perf_counter() - begin) * 1000
    rss, peak = agent.rss_mib()
    return ConcurrentResult(shim, sorted(latencies), failures, wall, rss, peak)


def agent_cpu_per_add(agent: Agent, launcher: Path, tuning_ns: str) -> float:
    """The agent's CPU time per passthrough ADD, over ``AGENT_CPU_RUNS`` ADDs in a row."""
    run = Run([str(launcher)], cni_env(tuning_ns), conf("passthrough", tuning_ns))
    before = agent.cpu_ms()
    for _ in range(AGENT_CPU_RUNS):
        _, _, done = timed(run)
        check("agent CPU", done, True)
    return (agent.cpu_ms() - before) / AGENT_CPU_RUNS


def bursts(agent: Agent, dirs: BinDirs, tuning_ns: str, count: int) -> list[ConcurrentResult]:
    """``count`` bursts per shim kind, alternating kinds; latencies pooled per kind."""
    # The floor for the Python shim: the same interpreter started as often, doing nothing.
    bare = [PYTHON, "-I", "-S", "-c", "import posix; posix.write(1, b'{}')"]
    kinds = [(BARE_BURST, bare)] + [
        (name, [str(directory / "passthrough")])
        for name, directory in (
            ("Python shim", dirs.python_shims),
            ("compiled shim", dirs.compiled_shims),
        )
        if directory is not None
    ]
    runs: dict[str, list[ConcurrentResult]] = {}
    for burst in range(count):
        shift = burst % len(kinds)
        for name, argv in kinds[shift:] + kinds[:shift]:
            result = concurrent_adds(agent, argv, tuning_ns, name)
            runs.setdefault(name, []).append(result)
            time.sleep(0.5)  # let the machine settle before the next burst
        print(f"burst {burst + 1}/{count}", file=sys.stderr)
    pooled = []
    for name, results in runs.items():
        pooled.append(
            ConcurrentResult(
                name,
                sorted(x for r in results for x in r.latencies),
                sum(r.failures for r in results),
                statistics.median(r.wall_ms for r in results),
                results[-1].rss_mib,
                max(r.peak_rss_mib for r in results),
            )
        )
    return pooled


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def kube_api(*pods: dict[str, Any]) -> Iterator[Any]:
    """The API stand-in: pod GET for exec mode and misses, LIST + WATCH for the agent's cache."""
    with importlib.import_module("watch_stub").WatchStub() as stub:
        for pod in pods:
            stub.put(pod)
        yield stub


def wait_for_pod_cache(stub: Any, warm_up: Callable[[], None]) -> None:
    """One untimed agent ADD starts the agent's pod cache; wait until its watch is open."""
    warm_up()
    deadline = time.monotonic() + 30
    while stub.watching < 1:
        if time.monotonic() > deadline:
            _die("the agent's pod cache did not start watching within 30 s")
        time.sleep(0.05)


def _kube_stub() -> Any:
    """The istio-redirect tests' realistic injected pod (and their GET-only stand-in)."""
    return importlib.import_module("kube_stub")


def _netns_traffic() -> Any:
    """The istio-redirect tests' helpers (a kubeconfig for the stand-in)."""
    return importlib.import_module("netns_traffic")


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=100, help="timed ADDs per row (100)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (3)")
    parser.add_argument("--quick", action="store_true", help="20 repetitions, 1 warm-up round")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--runtime-view",
        action="store_true",
        help="instead: per-pod cost of each chain under a private containerd (runtime.md)",
    )
    parser.add_argument("--pods", type=int, default=10, help="runtime view: pods per chain (10)")
    parser.add_argument(
        "--bursts", type=int, default=5, help=f"bursts of {CONCURRENT} ADDs per shim (5)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup, args.bursts = 20, 1, 2
    if os.geteuid() != 0:
        _die("needs root (network namespaces, iptables)")
    for tool in ("ip", GO_TUNING):
        if shutil.which(tool) is None:
            _die(f"{tool} not found")

    if args.runtime_view:
        import cri

        cri.main(args.pods, 1, args.out, machine_info(), _commit())
        return

    pod: dict[str, Any] = _kube_stub().injected_pod()
    pod["spec"]["nodeName"] = NODE
    # A pod the cache does not hold (bound to another node, or a watch event not yet seen).
    elsewhere: dict[str, Any] = _kube_stub().injected_pod()
    elsewhere["metadata"] |= {"name": pod["metadata"]["name"] + "-x", "uid": secrets.token_hex(16)}
    elsewhere["spec"]["nodeName"] = "other-node"
    commit = _commit()
    agent: Agent | None = None
    load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="cnisdk-bench-") as tmp_name,
        kube_api(pod, elsewhere) as stub,
    ):
        tmp = Path(tmp_name)
        tuning_ns = new_netns()
        try:
            dirs = _bin_dirs(tmp)
            if dirs.python_shims is not None:
                agent = Agent(tmp / "agent.sock", tmp / "agent.log")
            kubeconfig = _netns_traffic().write_kubeconfig(tmp, stub.url, token="bench")
            scenarios = build_scenarios(tmp, dirs, kubeconfig, pod, tuning_ns, elsewhere)
            active = [s for s in scenarios if s.prepare is not None]
            if agent is not None:
                warm = next(s for s in active if s.key == "agent-istio")
                wait_for_pod_cache(stub, lambda: _once(warm))
            total = args.warmup + args.repeat
            for round_no in range(total):
                shift = round_no % len(active)
                for scenario in active[shift:] + active[:shift]:
                    assert scenario.prepare is not None
                    run = scenario.prepare()
                    try:
                        elapsed, cpu, done = timed(run)
                    finally:
                        if run.after is not None:
                            run.after()
                    check(scenario.key, done, run.expect_json)
                    if round_no >= args.warmup:
                        scenario.samples.append(elapsed)
                        scenario.cpu.append(cpu)
                if (round_no + 1) % 10 == 0 or round_no + 1 == total:
                    print(f"round {round_no + 1}/{total}", file=sys.stderr)
            concurrent: list[ConcurrentResult] = []
            agent_cpu = None
            if agent is not None:
                concurrent = bursts(agent, dirs, tuning_ns, args.bursts)
                shims = dirs.compiled_shims or dirs.python_shims
                assert shims is not None
                agent_cpu = agent_cpu_per_add(agent, shims / "passthrough", tuning_ns)
        finally:
            if agent is not None:
                agent.stop()
            cleanup_netns()

    args.out.mkdir(parents=True, exist_ok=True)
    report = write_report(
        scenarios, concurrent, dirs.no_agent, args.repeat, commit, load, agent_cpu
    )
    (args.out / "latest.md").write_text(report)
    if plot(scenarios, concurrent, args.out / "latest.png") and args.out == RESULTS:
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "latest.png", DOCS_IMG)
    print(report)


if __name__ == "__main__":
    main()
