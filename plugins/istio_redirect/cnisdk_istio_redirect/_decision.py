"""Istio's sidecar redirect decision, as pure functions.

:func:`skip_reason` applies the skip rules of Istio's CNI plugin (``doAddRun``) in Istio's
order, :func:`redirect_spec_for` turns the pod's annotations, proxy env and securityContext
into a :class:`~cnisdk_istio_redirect._redirect.RedirectSpec` the way ``NewRedirect`` does,
and :func:`decide_from_annotations` says when the annotations a container runtime passes to the
plugin are enough to decide without asking the API server.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._pod import ISTIO_INIT, ISTIO_PROXY, PodInfo
from ._redirect import CAPTURE_ALL, RedirectSpec

__all__ = [
    "ANNOTATION_EXCLUDE_INBOUND_PORTS",
    "ANNOTATION_EXCLUDE_INTERFACES",
    "ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES",
    "ANNOTATION_EXCLUDE_OUTBOUND_PORTS",
    "ANNOTATION_INCLUDE_INBOUND_PORTS",
    "ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES",
    "ANNOTATION_INCLUDE_OUTBOUND_PORTS",
    "ANNOTATION_INJECT",
    "ANNOTATION_INTERCEPTION_MODE",
    "ANNOTATION_KUBEVIRT_INTERFACES",
    "ANNOTATION_REROUTE_VIRTUAL_INTERFACES",
    "ANNOTATION_STATUS",
    "LABEL_INJECT",
    "FastPathVerdict",
    "InvalidAnnotationError",
    "decide_from_annotations",
    "parse_go_bool",
    "redirect_spec_for",
    "skip_reason",
]

_log = logging.getLogger(__name__)

ANNOTATION_INJECT = "sidecar.istio.io/inject"
LABEL_INJECT = "sidecar.istio.io/inject"
ANNOTATION_STATUS = "sidecar.istio.io/status"
ANNOTATION_INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/includeOutboundIPRanges"
ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
ANNOTATION_INCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
ANNOTATION_EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
ANNOTATION_INCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/includeOutboundPorts"
ANNOTATION_EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
ANNOTATION_EXCLUDE_INTERFACES = "traffic.sidecar.istio.io/excludeInterfaces"
ANNOTATION_REROUTE_VIRTUAL_INTERFACES = "istio.io/reroute-virtual-interfaces"
ANNOTATION_KUBEVIRT_INTERFACES = "traffic.sidecar.istio.io/kubevirtInterfaces"  # deprecated

_ENV_DISABLE_ENVOY = "DISABLE_ENVOY"
_ENV_DNS_CAPTURE = "ISTIO_META_DNS_CAPTURE"
_ENV_DUAL_STACK = "ISTIO_DUAL_STACK"
_ENV_INVALID_DROP = "INVALID_DROP"

# The ports Istio always appends to excludeInboundPorts (agent status, health, Envoy metrics).
_ALWAYS_EXCLUDED_INBOUND = (15020, 15021, 15090)
_DEFAULT_EXCLUDE_INBOUND = "15020"
_DEFAULT_EXCLUDE_OUTBOUND = "15020"  # CNI-only default; a value replaces it

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_PORT_RE = re.compile(r"[0-9]+")
_PREFIX_BITS_RE = re.compile(r"0|[1-9][0-9]*")
_IFACE_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_.\-]*")


class InvalidAnnotationError(ValueError):
    """A pod annotation has a value Istio rejects (or whose rules could never load).

    Istio fails the CNI ADD in this case, so the pod stays in ``ContainerCreating`` (fail
    closed).  ``annotation`` is the key, ``value`` the offending value, ``reason`` the detail
    and ``pod`` the pod as ``namespace/name`` when known.
    """

    def __init__(self, annotation: str, value: str, reason: str, pod: str = "") -> None:
        self.annotation = annotation
        self.value = value
        self.reason = reason
        self.pod = pod
        where = f"pod {pod}: " if pod else ""
        super().__init__(f"{where}invalid value {value!r} for annotation {annotation}: {reason}")


def parse_go_bool(value: str) -> bool | None:
    """Parse a boolean like Go's ``strconv.ParseBool``.

    :param value: the text; exactly one of ``1 t T TRUE true True`` or ``0 f F FALSE false
        False`` (no surrounding spaces).
    :returns: the boolean, or ``None`` if Go would return an error.
    """
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    return None


# --------------------------------------------------------------------------- skip rules


def skip_reason(pod: PodInfo) -> str | None:
    """Why Istio's CNI plugin leaves this pod alone, or ``None`` if it sets up redirection.

    The rules run in Istio's order and the first match wins:

    1. a container (init or regular) is named ``istio-init`` (the pod redirects itself);
    2. ``istio-proxy`` has env ``DISABLE_ENVOY`` that parses true (Go ``ParseBool``);
    3. there is no ``istio-proxy`` container (init or regular);
    4. ``istio-proxy`` args are ``proxy <type> ...`` with a type other than ``sidecar``;
    5. the ``sidecar.istio.io/inject`` label, or the annotation when there is no such label,
       parses false.  A present label always wins, even an empty or unparsable one (which
       then disables nothing); an unparsable value is ignored;
    6. the ``sidecar.istio.io/status`` annotation is missing (the injector did not run).

    Namespace exclusion, the agent's own pod and ambient happen before this and are not
    covered here.

    :param pod: the pod facts.
    :returns: a human-readable reason, or ``None`` when the pod must be redirected.
    """
    if ISTIO_INIT in pod.containers:
        return f"pod has an {ISTIO_INIT} container (it programs its own redirection)"
    disable = pod.proxy_env.get(_ENV_DISABLE_ENVOY)
    if disable is not None and parse_go_bool(disable):
        return f"{ISTIO_PROXY} has {_ENV_DISABLE_ENVOY}={disable}"
    if ISTIO_PROXY not in pod.containers:
        have = ", ".join(sorted(set(pod.containers))) or "none"
        return f"pod has no {ISTIO_PROXY} container (containers: {have})"
    proxy_type = pod.proxy_type
    if proxy_type not in ("", "sidecar"):
        return f"{ISTIO_PROXY} runs proxy type {proxy_type!r}, not 'sidecar'"
    source, value = "annotation", pod.annotations.get(ANNOTATION_INJECT, "")
    if LABEL_INJECT in pod.labels:
        source, value = "label", pod.labels[LABEL_INJECT]
    if value and parse_go_bool(value) is False:
        return f"injection disabled by {source} {ANNOTATION_INJECT}={value}"
    if ANNOTATION_STATUS not in pod.annotations:
        return f"no {ANNOTATION_STATUS} annotation (the sidecar injector did not run)"
    return None


# --------------------------------------------------------------------------- validation


def _go_prefix_error(text: str) -> str | None:
    """Why Go's ``netip.ParsePrefix`` rejects ``text``, or ``None`` if it accepts it."""
    addr_text, slash, bits_text = text.rpartition("/")
    if not slash:
        return f"{text!r}: no '/'"
    if "%" in addr_text:
        return f"{text!r}: IPv6 zones cannot be present in a prefix"
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if ":" in addr_text:
            address = ipaddress.IPv6Address(addr_text)
        else:
            # Python, like Go, rejects octets with leading zeros and short forms.
            address = ipaddress.IPv4Address(addr_text)
    except ValueError as exc:
        return f"{text!r}: {exc}"
    if not _PREFIX_BITS_RE.fullmatch(bits_text):
        return f"{text!r}: bad bits after slash: {bits_text!r}"
    if int(bits_text) > address.max_prefixlen:
        return f"{text!r}: prefix length out of range"
    return None


