"""A node in a temp dir: a private containerd (Debian's 1.6, runc), its CNI bin dir and configs.

Everything lives under one work directory: containerd's config, root, state, socket and log;
a CNI bin dir holding links to Debian's Go plugins and the launchers ``cnisdk install``
writes (containerd 1.6 takes a single ``bin_dir``); one CNI config directory per runtime
handler, each with one conflist (bridge + host-local, then the handler's chain). Pods pick
their chain with the CRI ``runtime_handler``, as a RuntimeClass does. The pods' network
namespaces are where a node's containerd puts them by default, ``/var/run/netns/cni-<uuid>``.
Stopping the node removes what is left of its pods through the CRI, stops containerd, and
removes its bridge, cgroups and mounts.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from cri_client import CRIClient
from sandbox_image import IMAGE_REF

GO_PLUGINS = Path("/usr/lib/cni")
NETNS_DIR = Path("/var/run/netns")
"""Where containerd 1.6 mounts pod network namespaces (``netns_mounts_under_state_dir``
off, its default)."""
CNISDK = Path(sys.executable).parent / "cnisdk"
NETWORK = "cnisdk-e2e"
"""The network name in every conflist: host-local keeps its allocations under it."""
DEFAULT_HANDLER = "runc"
"""The runtime handler of a pod that names none: bridge + host-local alone."""
TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
START_TIMEOUT = 30.0

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_RUN_CONTAINERD = Path("/run/containerd")
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_LOG_LINE = re.compile(r'^time="([^"]+)" level=\w+ msg="((?:[^"\\]|\\.)*)"(.*)$')


class NodeError(RuntimeError):
    """The node could not be set up or torn down."""


def missing_tools() -> list[str]:
    """What this machine lacks for a node (Debian: apt-get install containerd runc gcc)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    for plugin in ("bridge", "host-local", "tuning"):
        if not (GO_PLUGINS / plugin).exists():
            missing.append(str(GO_PLUGINS / plugin))
    if shutil.which("gcc") is None:
        missing.append("gcc")
    return missing


def _routes() -> list[ipaddress.IPv4Network]:
    done = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True)
    found = []
    for route in json.loads(done.stdout or b"[]"):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.IPv4Network(route.get("dst", ""), strict=False))
    return found


