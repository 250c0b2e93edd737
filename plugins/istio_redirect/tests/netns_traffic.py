"""Helpers for the istio-redirect plugin, traffic and chain tests.

Configs and prevResults as a runtime passes them, a kubeconfig for :class:`kube_stub.KubeStub`,
a view of the ISTIO state in a namespace (iptables v4/v6, nft tables, policy routing), and
sockets made inside a namespace for real traffic checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnisdk.testing import NetNSPair, temporary_netns

TOKEN = "good-token"  # KubeStub's default
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
PLUGIN_TYPE = "istio-redirect"


# --------------------------------------------------------------------------- configs


def write_kubeconfig(directory: Path, server: str, token: str = TOKEN) -> str:
    """A kubeconfig (JSON) for ``server`` with a bearer ``token``; returns its path."""
    path = directory / "istio-cni-kubeconfig"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server}}],
        "users": [{"name": "istio-cni", "user": {"token": token}}],
        "contexts": [
            {"name": "istio-cni-context", "context": {"cluster": "local", "user": "istio-cni"}}
        ],
        "current-context": "istio-cni-context",
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return str(path)


def prev_result(
    version: str, sandbox: str, ips: tuple[str, ...] = ("10.9.0.5/24",)
) -> dict[str, Any]:
    """A previous plugin's result in ``version``'s shape: ``eth0`` in ``sandbox`` with ``ips``."""
    entries: list[dict[str, Any]] = []
    for ip in ips:
        entry: dict[str, Any] = {"address": ip, "interface": 0}
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            entry["version"] = "6" if ":" in ip else "4"
        entries.append(entry)
    return {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:09:00:05", "sandbox": sandbox}],
        "ips": entries,
        "dns": {},
    }


def plugin_conf(
    kubeconfig: str | None,
    sandbox: str,
    *,
    version: str = "1.0.0",
    ips: tuple[str, ...] = ("10.9.0.5/24",),
    **fields: Any,
) -> dict[str, Any]:
    """istio-redirect's stdin config as a runtime builds it (with ``prevResult``).

    Fast lookups by default (one attempt, short timeout) so failing cases stay quick.
    """
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "k8s-pod-network",
        "type": PLUGIN_TYPE,
        "kube_api_attempts": 1,
        "kube_api_timeout": 2.0,
        "prevResult": prev_result(version, sandbox, ips),
    }
    if kubeconfig is not None:
        conf["kubeconfig"] = kubeconfig
    conf.update(fields)
    return conf


def pod_args(pod: Mapping[str, Any]) -> dict[str, str]:
    """containerd's CNI_ARGS for ``pod``."""
    meta = pod["metadata"]
    return {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": meta["namespace"],
        "K8S_POD_NAME": meta["name"],
        "K8S_POD_INFRA_CONTAINER_ID": secrets.token_hex(8),
        "K8S_POD_UID": meta.get("uid", "uid"),
    }


