"""Real traffic through the rules istio-redirect installs, in a real pod namespace.

Each test makes a pod namespace joined by a veth to a peer namespace ("the network"), runs
the plugin's ADD (in-process, against the API stand-in serving the pod), then moves packets:
the listeners stand in for Envoy (15001 outbound, 15006 inbound, 15053 DNS). Both rule
backends are exercised: iptables (nf_tables) and Istio's native nftables mode.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from cnisdk_istio_redirect import IstioRedirect
from kube_stub import KubeStub, injected_pod
from netns_traffic import (
    CLIENT_CODE,
    PodNet,
    original_dst,
    plugin_conf,
    pod_args,
    pod_net,
    tcp_listener,
    tcp_socket,
    udp_socket,
    unprivileged_python,
    write_kubeconfig,
)

from cnisdk._netns import NetNS
from cnisdk.testing import invoke, require_netns

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

OUTSIDE = ("203.0.113.7", 443)  # TEST-NET-3: not reachable, only routed via the peer
BACKENDS = pytest.mark.parametrize("native_nftables", [False, True], ids=["iptables", "nftables"])


@pytest.fixture
def net() -> Iterator[PodNet]:
    require_netns()
    with pod_net() as pod_and_peer:
        yield pod_and_peer


@pytest.fixture
def sockets() -> Iterator[ExitStack]:
    """Closes every socket a test made, also when it fails half-way."""
    with ExitStack() as stack:
        yield stack


async def sock_in(
    stack: ExitStack, netns: str, make: Callable[..., socket.socket], *args: Any
) -> socket.socket:
    """``make(*args)`` run inside ``netns``: the socket belongs to that namespace."""
    with NetNS.open(netns) as handle:
        sock = await handle.run(make, *args)
    return stack.enter_context(sock)


@pytest.fixture
def stub() -> Iterator[KubeStub]:
    with KubeStub() as server:
        yield server


async def install(
    stub: KubeStub, tmp_path: Path, net: PodNet, pod: dict[str, Any], native_nftables: bool
) -> None:
    """ADD for ``pod`` in ``net.pod``, as the last plugin of a chain that gave it eth0."""
    stub.add_pod(pod)
    conf = plugin_conf(
        write_kubeconfig(tmp_path, stub.url),
        net.pod,
        ips=(f"{net.pod_ip}/24",),
        native_nftables=native_nftables,
    )
    result = await invoke(IstioRedirect, "ADD", conf, netns=net.pod, args=pod_args(pod))
    assert result.exit_code == 0, result.stdout


def nothing_pending(listener: socket.socket) -> bool:
    listener.settimeout(0.2)
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


@BACKENDS
async def test_outbound_tcp_lands_on_15001_with_the_original_destination(
    native_nftables: bool, stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    await install(stub, tmp_path, net, injected_pod(), native_nftables)
    envoy = await sock_in(sockets, net.pod, tcp_listener, 15001)
    client = await sock_in(sockets, net.pod, tcp_socket)
    client.connect(OUTSIDE)
    client.sendall(b"GET / HTTP/1.1\r\n")
    conn, peer = envoy.accept()
    with conn:
        assert original_dst(conn) == OUTSIDE
        assert peer[0] == net.pod_ip
        assert conn.recv(100) == b"GET / HTTP/1.1\r\n"


@BACKENDS
async def test_inbound_tcp_to_an_app_port_lands_on_15006(
    native_nftables: bool, stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    await install(stub, tmp_path, net, injected_pod(), native_nftables)
    envoy = await sock_in(sockets, net.pod, tcp_listener, 15006)
    client = await sock_in(sockets, net.peer, tcp_socket)
    client.connect((net.pod_ip, 9080))
    conn, (source, _) = envoy.accept()
    with conn:
        assert original_dst(conn) == (net.pod_ip, 9080)
        assert source == net.peer_ip
    # 15021 (health) is excluded: nothing listens there, so the pod refuses it.
    health = await sock_in(sockets, net.peer, tcp_socket)
    with pytest.raises(ConnectionRefusedError):
        health.connect((net.pod_ip, 15021))
    assert nothing_pending(envoy)


@BACKENDS
async def test_traffic_from_uid_1337_bypasses_the_redirect(
    native_nftables: bool, stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    python = unprivileged_python()
    if python is None:
        pytest.skip("no Python that uid 1337 may execute")
    await install(stub, tmp_path, net, injected_pod(), native_nftables)
    envoy = await sock_in(sockets, net.pod, tcp_listener, 15001)
    real = await sock_in(sockets, net.peer, tcp_listener, 8080, net.peer_ip)
    client = [python, "-c", CLIENT_CODE, net.peer_ip, "8080"]
    as_proxy = ["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", *client]
    with NetNS.open(net.pod) as pod:
        done = await pod.run_process(as_proxy, timeout=10)
        assert done.returncode == 0, done.stderr
        conn, (source, _) = real.accept()
        with conn:
            assert conn.recv(100) == b"uid=1337 gid=1337"
            assert source == net.pod_ip
        assert nothing_pending(envoy)
        # The same connection from root (the app) is captured.
        done = await pod.run_process(client, timeout=10)
        assert done.returncode == 0, done.stderr
    conn, _ = envoy.accept()
    with conn:
        assert conn.recv(100) == b"uid=0 gid=0"
        assert original_dst(conn) == (net.peer_ip, 8080)
    assert nothing_pending(real)


@BACKENDS
async def test_dns_is_captured_to_15053_when_dns_capture_is_on(
    native_nftables: bool, stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    pod_spec = injected_pod(proxy_env={"ISTIO_META_DNS_CAPTURE": "true"})
    await install(stub, tmp_path, net, pod_spec, native_nftables)
    agent_udp = await sock_in(sockets, net.pod, udp_socket, 15053)
    agent_tcp = await sock_in(sockets, net.pod, tcp_listener, 15053)
    client_udp = await sock_in(sockets, net.pod, udp_socket)
    client_tcp = await sock_in(sockets, net.pod, tcp_socket)
    client_udp.sendto(b"\x12\x34 query A example.com", (net.peer_ip, 53))
    data, source = agent_udp.recvfrom(512)
    assert data == b"\x12\x34 query A example.com"
    assert source == (net.pod_ip, client_udp.getsockname()[1])
    # DNS over TCP goes to the same agent port.
    client_tcp.connect((net.peer_ip, 53))
    conn, _ = agent_tcp.accept()
    with conn:
        assert original_dst(conn) == (net.peer_ip, 53)


async def test_dns_is_not_captured_without_dns_capture(
    stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    await install(stub, tmp_path, net, injected_pod(), native_nftables=False)
    agent_udp = await sock_in(sockets, net.pod, udp_socket, 15053)
    resolver = await sock_in(sockets, net.peer, udp_socket, 53, net.peer_ip)
    client_udp = await sock_in(sockets, net.pod, udp_socket)
    client_udp.sendto(b"query", (net.peer_ip, 53))
    assert resolver.recvfrom(512)[0] == b"query"
    agent_udp.settimeout(0.2)
    with pytest.raises(TimeoutError):
        agent_udp.recvfrom(512)


@BACKENDS
async def test_tproxy_delivers_inbound_to_15006_keeping_the_original_destination(
    native_nftables: bool, stub: KubeStub, tmp_path: Path, net: PodNet, sockets: ExitStack
) -> None:
    pod_spec = injected_pod(annotations={"sidecar.istio.io/interceptionMode": "TPROXY"})
    await install(stub, tmp_path, net, pod_spec, native_nftables)
    envoy = await sock_in(sockets, net.pod, tcp_listener, 15006, "0.0.0.0", True)
    client = await sock_in(sockets, net.peer, tcp_socket)
    client.connect((net.pod_ip, 9080))
    conn, (source, source_port) = envoy.accept()
    with conn:
        # No NAT: the accepted socket *is* the connection to pod_ip:9080.
        assert conn.getsockname() == (net.pod_ip, 9080)
        assert (source, source_port) == client.getsockname()
        # And the return path works (marked packets are routed back out, not to lo).
        client.sendall(b"ping")
        assert conn.recv(10) == b"ping"
        conn.sendall(b"pong")
        assert client.recv(10) == b"pong"


async def test_without_the_plugin_the_same_connection_reaches_the_destination(
    net: PodNet, sockets: ExitStack
) -> None:
    # The control for the tests above: the namespaces route, nothing else intercepts.
    real = await sock_in(sockets, net.peer, tcp_listener, 8080, net.peer_ip)
    client = await sock_in(sockets, net.pod, tcp_socket)
    client.connect((net.peer_ip, 8080))
    conn, (source, _) = real.accept()
    with conn:
        assert source == net.pod_ip
