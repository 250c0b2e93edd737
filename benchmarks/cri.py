"""The runtime's view: what each chained plugin adds to a pod's start and removal under containerd.

Run through ``benchmarks/run.py --runtime-view`` (root, Debian's containerd and runc). It
uses the e2e tests' nodes (``tests/e2e``): a private containerd per mode, the exec node with
the launchers ``cnisdk install`` writes, the agent node with its shims to a ``cnisdk agent``,
each chain a runtime handler over bridge + host-local. Pods are driven over CRI as the kubelet
drives them, one at a time, the chains interleaved round-robin (one pod of each per round, in
a rotating order), so background load hits them alike.

Per pod: the CNI ADD as containerd timed it (``begin cni setup`` to ``cni result`` in its debug
log), and RunPodSandbox + StopPodSandbox + RemovePodSandbox as the kubelet waits for them. A
chain's added cost is its median minus the median of bridge alone on the same node.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from containerd_node import (  # noqa: E402
    DEFAULT_HANDLER,
    ContainerdNode,
    host_state_kept,
    missing_tools,
)
from cri_client import generate_stubs  # noqa: E402
from pods import NODE_NAME, chains, injected_pod, plain_pod, pod_spec  # noqa: E402
from sandbox_image import build_archive  # noqa: E402


@dataclass
class Row:
    """One chain on one node, and its samples in ms."""

    key: str
    label: str
    node: str
    handler: str
    pod: Callable[[], dict[str, Any]]
    baseline: str = ""
    add: list[float] = field(default_factory=list)
    lifecycle: list[float] = field(default_factory=list)
    inside_agent: list[float] = field(default_factory=list)


def rows() -> list[Row]:
    def row(key: str, label: str, node: str, handler: str, pod: Callable[[], Any]) -> Row:
        base = "" if handler == DEFAULT_HANDLER else f"bridge-{node}"
        return Row(key, label, node, handler, pod, base)

    table = [
        row("bridge-exec", "bridge + host-local alone (exec node)", "exec", "runc", plain_pod),
        row("bridge-agent", "bridge + host-local alone (agent node)", "agent", "runc", plain_pod),
        row(
            "bridge-compiled",
            "bridge + host-local alone (compiled-shim node)",
            "compiled",
            "runc",
            plain_pod,
        ),
        row("tuning", "Go `tuning` (Debian)", "exec", "tuning", plain_pod),
        row("exec-passthrough", "`passthrough`, exec mode", "exec", "passthrough", plain_pod),
        row(
            "exec-istio",
            "`istio-redirect`, exec mode, injected pod",
            "exec",
            "istio",
            injected_pod,
        ),
        row(
            "exec-istio-plain",
            "`istio-redirect`, exec mode, plain pod (annotation fast path)",
            "exec",
            "istio",
            plain_pod,
        ),
    ]
    for node, shim in (("agent", "Python shim"), ("compiled", "compiled shim")):
        table += [
            row(
                f"{node}-istio",
                f"`istio-redirect`, agent mode ({shim}), injected pod",
                node,
                "istio",
                injected_pod,
            ),
            row(
                f"{node}-istio-plain",
                f"`istio-redirect`, agent mode ({shim}), plain pod (annotation fast path)",
                node,
                "istio",
                plain_pod,
            ),
            row(
                f"{node}-passthrough",
                f"`passthrough`, agent mode ({shim})",
                node,
                "passthrough",
                plain_pod,
            ),
        ]
    return table


class Fleet:
    """The API stand-in, the agent and both nodes, up for the whole run."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path) -> None:
        from agent_kit import AgentProcess
        from netns_traffic import write_kubeconfig
        from watch_stub import WatchStub

        cri = generate_stubs(workdir / "cri-gen")
        (workdir / "image").mkdir()
        archive = build_archive(workdir / "image")
        self.kube = stack.enter_context(WatchStub())
        kubeconfig = write_kubeconfig(workdir, self.kube.url)
        self.agent = AgentProcess(
            workdir / "agent.sock",
            args=["--types", "passthrough,istio-redirect"],
            env={**os.environ, "NODE_NAME": NODE_NAME},
        )
        stack.callback(self.agent.stop)
        self.agent.wait_ready()
        self.nodes: dict[str, ContainerdNode] = {}
        from cnisdk._compiled_shim import build

        shim = build(workdir / "shim" / "cnisdk-shim")
        agent = ["--agent-socket", str(self.agent.socket_path), "--agent-fallback", "fail"]
        for name, install in (
            ("exec", []),
            ("agent", [*agent, "--shim", "python"]),
            ("compiled", [*agent, "--shim", "compiled", "--shim-binary", str(shim)]),
        ):
            (workdir / name).mkdir()
            node = ContainerdNode(
                workdir / name, chains(kubeconfig), image_archive=archive, cri=cri, install=install
            )
            self.nodes[name] = stack.enter_context(node)

    def one_pod(self, row: Row) -> tuple[str, float]:
        """Run, stop and remove one pod; ``(sandbox id, seconds for the three calls)``."""
        pod = row.pod()
        self.kube.put(pod)
        client = self.nodes[row.node].client
        assert client is not None
        started = time.perf_counter()
        sandbox_id = client.run_pod(pod_spec(pod, row.handler))
        client.stop_pod(sandbox_id)
        client.remove_pod(sandbox_id)
        return sandbox_id, time.perf_counter() - started