def pod_ref(pod: Mapping[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


# --------------------------------------------------------------------------- namespace state


def ns_exec(netns_path: str, *argv: str, input: bytes | None = None, check: bool = True) -> str:
    """Run ``argv`` in the namespace (``ip netns exec``); returns stdout."""
    done = subprocess.run(
        ["ip", "netns", "exec", os.path.basename(netns_path), *argv],
        input=input,
        capture_output=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr!r}")
    return done.stdout.decode()


def _save(netns_path: str, tool: str) -> list[str]:
    if shutil.which(tool) is None:
        return []
    lines = ns_exec(netns_path, tool).splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def iptables_state(netns_path: str) -> dict[str, list[str]]:
    """``iptables-save`` lines (comments dropped) per tool, for nft and legacy, v4 and v6."""
    tools = (
        "iptables-nft-save",
        "ip6tables-nft-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    )
    return {tool: _save(netns_path, tool) for tool in tools}


def rule_lines(netns_path: str) -> list[str]:
    """Every rule and every ``ISTIO_`` chain in iptables (any backend or family).

    A test namespace starts without rules, so any rule left is one istio-redirect added,
    including those in builtin chains that name no ``ISTIO_`` chain (TPROXY's marks).
    """
    return [
        f"{tool}: {line}"
        for tool, lines in iptables_state(netns_path).items()
        for line in lines
        if line.startswith("-A ") or "ISTIO_" in line
    ]


def nft_istio_tables(netns_path: str) -> list[str]:
    """Names of the ``inet istio-proxy-*`` tables in the namespace."""
    tables = ns_exec(netns_path, "nft", "list", "tables").split("\n")
    return sorted(t.split()[-1] for t in tables if t.startswith("table inet istio-proxy-"))


def policy_routing(netns_path: str) -> list[str]:
    """The TPROXY fwmark rules and table-133 routes, v4 and v6 (empty when none)."""
    name = os.path.basename(netns_path)
    found: list[str] = []
    for fam in ("-4", "-6"):
        rules = subprocess.run(["ip", fam, "-n", name, "rule"], capture_output=True, text=True)
        found += [f"{fam} rule {r.strip()}" for r in rules.stdout.splitlines() if "fwmark" in r]
        routes = subprocess.run(
            ["ip", fam, "-n", name, "route", "show", "table", "133"], capture_output=True, text=True
        )
        found += [f"{fam} route {r.strip()}" for r in routes.stdout.splitlines() if r.strip()]
    return found


def clean_state(netns_path: str) -> list[str]:
    """Anything istio-redirect could have left: rules and chains, nft tables, policy routing."""
    return [
        *rule_lines(netns_path),
        *(f"nft table {t}" for t in nft_istio_tables(netns_path)),
        *policy_routing(netns_path),
    ]


def nft_handles(netns_path: str) -> str:
    """The whole nft ruleset with rule handles: any re-applied rule gets a new handle."""
    return ns_exec(netns_path, "nft", "-a", "list", "ruleset")


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class PodNet:
    """A pod namespace joined by a veth to a peer ("the rest of the network")."""

    pair: NetNSPair
    pod_ip: str
    peer_ip: str

    @property
    def pod(self) -> str:
        return self.pair.path

    @property
    def peer(self) -> str:
        return self.pair.peer_path


@contextlib.contextmanager
def pod_net(prefix: str = "cnisdk-ir-") -> Iterator[PodNet]:
    """A pod netns (``eth0`` = 10.R.R.2/24, default route via the peer) and a peer (.1)."""
    base = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
    with temporary_netns(prefix, with_veth=True) as pair:
        pod_ip, peer_ip = f"{base}.2", f"{base}.1"
        for argv in (
            ["-n", pair.name, "addr", "add", f"{pod_ip}/24", "dev", pair.ifname],
            ["-n", pair.peer_name, "addr", "add", f"{peer_ip}/24", "dev", pair.peer_ifname],
            ["-n", pair.name, "route", "add", "default", "via", peer_ip],
        ):
            subprocess.run(["ip", *argv], check=True, capture_output=True)
        yield PodNet(pair, pod_ip, peer_ip)


def tcp_listener(port: int, host: str = "0.0.0.0", transparent: bool = False) -> socket.socket:
    """A listening TCP socket (call it inside the namespace, e.g. via ``NetNS.run``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if transparent:
            sock.setsockopt(socket.SOL_IP, socket.IP_TRANSPARENT, 1)
        sock.bind((host, port))
        sock.listen(8)
        sock.settimeout(5)
    except BaseException:
        sock.close()
        raise
    return sock


def udp_socket(port: int = 0, host: str = "0.0.0.0") -> socket.socket:
    """A bound UDP socket (call it inside the namespace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.settimeout(5)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    return sock


def original_dst(conn: socket.socket) -> tuple[str, int]:
    """The destination before REDIRECT (``SO_ORIGINAL_DST``)."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


def unprivileged_python() -> str | None:
    """A Python another user may execute (the venv's lives under ``/root``)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and os.stat(candidate).st_mode & 0o001:
            return candidate
    return None


# A TCP client for a child running as another user: connects, says who it is, closes.
CLIENT_CODE = """
import os, socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    s.sendall(b"uid=%d gid=%d" % (os.getuid(), os.getgid()))
"""
