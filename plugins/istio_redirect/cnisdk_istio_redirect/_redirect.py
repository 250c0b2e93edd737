"""What to redirect for one pod: the bridge between Istio's pod decision and the rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CAPTURE_ALL", "RedirectSpec"]

CAPTURE_ALL = "*"
"""In an include list, means every address or port (Istio's ``*``)."""


@dataclass(frozen=True)
class RedirectSpec:
    """The redirection Istio would program for one sidecar pod.

    Lists hold what the pod annotations say, already split and validated; ``("*",)`` in an
    include list captures everything, ``()`` captures nothing.
    """

    mode: Literal["REDIRECT", "TPROXY"] = "REDIRECT"
    proxy_uid: int = 1337
    proxy_gid: int = 1337
    outbound_port: int = 15001
    inbound_port: int = 15006
    inbound_tunnel_port: int = 15008
    dns_port: int = 15053
    tproxy_mark: int = 1337
    tproxy_route_table: int = 133
    include_outbound_cidrs: tuple[str, ...] = (CAPTURE_ALL,)
    exclude_outbound_cidrs: tuple[str, ...] = ()
    include_inbound_ports: tuple[str, ...] = (CAPTURE_ALL,)
    exclude_inbound_ports: tuple[int, ...] = (15020, 15021, 15090)
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = (15020,)
    exclude_interfaces: tuple[str, ...] = ()
    reroute_virtual_interfaces: tuple[str, ...] = ()
    dns_capture: bool = False
    dual_stack: bool = False
    invalid_drop: bool = False