@contextlib.contextmanager
def fleet() -> Iterator[Fleet]:
    with (
        host_state_kept(),
        tempfile.TemporaryDirectory(prefix="cnisdk-cri-", dir="/tmp") as name,
        contextlib.ExitStack() as stack,
    ):
        yield Fleet(stack, Path(name))


def measure(pods: int, warmup: int) -> tuple[list[Row], dict[str, str]]:
    table = rows()
    with fleet() as f:
        # The agent's pod cache starts on its first lookup: one untimed injected pod first.
        for key in ("agent-istio", "compiled-istio"):
            f.one_pod(next(r for r in table if r.key == key))
        ids: dict[str, list[str]] = {r.key: [] for r in table}
        for round_no in range(warmup + pods):
            shift = round_no % len(table)
            for row in table[shift:] + table[:shift]:
                sandbox_id, seconds = f.one_pod(row)
                if round_no >= warmup:
                    row.lifecycle.append(seconds * 1000)
                    ids[row.key].append(sandbox_id)
            print(f"round {round_no + 1}/{warmup + pods}", file=sys.stderr)
        adds = {name: node.cni_add_seconds() for name, node in f.nodes.items()}
        inside = {
            e["container_id"]: e["duration_ms"]
            for e in f.agent.events()
            if e.get("event") == "request" and e.get("command") == "ADD"
        }
        versions = {
            "containerd": _version(["containerd", "--version"]),
            "runc": _version(["runc", "--version"]),
        }
    for row in table:
        for sandbox_id in ids[row.key]:
            row.add.append(adds[row.node][sandbox_id] * 1000)
            if row.node in ("agent", "compiled") and sandbox_id in inside:
                row.inside_agent.append(inside[sandbox_id])
    return table, versions


def _version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0].strip() if done.stdout else "unknown"


def _ms(value: float, signed: bool = False) -> str:
    return f"{value:+,.0f} ms" if signed else f"{value:,.0f} ms"


def report(
    table: list[Row], versions: dict[str, str], header: list[str], pods: int, commit: str
) -> str:
    by_key = {r.key: r for r in table}

    def added(key: str, samples: str = "add") -> float:
        row = by_key[key]
        base = by_key[row.baseline]
        return statistics.median(getattr(row, samples)) - statistics.median(getattr(base, samples))

    lines = [
        "<!-- generated by benchmarks/run.py --runtime-view; do not edit -->",
        *header,
        f"- {versions['containerd']}; {versions['runc']}",
        f"- cnisdk commit {commit}; {pods} pods per row, rows interleaved round-robin, "
        "one pod at a time; medians",
        "",
        "| chained after bridge + host-local | CNI ADD added (containerd's log) "
        "| Run+Stop+Remove added | inside the agent |",
        "|---|---:|---:|---:|",
    ]
    for row in table:
        if not row.baseline:
            continue
        add, life = added(row.key), added(row.key, "lifecycle")
        inside = f"{statistics.median(row.inside_agent):,.1f} ms" if row.inside_agent else "-"
        lines.append(f"| {row.label} | {_ms(add, True)} | {_ms(life, True)} | {inside} |")
    lines += [
        "",
        "Bridge + host-local alone (the baseline of each node):",
        "",
        "| node | CNI ADD | Run+Stop+Remove |",
        "|---|---:|---:|",
    ]
    for row in table:
        if not row.baseline:
            lines.append(
                f"| {row.node} | {_ms(statistics.median(row.add))} | "
                f"{_ms(statistics.median(row.lifecycle))} |"
            )

    go_added = added("tuning")
    lines += [
        "",
        "CNI ADD is the time containerd's log puts between `begin cni setup` and `cni result` "
        "for the pod; Run+Stop+Remove is the three CRI calls as the kubelet waits for them "
        "(containerd 1.6 runs DEL at Stop and again at Remove). Inside the agent: the agent's "
        "own time for the ADD (its `request` log event).",
        "",
        "Agent mode against Go `tuning`, CNI ADD added (target, with the compiled shim nodes "
        "run: within 2x):",
        "",
    ]
    for key in (
        "compiled-passthrough",
        "compiled-istio-plain",
        "compiled-istio",
        "agent-passthrough",
        "agent-istio-plain",
        "agent-istio",
    ):
        if go_added <= 0:
            lines.append(f"- {by_key[key].label}: Go `tuning` added nothing measurable")
            continue
        ratio = added(key) / go_added
        verdict = "**met**" if ratio <= 2 else "**not met**"
        lines.append(f"- {by_key[key].label}: {ratio:.1f}x → {verdict}")
    return "\n".join(lines) + "\n"


def main(pods: int, warmup: int, out: Path, header: list[str], commit: str) -> Path:
    """Measure and write ``out/runtime.md``; returns its path."""
    if os.geteuid() != 0:
        raise SystemExit("benchmarks: the runtime view needs root")
    missing = missing_tools()
    if missing:
        raise SystemExit(f"benchmarks: the runtime view needs {', '.join(missing)}")
    table, versions = measure(pods, warmup)
    text = report(table, versions, header, pods, commit)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runtime.md"
    path.write_text(text)
    print(text)
    return path