def _cidrs(key: str, value: str, *, wildcard: bool) -> tuple[str, ...]:
    if value == CAPTURE_ALL:
        if wildcard:
            return (CAPTURE_ALL,)
        raise InvalidAnnotationError(key, value, "'*' is not allowed here; list CIDRs")
    if not value:
        return ()
    cidrs = value.split(",")
    for cidr in cidrs:
        problem = _go_prefix_error(cidr)
        if problem is not None:
            raise InvalidAnnotationError(key, value, f"bad CIDR {problem}")
    return tuple(cidrs)


def _ports(key: str, value: str) -> list[int]:
    """Go's ``parsePorts``: trim, split on ``,``, each trimmed token a 0-65535 decimal."""
    ports: list[int] = []
    if not value.strip():
        return ports
    for token in value.strip().split(","):
        digits = token.strip()
        if not _PORT_RE.fullmatch(digits) or int(digits) > 65535:
            raise InvalidAnnotationError(key, value, f"bad port {token!r} (want 0-65535)")
        ports.append(int(digits))
    return ports


def _port_list(key: str, value: str) -> tuple[int, ...] | None:
    """Istio's ``validatePortListWithWildcard``: ``None`` for exactly ``*``, else the ports."""
    if value == CAPTURE_ALL:
        return None
    return tuple(_ports(key, value))


