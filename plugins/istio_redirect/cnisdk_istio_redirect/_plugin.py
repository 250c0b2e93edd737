"""The istio-redirect plugin: decide from the pod, then install the redirect rules.

It fails closed: once a pod is known to need redirection, any error fails ADD with a CNI error
that names the pod, so the pod never starts with traffic that bypasses its proxy.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import anyio

from cnisdk import CNIError, Context, ErrorCode, KubernetesArgs, Plugin, Result
from cnisdk_istio_redirect._config import IstioRedirectConfig
from cnisdk_istio_redirect._decision import (
    InvalidAnnotationError,
    decide_from_annotations,
    redirect_spec_for,
    skip_reason,
)
from cnisdk_istio_redirect._iptables_rules import Family
from cnisdk_istio_redirect._pod import pod_info_from_api
from cnisdk_istio_redirect._redirect import RedirectSpec

if TYPE_CHECKING:
    from cnisdk_istio_redirect._pod_cache import PodCaches

__all__ = ["IstioRedirect"]

POD_ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"
AGENT_POD_PREFIX = "istio-cni-node-"


class IstioRedirect(Plugin[IstioRedirectConfig]):
    """Istio sidecar traffic redirection, as Istio's ``istio-cni`` plugin does it."""

    chained = True
    # Pod annotations from the runtime decide most pods without an API call.
    capabilities = (POD_ANNOTATIONS_CAPABILITY,)
    about = "CNI plugin istio-redirect (cnisdk): Istio sidecar traffic redirection"
    _pod_caches: PodCaches | None = None

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[None]:
        """In a ``cnisdk agent``: keep a watch-fed cache of this node's pods (``_pod_cache``)."""
        from cnisdk_istio_redirect._pod_cache import PodCaches

        async with PodCaches.running() as caches:
            self._pod_caches = caches
            try:
                yield
            finally:
                self._pod_caches = None

    def log_settings(self, config: IstioRedirectConfig) -> tuple[str | None, str | None]:
        return config.effective_log_level, None

    async def add(self, ctx: Context[IstioRedirectConfig]) -> Result:
        prev = ctx.require_prev_result()  # chained: the skel refused ADD without one
        decided = await self._decide(ctx)
        if decided is None:
            return prev
        pod_ref, spec = decided
        with _errors_name_pod(pod_ref, "failed to set up redirection"):
            families = await _pod_families(ctx, spec)
            await _apply(ctx, spec, families)
        ctx.log.info(
            "pod %s: redirection installed (%s, IPv%s)",
            pod_ref,
            spec.mode,
            "+IPv".join(map(str, families)),
        )
        return prev

    async def check(self, ctx: Context[IstioRedirectConfig]) -> None:
        decided = await self._decide(ctx)
        if decided is None:
            return
        pod_ref, spec = decided
        with _errors_name_pod(pod_ref, "cannot read the redirect rules"):
            families = await _pod_families(ctx, spec)
            problems = await _verify(ctx, spec, families)
        if problems:
            raise CNIError(
                ErrorCode.INTERNAL,
                f"istio-redirect: pod {pod_ref}: redirect rules are not as ADD installed them",
                "; ".join(problems),
            )

    async def delete(self, ctx: Context[IstioRedirectConfig]) -> None:
        # The rules live in the pod's namespace and go away with it, as in Istio.
        ctx.log.debug("DEL container=%s: nothing to remove", ctx.container_id)

    async def _decide(self, ctx: Context[IstioRedirectConfig]) -> tuple[str, RedirectSpec] | None:
        """``(pod, spec)`` when the pod must be redirected, ``None`` when it is skipped."""
        config = ctx.config
        args = ctx.load_args(KubernetesArgs)
        name, namespace = args.K8S_POD_NAME, args.K8S_POD_NAMESPACE
        if not name or not namespace:
            ctx.log.info(
                "no K8S_POD_NAME/K8S_POD_NAMESPACE in CNI_ARGS: not a Kubernetes pod, skip"
            )
            return None
        pod_ref = f"{namespace}/{name}"
        if namespace in config.excluded_namespaces:
            ctx.log.info("pod %s: namespace is excluded, skip", pod_ref)
            return None
        if (
            config.pod_namespace
            and namespace == config.pod_namespace
            and name.startswith(AGENT_POD_PREFIX)
        ):
            ctx.log.info("pod %s: the istio-cni node agent itself, skip", pod_ref)
            return None
        verdict = decide_from_annotations(ctx.runtime_config.get(POD_ANNOTATIONS_CAPABILITY))
        if verdict.skip_reason is not None:
            ctx.log.info(
                "pod %s: %s (from runtime annotations), skip", pod_ref, verdict.skip_reason
            )
            return None
        obj = await _lookup_pod(config, namespace, name, self._pod_caches, args.K8S_POD_UID)
        try:
            pod = pod_info_from_api(obj)
            reason = skip_reason(pod)
        except Exception as exc:  # fail closed, and say which pod
            raise CNIError(
                ErrorCode.INTERNAL, f"istio-redirect: pod {pod_ref}: cannot read the pod: {exc}"
            ) from exc
        if reason is not None:
            ctx.log.info("pod %s: %s, skip", pod_ref, reason)
            return None
        try:
            return pod_ref, redirect_spec_for(pod)
        except InvalidAnnotationError as exc:
            # The exception's own text starts with the pod too; name it once.
            detail = f"invalid value {exc.value!r} for annotation {exc.annotation}: {exc.reason}"
            raise CNIError(
                ErrorCode.INVALID_NETWORK_CONFIG, f"istio-redirect: pod {pod_ref}: {detail}"
            ) from exc


