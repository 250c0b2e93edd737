"""Chain sanity (CV40x): each plugin in a place where it can do its job.

What a type is comes from the reference plugins' registry (main, ipam, meta), from cnisdk
plugin classes (``chained``), and from the lists below for well-known third-party plugins.
Unknown types are never flagged.
"""

from __future__ import annotations

from typing import Any

from cnisdk._validate._findings import Finding, finding, join
from cnisdk._validate._reference import REFERENCE_PLUGINS

__all__ = ["IGNORES_IPAM", "check_chain"]


def _kind(kind: str) -> frozenset[str]:
    return frozenset(t for t, p in REFERENCE_PLUGINS.items() if p.kind == kind)


# Main plugins: they create (or take over) the container's interface, so they go first.
_INTERFACE_PLUGINS = _kind("main") | {
    "calico", "cilium-cni", "flannel", "ovn-k8s-cni-overlay", "aws-cni", "azure-vnet",
    "weave-net", "kube-ovn", "antrea", "multus", "multus-shim", "ovs", "sriov", "ib-sriov",
    "win-bridge", "win-overlay", "kindnet", "terway", "nsx",
}  # fmt: skip
# Plugins that fail (or do nothing useful) without a prevResult.
_CHAINED_ONLY = _kind("meta") | {"istio-cni", "linkerd-cni", "egress-cni"}
# IPAM plugins: they allocate addresses but create no interface.
_IPAM_PLUGINS = _kind("ipam") | {"whereabouts", "calico-ipam", "azure-vnet-ipam"}
IGNORES_IPAM = frozenset(
    t for t, p in REFERENCE_PLUGINS.items() if p.kind != "ipam" and not p.reads_ipam
) | {"istio-cni"}
"""Plugins whose code never reads ``ipam`` (an empty object, as istio's installer writes, is
harmless and not reported)."""
# Plugins that chain after a main plugin by design although they also run as main plugins
# (Cilium's generic-veth chaining mode, ipvlan on a previous result), so a later position is
# not suspicious.
_MAY_CHAIN_LATER = frozenset({"cilium-cni", "loopback", "multus", "ipvlan"})


def check_chain(
    plugins: list[tuple[str, dict[str, Any]]], chained_types: set[str], findings: list[Finding]
) -> None:
    """The order of the chain.

    :param plugins: (location, entry) of each plugin entry, in chain order.
    :param chained_types: cnisdk plugin types whose class says ``chained``.
    """
    seen: dict[str, str] = {}
    for position, (where, conf) in enumerate(plugins):
        plugin_type = conf.get("type")
        if not isinstance(plugin_type, str) or not plugin_type:
            continue
        type_loc = join(where, "type")
        if position == 0:
            if plugin_type in _CHAINED_ONLY or plugin_type in chained_types:
                findings.append(
                    finding(
                        "CV400",
                        f"{plugin_type} only works after another plugin (it needs the previous "
                        "result): put an interface-creating plugin such as bridge or ptp before "
                        "it",
                        type_loc,
                    )
                )
            elif plugin_type in _IPAM_PLUGINS:
                findings.append(
                    finding(
                        "CV402",
                        f"{plugin_type} is an IPAM plugin: it allocates addresses but creates no "
                        "interface. Use a main plugin (bridge, ptp, macvlan, ...) first and put "
                        f'{{"type": "{plugin_type}"}} in its ipam',
                        type_loc,
                    )
                )
        elif plugin_type in _INTERFACE_PLUGINS and plugin_type not in _MAY_CHAIN_LATER:
            findings.append(
                finding(
                    "CV404",
                    f"{plugin_type} creates the container interface, but it is plugin "
                    f"{position + 1} of the chain, where the interface already exists; make it "
                    "the first plugin or put it in a separate network",
                    type_loc,
                )
            )
        if plugin_type in seen:
            findings.append(
                finding(
                    "CV401",
                    f"{plugin_type} already runs at {seen[plugin_type]}; a plugin type usually "
                    "appears once per chain: merge the entries or remove one",
                    type_loc,
                )
            )
        else:
            seen[plugin_type] = type_loc