def _loadable_ports(key: str, value: str, ports: tuple[int, ...] | None) -> tuple[int, ...]:
    """Ports of a list Istio always writes into rules: ``*`` and blank values cannot load."""
    if ports is None or (value and not value.strip()):
        raise _unloadable(key, value)
    return ports


def _unloadable(key: str, value: str) -> InvalidAnnotationError:
    # Istio's validator lets '*' and blank values through for some lists, but the iptables
    # rules it then writes ("--dport *", "--dport  ") fail to load and ADD fails.  We fail at
    # decision time instead, with a clearer message.
    what = "'*'" if value.strip() == CAPTURE_ALL else "a blank value"
    return InvalidAnnotationError(
        key, value, f"{what} passes Istio's validation but its generated rules fail to load"
    )


def _interfaces(key: str, value: str) -> tuple[str, ...]:
    if not value:
        return ()
    names: list[str] = []
    for token in value.split(","):
        name = token.strip()
        if not name:
            raise InvalidAnnotationError(key, value, "empty interface name")
        if len(name) > 15:
            raise InvalidAnnotationError(key, value, f"interface name {name!r} too long (max 15)")
        if not _IFACE_RE.fullmatch(name):
            raise InvalidAnnotationError(
                key, value, f"interface name {name!r} contains invalid characters"
            )
        names.append(name)
    return tuple(names)


def _env_flag(pod: PodInfo, name: str) -> bool:
    raw = pod.proxy_env.get(name)
    if raw is None:
        return False
    parsed = parse_go_bool(raw)
    if parsed is None:
        _log.warning(
            "pod %s: cannot parse %s env value %r as a boolean; using false", pod.ref, name, raw
        )
        return False
    return parsed