@contextlib.contextmanager
def _errors_name_pod(pod_ref: str, failure: str) -> Iterator[None]:
    """Turn any error into a CNI error that names the pod: the runtime logs only that line."""
    try:
        yield
    except CNIError as exc:
        raise CNIError(exc.code, f"istio-redirect: pod {pod_ref}: {exc.msg}", exc.details) from exc
    except Exception as exc:
        message = f"istio-redirect: pod {pod_ref}: {failure}: {exc}"
        raise CNIError(ErrorCode.INTERNAL, message) from exc


async def _lookup_pod(
    config: IstioRedirectConfig,
    namespace: str,
    name: str,
    caches: PodCaches | None = None,
    uid: str = "",
) -> dict[str, Any]:
    # In an agent the watch-fed cache answers most lookups; a miss GETs the pod.
    if caches is not None and (cached := caches.lookup(config, namespace, name, uid)):
        return cached
    # The HTTP client is imported only here: skipped pods never pay for it.
    from cnisdk_istio_redirect import _kube

    pod_ref = f"{namespace}/{name}"
    try:
        path = config.kubeconfig_path()
        kube = _kube.load_kubeconfig(path) if path else _kube.load_incluster_config()
    except _kube.KubeConfigError as exc:
        raise CNIError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"istio-redirect: pod {pod_ref}: cannot reach the Kubernetes API: {exc}",
        ) from exc
    try:
        # In an agent the client (and its connection) is shared across requests.
        client = None if caches is None else caches.client(kube, config.kube_api_timeout)
        return await _kube.get_pod(
            kube,
            namespace,
            name,
            timeout=config.kube_api_timeout,
            attempts=config.kube_api_attempts,
            backoff=config.kube_api_backoff,
            uid=uid,
            client=client,
        )
    except _kube.KubeError as exc:
        code = ErrorCode.TRY_AGAIN_LATER if exc.retryable else ErrorCode.INTERNAL
        raise CNIError(code, f"istio-redirect: pod {pod_ref}: {exc}") from exc


async def _pod_families(
    ctx: Context[IstioRedirectConfig], spec: RedirectSpec
) -> tuple[Family, ...]:
    """Which IP families get rules, by Istio's rule on the pod's addresses.

    IPv4 rules are always installed. IPv6 rules are added when the first pod address is IPv6,
    or with ``ISTIO_DUAL_STACK`` when any is. Addresses come from prevResult, else from the
    namespace itself.
    """
    addresses = (
        [ipaddress.ip_interface(ip.address).ip for ip in ctx.prev_result.ips]
        if (ctx.prev_result)
        else []
    )
    if not addresses:
        addresses = await _namespace_addresses(ctx)
    usable = [a for a in addresses if not (a.is_loopback or a.is_link_local)]
    if not usable:
        return (4,)
    wants_v6 = any(a.version == 6 for a in usable) if spec.dual_stack else usable[0].version == 6
    return (4, 6) if wants_v6 else (4,)


