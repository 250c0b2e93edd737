"""What the redirect decision needs from a Kubernetes Pod object.

:class:`PodInfo` holds the handful of facts Istio's CNI plugin reads from the pod it fetched
from the API server; :func:`pod_info_from_api` builds it from the raw JSON (``dict``) of a
``core/v1`` Pod, reading ``null`` and missing fields as Go's decoder does and refusing fields
of the wrong JSON type as it does; :func:`identity_problem` tells whether an object is the pod
a request is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnisdk.spec._json import go_json_kind, go_quote

__all__ = [
    "ISTIO_INIT",
    "ISTIO_PROXY",
    "PodFormatError",
    "PodInfo",
    "identity_problem",
    "pod_info_from_api",
]

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


class PodFormatError(ValueError):
    """A field the decision reads has a JSON type a Pod cannot have.

    Go's decoder refuses such an object outright (``cannot unmarshal number into ... of type
    string``), so Istio's plugin fails ADD; so does this one, instead of reading the field as
    empty, which could turn "redirect" into "skip". ``str()`` names the field and the JSON
    type found, never the value.
    """

    def __init__(self, path: str, want: str, value: Any) -> None:
        super().__init__(f"field {path} is {_kind(value)}, not {want}")
        self.path = path


def _kind(value: Any) -> str:
    kind = go_json_kind(value) if value is not None else "null"
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _quoted(text: str) -> str:
    # Only on error paths: the scrubber's patterns stay off the exec path of a decided pod.
    from cnisdk_istio_redirect._redact import scrub

    return go_quote(scrub(text, limit=80))


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PodFormatError(path, "an object", value)
    return value


def _array(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PodFormatError(path, "an array", value)
    return value


def _string(value: Any, path: str) -> str:
    # null decodes to Go's zero value, "".
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PodFormatError(path, "a string", value)
    return value


def _string_map(value: Any, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in _object(value, path).items():
        if item is not None and not isinstance(item, str):
            raise PodFormatError(f"{path}[{_quoted(str(key))}]", "a string", item)
        out[str(key)] = item or ""
    return out


def _integer(value: Any, path: str, bits: int) -> int | None:
    # JSON integers only, in the Go field's range: 1337.0, 1e3, true and "1337" are refused.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PodFormatError(path, f"an int{bits}", value)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise PodFormatError(path, f"an int{bits}", value)
    return value


def _check_ports(container: Mapping[str, Any], path: str) -> None:
    for index, raw in enumerate(_array(container.get("ports"), f"{path}.ports")):
        port = _object(raw, f"{path}.ports[{index}]")
        for field_name in ("containerPort", "hostPort"):
            _integer(port.get(field_name), f"{path}.ports[{index}].{field_name}", 32)


def pod_info_from_api(obj: Mapping[str, Any]) -> PodInfo:
    """Build a :class:`PodInfo` from the JSON of a Pod as the API server returns it.

    Missing or ``null`` fields become empty values, as Go decodes them.  A field the decision
    reads (labels, annotations, the container lists, names, env, args, ports, securityContext
    ids) with another JSON type raises :class:`PodFormatError`: Go's client refuses such an
    answer, and reading it as empty could skip a pod that needs redirection.  Containers are
    collected from ``spec.initContainers`` then ``spec.containers``; the ``istio-proxy`` one
    (in either list) supplies env, args and securityContext.  If both lists somehow hold an
    ``istio-proxy``, later entries win for env names and the last one wins for args and
    securityContext, as in Istio.

    :param obj: the decoded Pod object (``{"metadata": ..., "spec": ...}``).
    :returns: the extracted facts.
    :raises TypeError: if ``obj`` is not a mapping.
    :raises PodFormatError: if a field the decision reads has the wrong JSON type.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a Pod object must be a JSON object, not {_kind(obj)}")
    meta = _object(obj.get("metadata"), "metadata")
    spec = _object(obj.get("spec"), "spec")

    names: list[str] = []
    env: dict[str, str] = {}
    args: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    all_containers = [
        (f"spec.{key}[{index}]", raw)
        for key in ("initContainers", "containers")
        for index, raw in enumerate(_array(spec.get(key), f"spec.{key}"))
    ]
    for path, raw in all_containers:
        container = _object(raw, path)
        cname = _string(container.get("name"), f"{path}.name")
        _check_ports(container, path)
        names.append(cname)
        if cname != ISTIO_PROXY:
            continue
        for index, raw_var in enumerate(_array(container.get("env"), f"{path}.env")):
            var = _object(raw_var, f"{path}.env[{index}]")
            vname = _string(var.get("name"), f"{path}.env[{index}].name")
            # valueFrom entries have no value: Go's EnvVar.Value is "" then.
            env[vname] = _string(var.get("value"), f"{path}.env[{index}].value")
        args = tuple(
            _string(a, f"{path}.args[{index}]")
            for index, a in enumerate(_array(container.get("args"), f"{path}.args"))
        )
        sc = _object(container.get("securityContext"), f"{path}.securityContext")
        uid = _integer(sc.get("runAsUser"), f"{path}.securityContext.runAsUser", 64)
        gid = _integer(sc.get("runAsGroup"), f"{path}.securityContext.runAsGroup", 64)

    return PodInfo(
        name=_string(meta.get("name"), "metadata.name"),
        namespace=_string(meta.get("namespace"), "metadata.namespace"),
        labels=_string_map(meta.get("labels"), "metadata.labels"),
        annotations=_string_map(meta.get("annotations"), "metadata.annotations"),
        containers=tuple(names),
        proxy_env=env,
        proxy_args=args,
        proxy_uid=uid,
        proxy_gid=gid,
    )


def identity_problem(obj: Any, namespace: str, name: str, uid: str = "") -> str | None:
    """Why ``obj`` is not the pod ``namespace/name`` with ``uid``, or ``None`` when it is.

    The decision is made from the object an API server (or the watch-fed cache) returned for
    the pod the runtime is starting; an object with another namespace or name, without
    ``metadata``, or (when the runtime passed ``K8S_POD_UID``) with another or no
    ``metadata.uid`` is some other pod, e.g. one deleted and recreated under the same name,
    and must never decide.

    :param uid: the runtime's ``K8S_POD_UID``; ``""`` when it passed none.
    """
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return "the object has no metadata"
    got_namespace, got_name = meta.get("namespace"), meta.get("name")
    if got_namespace != namespace or got_name != name:
        return f"it is pod {_shown(got_namespace)}/{_shown(got_name)}"
    if uid and meta.get("uid") != uid:
        return f"its uid is {_shown(meta.get('uid'))}, the runtime's K8S_POD_UID is {_shown(uid)}"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return _quoted(value)
    return "(none)" if value is None else f"({_kind(value)})"
