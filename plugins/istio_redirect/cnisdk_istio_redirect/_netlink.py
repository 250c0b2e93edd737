"""TPROXY policy routing and loopback addresses in the pod namespace, through netlink.

pyroute2 is costly to import, so it is imported only inside :func:`apply_links` and
:func:`verify_links`, which run only when a pod needs them (TPROXY mode or IPv6).

- :func:`link_state` says what a spec needs: ``ip rule``/``ip route`` entries for TPROXY and
  Envoy's IPv6 passthrough source on ``lo``.
- :func:`apply_links` adds what is missing; entries already present are kept (a repeated ADD
  is a no-op). If one add fails, the entries *this call* added are deleted again before the
  error is raised, so a failed ADD leaves no half-made policy routing behind.
- :func:`verify_links` reports what is missing (for CNI CHECK).

Errors are reported as the equivalent ``ip`` command, e.g.
``ip -6 route add local ::/0 dev lo table 133: Network is down``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cnisdk_istio_redirect._iptables_rules import ADDRESSES, Family, inbound_ports
from cnisdk_istio_redirect._redirect import RedirectSpec

__all__ = [
    "LinkState",
    "LoopbackAddress",
    "NetlinkApplyError",
    "PolicyRoute",
    "PolicyRule",
    "apply_links",
    "link_state",
    "verify_links",
]

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_SCOPE_HOST = 254
_RTN_LOCAL = 2


@dataclass(frozen=True)
class PolicyRule:
    """``ip [-6] rule add fwmark MARK lookup TABLE`` (TPROXY)."""

    family: Family
    fwmark: int
    table: int


@dataclass(frozen=True)
class PolicyRoute:
    """``ip [-6] route add local DST dev DEV table TABLE`` (TPROXY)."""

    family: Family
    destination: str
    device: str
    table: int
    route_type: Literal["local"] = "local"


@dataclass(frozen=True)
class LoopbackAddress:
    """``ip -6 addr add ADDRESS dev lo``: Envoy's IPv6 inbound-passthrough source (``::6``)."""

    family: Family
    address: str
    device: str = "lo"


@dataclass(frozen=True)
class LinkState:
    """The policy rules, routes and ``lo`` addresses a spec needs."""

    rules: tuple[PolicyRule, ...] = ()
    routes: tuple[PolicyRoute, ...] = ()
    addresses: tuple[LoopbackAddress, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules or self.routes or self.addresses)


def link_state(spec: RedirectSpec, families: Iterable[Family]) -> LinkState:
    """What ``spec`` needs besides the packet-filter rules, in ``families``.

    TPROXY with inbound capture needs ``fwmark <tproxy_mark> lookup <tproxy_route_table>`` and
    ``local 0.0.0.0/0 dev lo table <tproxy_route_table>`` (``::/0`` for IPv6): everything
    marked is delivered locally. IPv6 rules need ``::6/128`` on ``lo``, because IPv6 only has
    ``::1`` there, while all of 127.0.0.0/8 is already routable.

    :param spec: what to redirect.
    :param families: the families that get rules.
    :returns: the entries; falsy when nothing is needed.
    """
    families = tuple(families)
    _, captured = inbound_ports(spec)
    tproxy = spec.mode == "TPROXY" and bool(captured)
    table = spec.tproxy_route_table
    return LinkState(
        rules=tuple(PolicyRule(f, spec.tproxy_mark, table) for f in families if tproxy),
        routes=tuple(
            PolicyRoute(f, ADDRESSES[f].default_route, "lo", table) for f in families if tproxy
        ),
        addresses=tuple(LoopbackAddress(6, ADDRESSES[6].passthrough) for f in families if f == 6),
    )


class NetlinkApplyError(RuntimeError):
    """A netlink change failed; the message names it as the ``ip`` command it stands for."""


def _ip(family: int, *words: object) -> str:
    return " ".join(["ip", *(["-6"] if family == 6 else []), *map(str, words)])


def _describe_rule(rule: PolicyRule, verb: str) -> str:
    return _ip(rule.family, "rule", verb, "fwmark", rule.fwmark, "lookup", rule.table)


def _describe_route(route: PolicyRoute, verb: str) -> str:
    return _ip(
        route.family, "route", verb, route.route_type, route.destination,
        "dev", route.device, "table", route.table,
    )  # fmt: skip


def _describe_address(address: LoopbackAddress, verb: str) -> str:
    return _ip(address.family, "addr", verb, address.address, "dev", address.device)


def _split(address: LoopbackAddress) -> tuple[str, int]:
    iface = ipaddress.ip_interface(address.address)
    return str(iface.ip), iface.network.prefixlen


def _error_text(exc: BaseException) -> str:
    from pyroute2.netlink.exceptions import NetlinkError

    if isinstance(exc, NetlinkError):
        return str(exc.args[1]) if len(exc.args) > 1 else errno.errorcode.get(exc.code, str(exc))
    return str(exc)