async def _namespace_addresses(
    ctx: Context[IstioRedirectConfig],
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    netns = ctx.require_netns()
    completed = await netns.run_process(["ip", "-j", "addr", "show"], timeout=10)
    if completed.returncode != 0:
        raise CNIError(ErrorCode.INTERNAL, f"ip addr failed: {completed.stderr.decode().strip()}")
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for link in json.loads(completed.stdout or b"[]"):
        for info in link.get("addr_info", []):
            found.append(ipaddress.ip_address(info["local"]))
    return found


def _runner(ctx: Context[IstioRedirectConfig]) -> Any:
    from cnisdk_istio_redirect._runner import netns_runner

    return netns_runner(ctx.require_netns(), ctx.log)


def _legacy_tables(ctx: Context[IstioRedirectConfig]) -> Any:
    """The ``LegacyTablesProbe`` for the pod netns: one thread, no exec."""
    netns = ctx.require_netns()

    async def probe(family: Family) -> bool:
        return bool(await netns.run(_legacy_tables_listed, family))

    return probe


def _legacy_tables_listed(family: Family) -> bool:
    # Runs on a thread inside the pod netns: /proc/thread-self/net is that namespace's.
    # The kernel lists every legacy (x_tables) table instantiated there; absent file: the
    # module is not loaded, so there is none. Any other error: unknown, let the save decide.
    name = "ip_tables_names" if family == 4 else "ip6_tables_names"
    try:
        with open(f"/proc/thread-self/net/{name}", "rb") as names:
            return bool(names.read().strip())
    except FileNotFoundError:
        return False
    except OSError:
        return True


async def _apply(
    ctx: Context[IstioRedirectConfig], spec: RedirectSpec, families: tuple[Family, ...]
) -> None:
    from cnisdk_istio_redirect import _apply as apply_mod

    runner = _runner(ctx)
    if ctx.config.native_nftables:
        await apply_mod.apply_nftables(runner, spec, ipv6=6 in families)
    else:
        await apply_mod.apply_iptables(
            runner, spec, families, _backend(ctx.config), _legacy_tables(ctx)
        )
    try:
        await _apply_netlink(ctx, spec, families)
    except BaseException:
        # The packet-filter rules are in but the policy routing is not: TPROXY would mark
        # packets nothing delivers. Fail closed *and* clean, as for a failed restore.
        with anyio.CancelScope(shield=True):
            await _remove_rules(ctx, runner, spec, families)
        raise


async def _remove_rules(
    ctx: Context[IstioRedirectConfig],
    runner: Any,
    spec: RedirectSpec,
    families: tuple[Family, ...],
) -> None:
    """Best-effort removal of everything ``_apply`` installed (the error in flight wins)."""
    from cnisdk_istio_redirect import _apply as apply_mod

    try:
        if ctx.config.native_nftables:
            await apply_mod.remove_nftables(runner)
        else:
            await apply_mod.remove_iptables(
                runner, spec, families, _backend(ctx.config), _legacy_tables(ctx)
            )
    except Exception as exc:
        ctx.log.error("could not remove the redirect rules after a failed ADD: %s", exc)


async def _verify(
    ctx: Context[IstioRedirectConfig], spec: RedirectSpec, families: tuple[Family, ...]
) -> list[str]:
    from cnisdk_istio_redirect import _apply as apply_mod

    runner = _runner(ctx)
    if ctx.config.native_nftables:
        problems = list(await apply_mod.verify_nftables(runner, spec, ipv6=6 in families))
    else:
        problems = list(
            await apply_mod.verify_iptables(
                runner, spec, families, _backend(ctx.config), _legacy_tables(ctx)
            )
        )
    return problems + await _verify_netlink(ctx, spec, families)


def _backend(config: IstioRedirectConfig) -> Literal["legacy", "nft"] | None:
    return None if config.iptables_backend == "auto" else config.iptables_backend


async def _apply_netlink(
    ctx: Context[IstioRedirectConfig], spec: RedirectSpec, families: tuple[Family, ...]
) -> None:
    """TPROXY policy routing and the IPv6 ``::6`` passthrough source, through netlink."""
    from cnisdk_istio_redirect._netlink import apply_links, link_state

    state = link_state(spec, families)
    if state:
        await apply_links(ctx.require_netns(), state)


async def _verify_netlink(
    ctx: Context[IstioRedirectConfig], spec: RedirectSpec, families: tuple[Family, ...]
) -> list[str]:
    from cnisdk_istio_redirect._netlink import link_state, verify_links

    state = link_state(spec, families)
    return await verify_links(ctx.require_netns(), state) if state else []