def _spec_from(pod: PodInfo) -> RedirectSpec:
    ann = pod.annotations

    mode_value = ann.get(ANNOTATION_INTERCEPTION_MODE, "REDIRECT")
    mode: Literal["REDIRECT", "TPROXY"]
    if mode_value == "REDIRECT":
        mode = "REDIRECT"
    elif mode_value == "TPROXY":
        mode = "TPROXY"
    else:
        raise InvalidAnnotationError(
            ANNOTATION_INTERCEPTION_MODE, mode_value, "want REDIRECT or TPROXY"
        )

    uid = pod.proxy_uid if pod.proxy_uid else 1337
    gid = pod.proxy_gid if pod.proxy_gid else 1337

    include_cidrs = _cidrs(
        ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES,
        ann.get(ANNOTATION_INCLUDE_OUTBOUND_IP_RANGES, CAPTURE_ALL),
        wildcard=True,
    )
    exclude_cidrs = _cidrs(
        ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES,
        ann.get(ANNOTATION_EXCLUDE_OUTBOUND_IP_RANGES, ""),
        wildcard=False,
    )

    # Syntax first, in Istio's order; then the values whose rules would not load.
    excl_in_value = ann.get(ANNOTATION_EXCLUDE_INBOUND_PORTS, _DEFAULT_EXCLUDE_INBOUND)
    excl_in = _port_list(ANNOTATION_EXCLUDE_INBOUND_PORTS, excl_in_value)
    incl_in_value = ann.get(ANNOTATION_INCLUDE_INBOUND_PORTS, CAPTURE_ALL)
    incl_in = _port_list(ANNOTATION_INCLUDE_INBOUND_PORTS, incl_in_value)
    excl_out_value = ann.get(ANNOTATION_EXCLUDE_OUTBOUND_PORTS, _DEFAULT_EXCLUDE_OUTBOUND)
    excl_out = _port_list(ANNOTATION_EXCLUDE_OUTBOUND_PORTS, excl_out_value)
    incl_out_value = ann.get(ANNOTATION_INCLUDE_OUTBOUND_PORTS, "")
    incl_out = _port_list(ANNOTATION_INCLUDE_OUTBOUND_PORTS, incl_out_value)
    exclude_ifaces = _interfaces(
        ANNOTATION_EXCLUDE_INTERFACES, ann.get(ANNOTATION_EXCLUDE_INTERFACES, "")
    )
    if ANNOTATION_REROUTE_VIRTUAL_INTERFACES in ann:
        # Present (even empty) wins over the deprecated kubevirtInterfaces.
        reroute = _interfaces(
            ANNOTATION_REROUTE_VIRTUAL_INTERFACES, ann[ANNOTATION_REROUTE_VIRTUAL_INTERFACES]
        )
    else:
        reroute = _interfaces(
            ANNOTATION_KUBEVIRT_INTERFACES, ann.get(ANNOTATION_KUBEVIRT_INTERFACES, "")
        )

    # excludeInboundPorts only matters when every inbound port is captured.
    if excl_in is None and incl_in is None:
        raise _unloadable(ANNOTATION_EXCLUDE_INBOUND_PORTS, excl_in_value)
    if incl_in_value and not incl_in_value.strip():
        raise _unloadable(ANNOTATION_INCLUDE_INBOUND_PORTS, incl_in_value)
    excl_out_ports = _loadable_ports(ANNOTATION_EXCLUDE_OUTBOUND_PORTS, excl_out_value, excl_out)
    incl_out_ports = _loadable_ports(ANNOTATION_INCLUDE_OUTBOUND_PORTS, incl_out_value, incl_out)
    # Istio appends 15020,15021,15090 and de-duplicates, keeping first occurrences.
    exclude_inbound = tuple(dict.fromkeys([*(excl_in or ()), *_ALWAYS_EXCLUDED_INBOUND]))

    return RedirectSpec(
        mode=mode,
        proxy_uid=uid,
        proxy_gid=gid,
        include_outbound_cidrs=include_cidrs,
        exclude_outbound_cidrs=exclude_cidrs,
        include_inbound_ports=(CAPTURE_ALL,) if incl_in is None else tuple(map(str, incl_in)),
        exclude_inbound_ports=exclude_inbound,
        include_outbound_ports=incl_out_ports,
        exclude_outbound_ports=excl_out_ports,
        exclude_interfaces=exclude_ifaces,
        reroute_virtual_interfaces=reroute,
        dns_capture=_env_flag(pod, _ENV_DNS_CAPTURE),
        dual_stack=_env_flag(pod, _ENV_DUAL_STACK),
        invalid_drop=_env_flag(pod, _ENV_INVALID_DROP),
    )


def redirect_spec_for(pod: PodInfo) -> RedirectSpec:
    """The redirection Istio's ``NewRedirect`` derives for a pod that is not skipped.

    Annotations (defaults in brackets), checked in Istio's order:

    - ``sidecar.istio.io/interceptionMode`` [``REDIRECT``]: ``REDIRECT`` or ``TPROXY``;
    - ``traffic.sidecar.istio.io/includeOutboundIPRanges`` [``*``]: ``*``, comma-separated
      CIDRs (Go ``netip.ParsePrefix`` syntax: no spaces, prefix length required, host bits
      allowed) or ``""`` for no outbound capture;
    - ``…/excludeOutboundIPRanges`` [``""``]: CIDRs (``*`` is invalid);
    - ``…/excludeInboundPorts`` [``15020``]: ports; ``15020,15021,15090`` are always appended
      and duplicates dropped (first occurrence kept);
    - ``…/includeInboundPorts`` [``*``]: ``*``, ports, or ``""`` for no inbound capture;
    - ``…/excludeOutboundPorts`` [``15020``]: ports; a value (even ``""``) replaces the default;
    - ``…/includeOutboundPorts`` [``""``]: ports;
    - ``…/excludeInterfaces`` [``""``]: interface names;
    - ``istio.io/reroute-virtual-interfaces`` when present (even empty), else the deprecated
      ``traffic.sidecar.istio.io/kubevirtInterfaces`` [``""``]: interface names.

    Ports are decimal 0-65535, spaces around each allowed.  Interface names are trimmed, at
    most 15 characters, ``[a-zA-Z][a-zA-Z0-9_.-]*``.  Istio's validators accept ``*`` and
    blank values for the exclude-inbound, exclude/include-outbound port lists and a blank
    include-inbound list, but the rules it then generates fail to load, so ADD fails anyway;
    here they raise :class:`InvalidAnnotationError` up front.  A blank excludeInboundPorts
    is fine (Istio trims it).

    ``istio-proxy`` ``securityContext.runAsUser``/``runAsGroup`` replace the 1337 defaults
    when set and non-zero.  Env ``ISTIO_META_DNS_CAPTURE``, ``ISTIO_DUAL_STACK`` and
    ``INVALID_DROP`` turn on DNS capture, dual-stack and INVALID drop when they parse true; an
    unparsable value logs a warning and counts as false (as in Istio).

    :param pod: the pod facts (call :func:`skip_reason` first).
    :returns: the redirect spec.
    :raises InvalidAnnotationError: if an annotation value is invalid; Istio fails ADD then.
    """
    try:
        return _spec_from(pod)
    except InvalidAnnotationError as exc:
        if exc.pod or not (pod.name or pod.namespace):
            raise
        raise InvalidAnnotationError(exc.annotation, exc.value, exc.reason, pod.ref) from None