async def apply_links(netns: Any, state: LinkState) -> None:
    """Add the policy rules, routes and addresses; ones already present are left as they are.

    On a failure, what this call added is removed again (best effort), then the error is
    raised; entries that were there before are never touched.

    :param netns: a :class:`cnisdk.netns.NetNS` (its ``netlink()`` opens a socket in the pod
        namespace without moving any thread of ours).
    :param state: what to add (:func:`link_state`).
    :raises NetlinkApplyError: naming the failed change as an ``ip`` command and the reason.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    async with netns.netlink() as ipr:
        indexes: dict[str, int] = {}

        async def index_of(device: str) -> int:
            if device not in indexes:
                try:
                    links = await ipr.link("get", ifname=device)
                except NetlinkError as exc:
                    raise NetlinkApplyError(f"ip link show {device}: {_error_text(exc)}") from exc
                indexes[device] = int(links[0]["index"])
            return indexes[device]

        # (what, kind, fields) for every entry this call created, in creation order.
        added: list[tuple[str, str, dict[str, Any]]] = []

        async def add(what: str, kind: str, fields: dict[str, Any]) -> None:
            try:
                await getattr(ipr, kind)("add", **fields)
            except NetlinkError as exc:
                # EEXIST: a repeated ADD finds its own earlier state, which is what we want.
                if exc.code == errno.EEXIST:
                    return
                raise NetlinkApplyError(f"{what}: {_error_text(exc)}") from exc
            added.append((what, kind, fields))

        try:
            for address in state.addresses:
                ip, prefixlen = _split(address)
                fields = {
                    "index": await index_of(address.device),
                    "address": ip,
                    "prefixlen": prefixlen,
                }
                await add(_describe_address(address, "add"), "addr", fields)
            for rule in state.rules:
                fields = {
                    "fwmark": rule.fwmark,
                    "table": rule.table,
                    "family": _FAMILY[rule.family],
                }
                await add(_describe_rule(rule, "add"), "rule", fields)
            for route in state.routes:
                fields = {
                    "dst": route.destination,
                    "type": route.route_type,
                    "oif": await index_of(route.device),
                    "table": route.table,
                    "scope": _SCOPE_HOST,
                    "family": _FAMILY[route.family],
                }
                await add(_describe_route(route, "add"), "route", fields)
        except BaseException:
            for _, kind, fields in reversed(added):
                # Best effort: the original error is the one to report.
                with contextlib.suppress(NetlinkError, OSError):
                    await getattr(ipr, kind)("del", **fields)
            raise


async def verify_links(netns: Any, state: LinkState) -> list[str]:
    """What of the given rules, routes and addresses is missing in the namespace.

    :param netns: a :class:`cnisdk.netns.NetNS`.
    :param state: what should be there (:func:`link_state`).
    :returns: one message per missing entry (the ``ip ... add`` command that would make it);
        empty when everything is there.
    """
    async with netns.netlink() as ipr:

        async def dump(kind: str, **filters: Any) -> list[Any]:
            result: Any = await getattr(ipr, kind)("dump", **filters)
            if hasattr(result, "__aiter__"):
                return [item async for item in result]
            return list(result)

        problems: list[str] = []
        lo_indexes: dict[str, int | None] = {}

        async def index_of(device: str) -> int | None:
            if device not in lo_indexes:
                links = await dump("link")
                found = [int(x["index"]) for x in links if x.get_attr("IFLA_IFNAME") == device]
                lo_indexes[device] = found[0] if found else None
            return lo_indexes[device]

        for address in state.addresses:
            ip, prefixlen = _split(address)
            index = await index_of(address.device)
            have = await dump("addr", family=_FAMILY[address.family])
            if not any(
                x["index"] == index
                and x["prefixlen"] == prefixlen
                and _same_ip(x.get_attr("IFA_ADDRESS"), ip)
                for x in have
            ):
                problems.append(f"missing: {_describe_address(address, 'add')}")
        for rule in state.rules:
            have = await dump("rule", family=_FAMILY[rule.family])
            if not any(
                x.get_attr("FRA_FWMARK") == rule.fwmark and _rule_table(x) == rule.table
                for x in have
            ):
                problems.append(f"missing: {_describe_rule(rule, 'add')}")
        for route in state.routes:
            index = await index_of(route.device)
            have = await dump("route", family=_FAMILY[route.family], table=route.table)
            if not any(
                x["dst_len"] == ipaddress.ip_network(route.destination).prefixlen
                and x["type"] == _RTN_LOCAL
                and x.get_attr("RTA_OIF") == index
                and _route_table(x) == route.table
                for x in have
            ):
                problems.append(f"missing: {_describe_route(route, 'add')}")
        return problems


def _same_ip(value: object, ip: str) -> bool:
    try:
        return ipaddress.ip_address(str(value)) == ipaddress.ip_address(ip)
    except ValueError:
        return False


def _rule_table(msg: Any) -> int:
    table = msg.get_attr("FRA_TABLE")
    return int(table if table is not None else msg["table"])


def _route_table(msg: Any) -> int:
    table = msg.get_attr("RTA_TABLE")
    return int(table if table is not None else msg["table"])
