"""What the redirect decision needs from a Kubernetes Pod object.

:class:`PodInfo` holds the handful of facts Istio's CNI plugin reads from the pod it fetched
from the API server; :func:`pod_info_from_api` builds it from the raw JSON (``dict``) of a
``core/v1`` Pod, tolerating ``null`` and missing fields the way a Go client would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ISTIO_INIT", "ISTIO_PROXY", "PodInfo", "pod_info_from_api"]

ISTIO_INIT = "istio-init"
"""Init container of the non-CNI injection; its presence means the pod programs its own rules."""

ISTIO_PROXY = "istio-proxy"
"""The sidecar container (a regular container, or a native-sidecar init container)."""


@dataclass(frozen=True)
class PodInfo:
    """The parts of a Pod that decide whether and how Istio redirects its traffic.

    ``containers`` lists init containers first, then regular containers (Istio reads both so a
    native sidecar, i.e. ``istio-proxy`` as an init container with ``restartPolicy: Always``, is
    found).  ``proxy_env`` maps every ``env`` name of ``istio-proxy`` to its literal ``value``;
    an entry that uses ``valueFrom`` maps to ``""`` (Go reads ``EnvVar.Value``, which is empty
    then).  ``proxy_uid``/``proxy_gid`` are ``securityContext.runAsUser``/``runAsGroup`` of
    ``istio-proxy`` when set.
    """

    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    proxy_env: Mapping[str, str] = field(default_factory=dict)
    proxy_args: tuple[str, ...] = ()
    proxy_uid: int | None = None
    proxy_gid: int | None = None

    @property
    def ref(self) -> str:
        """The pod as ``namespace/name``, for messages."""
        return f"{self.namespace}/{self.name}"

    @property
    def proxy_type(self) -> str:
        """The proxy type from ``istio-proxy`` args ``["proxy", <type>, ...]``, else ``""``.

        Injected sidecars run ``proxy sidecar``; gateways run ``proxy router``.
        """
        if len(self.proxy_args) >= 2 and self.proxy_args[0] == "proxy":
            return self.proxy_args[1]
        return ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value
    return ()


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else "" for k, v in _mapping(value).items()}


def _opt_int(value: Any) -> int | None:
    # JSON integers only; bool is an int subclass in Python but never a valid runAsUser.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def pod_info_from_api(obj: Mapping[str, Any]) -> PodInfo:
    """Build a :class:`PodInfo` from the JSON of a Pod as the API server returns it.

    Missing or ``null`` fields become empty values; entries of the wrong JSON type are ignored
    rather than trusted.  Containers are collected from ``spec.initContainers`` then
    ``spec.containers``; the ``istio-proxy`` one (in either list) supplies env, args and
    securityContext.  If both lists somehow hold an ``istio-proxy``, later entries win for env
    names and the last one wins for args and securityContext, as in Istio.

    :param obj: the decoded Pod object (``{"metadata": ..., "spec": ...}``).
    :returns: the extracted facts.
    :raises TypeError: if ``obj`` is not a mapping.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a Pod object must be a JSON object, not {type(obj).__name__}")
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))

    names: list[str] = []
    env: dict[str, str] = {}
    args: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    all_containers = [*_sequence(spec.get("initContainers")), *_sequence(spec.get("containers"))]
    for raw in all_containers:
        container = _mapping(raw)
        cname = container.get("name")
        if not isinstance(cname, str):
            continue
        names.append(cname)
        if cname != ISTIO_PROXY:
            continue
        for raw_var in _sequence(container.get("env")):
            var = _mapping(raw_var)
            vname = var.get("name")
            if isinstance(vname, str):
                value = var.get("value")
                env[vname] = value if isinstance(value, str) else ""
        args = tuple(a for a in _sequence(container.get("args")) if isinstance(a, str))
        sc = container.get("securityContext")
        if isinstance(sc, Mapping):
            uid = _opt_int(sc.get("runAsUser"))
            gid = _opt_int(sc.get("runAsGroup"))
        else:
            uid = gid = None

    name = meta.get("name")
    namespace = meta.get("namespace")
    return PodInfo(
        name=name if isinstance(name, str) else "",
        namespace=namespace if isinstance(namespace, str) else "",
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        containers=tuple(names),
        proxy_env=env,
        proxy_args=args,
        proxy_uid=uid,
        proxy_gid=gid,
    )