def pick_subnet() -> ipaddress.IPv4Network:
    """A random /24 in 10.200.0.0/13 that no route on this host overlaps."""
    taken = _routes()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(
            f"10.{200 + secrets.randbelow(8)}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(r) for r in taken if r.prefixlen > 0):
            return candidate
    raise NodeError("no free /24 in 10.200.0.0/13")


@contextlib.contextmanager
def host_state_kept() -> Iterator[None]:
    """Undo, around a set of nodes, what their containerd and plugins change host-wide.

    containerd 1.6 always makes ``/run/containerd/s`` for its shims' sockets (removed here if
    it was not there before and is empty); bridge with ``isGateway`` turns on IPv4
    forwarding (turned off again if it was off).
    """
    had_run_dir = _RUN_CONTAINERD.exists()
    forwarding = _IP_FORWARD.read_text()
    try:
        yield
    finally:
        if not had_run_dir:
            for leftover in (_RUN_CONTAINERD / "s", _RUN_CONTAINERD):
                with contextlib.suppress(OSError):
                    leftover.rmdir()
        if _IP_FORWARD.read_text() != forwarding:
            _IP_FORWARD.write_text(forwarding)


def _toml(value: Any) -> str:
    # JSON strings, booleans and numbers are valid TOML basic strings and values.
    return json.dumps(value)


class ContainerdNode:
    """A private containerd with one runtime handler per CNI chain; a context manager.

    :param workdir: an empty directory the node owns (its path must stay short: the socket
        path goes under it).
    :param chains: runtime handler name -> the plugin entries after bridge; the default
        handler ``runc`` always gets bridge alone.
    :param install: arguments appended to ``cnisdk install TYPES --bin-dir BIN`` (e.g.
        ``--agent-socket``); ``None`` installs no cnisdk launcher.
    :param types: the plugin types ``cnisdk install`` writes launchers for.
    :param image_archive: the sandbox image archive (:func:`sandbox_image.build_archive`).
    :param cri: the generated ``(messages, stubs)`` modules of ``cri_api.proto``.
    """

    def __init__(
        self,
        workdir: Path,
        chains: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        image_archive: Path,
        cri: tuple[ModuleType, ModuleType],
        types: Sequence[str] = ("passthrough", "istio-redirect"),
        install: Sequence[str] | None = (),
    ) -> None:
        self.workdir = workdir
        self.chains = {DEFAULT_HANDLER: [], **{k: list(v) for k, v in chains.items()}}
        self.image_archive = image_archive
        self._cri = cri
        self.types = list(types)
        self.install_args = install
        args = list(install or ())
        self.agent_socket = (
            args[args.index("--agent-socket") + 1] if "--agent-socket" in args else None
        )
        """The agent the shims forward to; ``None`` on an exec-mode node."""
        self.bin_dir = workdir / "cni-bin"
        self.ipam_dir = workdir / "ipam"
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.socket = workdir / "containerd.sock"
        self.log_path = workdir / "containerd.log"
        self._netns_before: set[str] = set()
        tag = secrets.token_hex(4)
        self.bridge = f"cnie{tag}"
        self.cgroup_parent = f"/cnisdk-e2e-{tag}"
        self.subnet = pick_subnet()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: CRIClient | None = None

    # ------------------------------------------------------------------ files

    def conflist(self, plugins: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "subnet": str(self.subnet),
                "dataDir": str(self.ipam_dir),
            },
        }
        return {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [bridge, *plugins]}

    def conf_dir(self, handler: str) -> Path:
        return self.workdir / f"net.d-{handler}"

    def _write_files(self) -> None:
        self.bin_dir.mkdir(parents=True)
        for plugin in sorted(GO_PLUGINS.iterdir()):
            (self.bin_dir / plugin.name).symlink_to(plugin)
        if self.install_args is not None and self.types:
            # The launchers exactly as an operator gets them.
            argv = [str(CNISDK), "install", *self.types, "--bin-dir", str(self.bin_dir)]
            done = subprocess.run(
                [*argv, *self.install_args], capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:
                raise NodeError(f"cnisdk install failed: {done.stderr.strip()}")
        for handler, plugins in self.chains.items():
            directory = self.conf_dir(handler)
            directory.mkdir()
            (directory / "10-cnisdk-e2e.conflist").write_text(json.dumps(self.conflist(plugins)))
        (self.workdir / "config.toml").write_text(self._config())

    def _config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        lines = [
            "version = 2",
            f"root = {_toml(str(self.root))}",
            f"state = {_toml(str(self.state))}",
            # Snapshotters and services the node does not use, off: less to start, nothing
            # of theirs left on the host.
            "disabled_plugins = ["
            + ", ".join(
                _toml(p)
                for p in (
                    "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing",
                )
            )
            + "]",
            "[grpc]",
            f"  address = {_toml(str(self.socket))}",
            "[ttrpc]",
            f"  address = {_toml(str(self.socket) + '.ttrpc')}",
            "[debug]",
            # Debug level logs "begin cni setup" and "cni result": the ADD's own duration.
            '  level = "debug"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml(str(self.workdir / 'opt'))}",
            f"[{cri}]",
            f"  sandbox_image = {_toml(IMAGE_REF)}",
            # Without CAP_SYS_RESOURCE runc cannot lower the sandbox's oom_score_adj below
            # ours ("can't get final child's PID from pipe").
            "  restrict_oom_score_adj = true",
            "  disable_apparmor = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"[{cri}.containerd]",
            f"  default_runtime_name = {_toml(DEFAULT_HANDLER)}",
            '  snapshotter = "overlayfs"',
        ]
        for handler in self.chains:
            section = f"{cri}.containerd.runtimes.{_toml(handler)}"
            lines += [
                f"[{section}]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"  cni_conf_dir = {_toml(str(self.conf_dir(handler)))}",
                "  cni_max_conf_num = 1",
                f"[{section}.options]",
                "  SystemdCgroup = false",
                # runc's state under the node's own state dir, not /run/containerd/runc.
                f"  Root = {_toml(str(self.state / 'runc'))}",
            ]
        lines += [
            f"[{cri}.cni]",
            f"  bin_dir = {_toml(str(self.bin_dir))}",
            f"  conf_dir = {_toml(str(self.conf_dir(DEFAULT_HANDLER)))}",
            "  max_conf_num = 1",
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ContainerdNode:
        self._netns_before = _cni_netns()
        self._write_files()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.workdir / "config.toml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = CRIClient(self.socket, *self._cri, cgroup_parent=self.cgroup_parent)
        self._wait_for_cri()
        self._import_image()
        return self

    def _alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise NodeError(f"containerd exited; its log ends:\n{self.log_tail()}")

    def _wait_for_cri(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.client is not None
        while True:
            self._alive()
            try:
                self.client.version(timeout=2)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise NodeError(
                        f"containerd's CRI did not answer within {START_TIMEOUT:.0f} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _import_image(self) -> None:
        argv = ["ctr", "-a", str(self.socket), "-n", "k8s.io", "images", "import"]
        done = subprocess.run(
            [*argv, str(self.image_archive)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise NodeError(f"ctr images import failed: {done.stderr.strip()}")
        # The CRI plugin learns of an imported image from an event, a moment later.
        assert self.client is not None
        deadline = time.monotonic() + START_TIMEOUT
        while IMAGE_REF not in self.client.image_tags(IMAGE_REF):
            self._alive()
            if time.monotonic() > deadline:
                raise NodeError(f"the CRI plugin does not see {IMAGE_REF} after the import")
            time.sleep(0.05)

    def stop(self) -> None:
        """Remove what is left of the pods, stop containerd, remove the node's host state."""
        problems: list[str] = []
        if self.client is not None and self.proc is not None and self.proc.poll() is None:
            try:
                for pod in self.client.list_pods():
                    self.client.stop_pod(pod.id)
                    self.client.remove_pod(pod.id)
            except grpc.RpcError as exc:
                problems.append(f"removing pods: {exc}")
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("containerd did not exit on SIGTERM")
        self._unmount_leftovers()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        for hierarchy in _CGROUP_ROOT.iterdir() if _CGROUP_ROOT.is_dir() else ():
            with contextlib.suppress(OSError):
                (hierarchy / self.cgroup_parent.lstrip("/")).rmdir()
        if problems:
            raise NodeError("; ".join(problems))

    def _unmount_leftovers(self) -> None:
        # Only after a failure: overlay rootfs or netns bind mounts a pod did not release.
        prefix = str(self.workdir) + "/"
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

    def host_traces(self) -> list[str]:
        """What of this node is still on the host after :meth:`stop` (should be nothing)."""
        traces = []
        if Path(f"/sys/class/net/{self.bridge}").exists():
            traces.append(f"bridge {self.bridge}")
        if any(r.overlaps(self.subnet) for r in _routes() if r.prefixlen > 0):
            traces.append(f"a route to {self.subnet}")
        for hierarchy in _CGROUP_ROOT.iterdir() if _CGROUP_ROOT.is_dir() else ():
            if (hierarchy / self.cgroup_parent.lstrip("/")).exists():
                traces.append(f"cgroup {hierarchy.name}:{self.cgroup_parent}")
        prefix = str(self.workdir) + "/"
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split()[4].startswith(prefix):
                traces.append(f"mount {line.split()[4]}")
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if (
                    proc.name.isdigit()
                    and str(self.socket).encode() in (proc / "cmdline").read_bytes()
                ):
                    traces.append(f"process {proc.name}")
        return traces

    def __enter__(self) -> ContainerdNode:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ observation

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_entries(self) -> list[tuple[datetime.datetime, str, str]]:
        """containerd's log as ``(time, message, rest of the line)``."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            stamp, message, rest = match.groups()
            entries.append((_parse_time(stamp), message, rest))
        return entries

    def cni_add_seconds(self) -> dict[str, float]:
        """Each pod's CNI ADD as containerd timed it: sandbox id -> seconds, from the
        ``begin cni setup`` and ``cni result`` lines of its log."""
        begun: dict[str, datetime.datetime] = {}
        took: dict[str, float] = {}
        for stamp, message, rest in self.log_entries():
            match = re.search(r"\bpodsandboxid=([0-9a-f]+)", rest)
            if match is None:
                continue
            sandbox_id = match.group(1)
            if message == "begin cni setup":
                begun[sandbox_id] = stamp
            elif message.startswith("cni result:") and sandbox_id in begun:
                took[sandbox_id] = (stamp - begun.pop(sandbox_id)).total_seconds()
        return took

    def netns_files(self) -> list[str]:
        """containerd's pod namespaces (``cni-*``) that were not there when the node started."""
        return sorted(_cni_netns() - self._netns_before)

    def reservations(self) -> list[str]:
        """host-local's allocations: one file per IP address held."""
        directory = self.ipam_dir / NETWORK
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit())

    def host_veths(self) -> list[str]:
        done = subprocess.run(
            ["ip", "-j", "link", "show", "master", self.bridge], capture_output=True
        )
        return [link["ifname"] for link in json.loads(done.stdout or b"[]")]

    def containers(self) -> list[str]:
        """containerd's containers in the CRI namespace (a sandbox is one)."""
        done = subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", "k8s.io", "containers", "ls", "-q"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split()

    def leftovers(self) -> dict[str, list[str]]:
        """What pods left on the host; empty lists when every pod was stopped and removed."""
        assert self.client is not None
        return {
            "sandboxes": [p.id for p in self.client.list_pods()],
            "containers": self.containers(),
            "netns": self.netns_files(),
            "veths": self.host_veths(),
            "ips": self.reservations(),
        }


def _cni_netns() -> set[str]:
    if not NETNS_DIR.is_dir():
        return set()
    return {name for name in os.listdir(NETNS_DIR) if name.startswith("cni-")}


def _parse_time(stamp: str) -> datetime.datetime:
    # RFC 3339 with nanoseconds; datetime takes microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.datetime.fromisoformat(f"{head}.{frac}+00:00")
