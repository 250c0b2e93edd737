"""istio-redirect's config: Istio's current flat fields and the legacy ``kubernetes`` shape.

An existing istio-cni conflist entry works with only ``type`` changed. Fields this model does
not know are kept (and written back) unchanged.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnisdk import NetConf

__all__ = ["IstioRedirectConfig", "KubernetesSection"]

DEFAULT_RUN_DIR = "/var/run/istio-cni"
KUBECONFIG_NAME = "istio-cni-kubeconfig"


class KubernetesSection(BaseModel):
    """The legacy (Istio <= 1.23) ``kubernetes`` object."""

    model_config = ConfigDict(extra="allow")

    kubeconfig: str | None = Field(
        default=None, description="The kubeconfig for pod lookups (wins over the flat key)."
    )
    exclude_namespaces: list[str] | None = Field(
        default=None,
        description="Namespaces whose pods are never redirected (when the flat key is unset).",
    )
    cni_bin_dir: str | None = Field(
        default=None, description="Accepted for compatibility with Istio's legacy entry; not used."
    )
    k8s_api_root: str | None = Field(
        default=None, description="Accepted for compatibility with Istio's legacy entry; not used."
    )
    intercept_type: str | None = Field(
        default=None, description="Accepted for compatibility with Istio's legacy entry; not used."
    )
    node_name: str | None = Field(
        default=None,
        description="The node whose pods the agent's pod cache watches (else $NODE_NAME).",
    )


class IstioRedirectConfig(NetConf):
    """The plugin's entry in a conflist.

    Istio's own fields keep their names (``plugin_log_level``, ``cni_agent_run_dir``,
    ``exclude_namespaces``, ``pod_namespace``, ``native_nftables``, ...). The kubeconfig is
    ``kubernetes.kubeconfig`` when given (legacy shape), else ``kubeconfig``, else
    ``<cni_agent_run_dir>/istio-cni-kubeconfig`` as Istio does; with none of them present
    the in-cluster service account is used.
    """

    plugin_log_level: str | None = Field(
        default=None, description="The plugin's log level (debug, info, warning, error)."
    )
    log_level: str | None = Field(
        default=None, description="The log level's older name, used when plugin_log_level is unset."
    )
    cni_agent_run_dir: str = Field(
        default=DEFAULT_RUN_DIR,
        description="Istio's CNI agent directory (absolute); the default kubeconfig is "
        "istio-cni-kubeconfig in it.",
    )
    exclude_namespaces: list[str] | None = Field(
        default=None, description="Namespaces whose pods are never redirected."
    )
    pod_namespace: str = Field(
        default="",
        description="The namespace Istio's CNI node agent runs in (its own pod is skipped).",
    )
    native_nftables: bool = Field(
        default=False, description="Write nftables rules directly instead of iptables rules."
    )
    ambient_enabled: bool = Field(
        default=False,
        description="Accepted for compatibility with Istio's entry; ambient mode is not "
        "implemented.",
    )
    kubernetes: KubernetesSection | None = Field(
        default=None, description="The legacy (Istio <= 1.23) settings object."
    )
    kubeconfig: str | None = Field(
        default=None, description="The kubeconfig for pod lookups (an absolute path)."
    )
    iptables_backend: Literal["auto", "nft", "legacy"] = Field(
        default="auto",
        description="Which iptables to use: ``auto`` (legacy only when legacy rules already "
        "exist in the pod namespace, else nft, as Istio decides), or forced (Istio's "
        "``FORCE_IPTABLES_BINARY``).",
    )
    kube_api_timeout: float = Field(
        default=5.0, gt=0, le=120, description="Seconds for one pod lookup call."
    )
    kube_api_attempts: int = Field(
        default=5,
        ge=1,
        le=60,
        description="Pod lookup tries before ADD fails (Istio tries 30 times, one second apart).",
    )
    kube_api_backoff: float = Field(
        default=0.5,
        ge=0,
        le=30,
        description="Seconds before the second try; it doubles for each further try, each "
        "wait at most 10 s (or this value, when larger).",
    )

    @field_validator("cni_agent_run_dir", "kubeconfig")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not PurePosixPath(value).is_absolute():
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    @property
    def excluded_namespaces(self) -> frozenset[str]:
        """Namespaces never redirected: the flat list, else the legacy one."""
        if self.exclude_namespaces is not None:
            return frozenset(self.exclude_namespaces)
        if self.kubernetes is not None and self.kubernetes.exclude_namespaces is not None:
            return frozenset(self.kubernetes.exclude_namespaces)
        return frozenset()

    @property
    def effective_log_level(self) -> str | None:
        return self.plugin_log_level or self.log_level

    def kubeconfig_path(self, exists: Any = None) -> str | None:
        """The kubeconfig to use, or ``None`` for the in-cluster service account.

        :param exists: a predicate on paths (``os.path.exists`` by default), for tests.
        """
        import os.path

        check = exists or os.path.exists
        if self.kubernetes is not None and self.kubernetes.kubeconfig:
            return self.kubernetes.kubeconfig
        if self.kubeconfig:
            return self.kubeconfig
        implicit = str(PurePosixPath(self.cni_agent_run_dir) / KUBECONFIG_NAME)
        return implicit if check(implicit) else None