# --------------------------------------------------------------------------- fast path


@dataclass(frozen=True)
class FastPathVerdict:
    """What the runtime-supplied annotations alone tell about a pod.

    Exactly one of ``skip_reason`` (decided: skip the pod) and ``lookup_reason`` (undecided:
    fetch the pod from the API server, then use :func:`skip_reason` and
    :func:`redirect_spec_for`) is set.
    """

    skip_reason: str | None = None
    lookup_reason: str | None = None

    @property
    def decided(self) -> bool:
        """``True`` when the pod can be skipped without an API lookup."""
        return self.skip_reason is not None


def decide_from_annotations(annotations: object) -> FastPathVerdict:
    """Decide from the pod annotations a runtime passes, if that is safe.

    containerd passes them as ``runtimeConfig["io.kubernetes.cri.pod-annotations"]`` when the
    plugin declares that capability.  Annotations carry neither containers, proxy env, labels
    nor securityContext, so only one outcome is decidable:

    ============================================  ===========================================
    annotations                                   verdict
    ============================================  ===========================================
    ``None``, not a mapping, a non-string key or  lookup (cannot trust the input)
    value
    empty mapping                                 lookup (cannot be told apart from a runtime
                                                  that declares the capability but passes
                                                  nothing; kubelet normally adds its own
                                                  ``kubernetes.io/config.*`` annotations)
    no ``sidecar.istio.io/status``                **skip**: every path of Istio's decision
                                                  that does not end in "skip" requires that
                                                  annotation, whatever containers, env and
                                                  labels say
    ``sidecar.istio.io/status`` present           lookup: the pod may still be skipped
                                                  (istio-init, DISABLE_ENVOY, no istio-proxy,
                                                  gateway, inject label) and the spec needs
                                                  proxy env (DNS capture, dual stack, INVALID
                                                  drop) and securityContext (uid/gid)
    ============================================  ===========================================

    Not decisive on their own, hence lookups: ``sidecar.istio.io/inject: "false"`` (a label,
    invisible here, wins over the annotation, e.g. ``inject=true`` label); an invalid redirect
    annotation (Istio only fails ADD if no earlier rule skips the pod, e.g. an ``istio-init``
    container).  The skip reason reported here can differ from the one the full decision
    would give (an earlier rule may match first), but the outcome, skip, is the same.

    :param annotations: the runtime-supplied annotations, or ``None`` when absent.
    :returns: the verdict; when in doubt it asks for the lookup (fail closed).
    """
    if annotations is None:
        return FastPathVerdict(lookup_reason="the runtime passed no pod annotations")
    if not isinstance(annotations, Mapping):
        return FastPathVerdict(lookup_reason="runtime pod annotations are not a JSON object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        return FastPathVerdict(lookup_reason="runtime pod annotations hold non-string entries")
    if not annotations:
        return FastPathVerdict(lookup_reason="the runtime passed an empty annotation map")
    if ANNOTATION_STATUS not in annotations:
        return FastPathVerdict(
            skip_reason=f"no {ANNOTATION_STATUS} annotation (the sidecar injector did not run)"
        )
    return FastPathVerdict(
        lookup_reason=f"{ANNOTATION_STATUS} is set; containers, env and labels are needed"
    )
