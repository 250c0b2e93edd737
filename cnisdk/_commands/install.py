"""``cnisdk install``: launchers into a CNI bin dir; with ``--conf-dir`` a whole node install.

Without ``--conf-dir`` only the launchers are written (the original behaviour). With it, the
plugins are also chained into the node's primary config, a kubeconfig can be written from a
service account, and ``--watch`` keeps all of it in place until SIGTERM, then removes it.
The logic and its guarantees are in :mod:`cnisdk._install`.

Exit status: 0 installed (or, with ``--watch``, stopped and uninstalled cleanly), 1 the
install failed, 2 usage errors.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnisdk._discovery import PluginEntry
    from cnisdk._install import InstallSpec

from cnisdk._commands import USAGE, CommandError, host_port

__all__ = ["add_common_arguments", "build_spec", "configure", "plugin_type_hint", "run"]

_EPILOG = """\
examples:
  cnisdk install --bin-dir /opt/cni/bin istio-redirect passthrough
  cnisdk install istio-redirect --bin-dir /opt/cni/bin --agent-socket /run/cnisdk/agent.sock
  cnisdk install istio-redirect --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d \\
      --chain '{"type": "istio-redirect", "exclude_namespaces": ["kube-system"]}'
  # in the DaemonSet (deploy/kubernetes-exec; deploy/kubernetes adds --agent-socket):
  # host dirs under /host, a Python copied to the node
  cnisdk install istio-redirect --host-root /host --runtime /opt/cnisdk/python:/opt/cnisdk \\
      --bin-dir /host/opt/cni/bin --conf-dir /host/etc/cni/net.d --chain /etc/cnisdk/chain.json \\
      --kubeconfig-from-serviceaccount /var/run/secrets/kubernetes.io/serviceaccount --watch

--chain is a JSON object (one entry), a list of entries, or an object with "plugins"; inline
or a file path. A type without an entry gets {"type": TYPE}.
"""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with ``cnisdk uninstall``."""
    parser.add_argument("types", nargs="+", metavar="TYPE", help="plugin types (see `cnisdk list`)")
    parser.add_argument(
        "--bin-dir", required=True, type=Path, help="the CNI bin directory (e.g. /opt/cni/bin)"
    )
    parser.add_argument(
        "--conf-dir", type=Path, default=None, help="the CNI config directory (/etc/cni/net.d)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="node path of the plugin's kubeconfig (default: the entry's `kubeconfig`, else "
        "<conf dir>/ZZZ-<TYPE>-kubeconfig)",
    )
    parser.add_argument(
        "--host-root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="where the node's / is mounted here, e.g. /host in a pod (default: /)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``install`` arguments."""
    parser.description = (
        "Write an executable launcher for each plugin TYPE into the CNI bin directory, so a "
        "container runtime can run it like any other CNI plugin. A launcher runs the plugin "
        "with this Python interpreter (or --python) and imports it directly. With --conf-dir, "
        "also chain the plugins into the node's primary network config, last."
    )
    parser.epilog = _EPILOG
    add_common_arguments(parser)
    parser.add_argument(
        "--python", default=None, help="interpreter for the launchers (default: this one)"
    )
    parser.add_argument(
        "--chain", default=None, metavar="JSON|FILE", help="the chained config entry or entries"
    )
    parser.add_argument(
        "--kubeconfig-from-serviceaccount",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a kubeconfig (mode 0600) from this service account dir (token, ca.crt)",
    )
    parser.add_argument(
        "--runtime",
        default=None,
        metavar="SRC:DEST",
        help="copy the self-contained Python tree SRC to the node path DEST (as DEST/current) "
        "and run launchers with DEST/current/bin/python3",
    )
    parser.add_argument(
        "--agent-socket",
        default=None,
        metavar="PATH",
        help="write agent-mode shim launchers that forward to `cnisdk agent --socket PATH`",
    )
    parser.add_argument(
        "--agent-fallback",
        choices=("exec", "fail"),
        default="exec",
        help="when the agent is unreachable: run in exec mode (default) or fail with code 11",
    )
    parser.add_argument(
        "--shim",
        choices=("auto", "compiled", "python"),
        default="auto",
        help="with --agent-socket: the compiled shim (a static executable, see --shim-binary) "
        "or the Python shim; auto (default): compiled if the binary exists, else Python",
    )
    parser.add_argument(
        "--shim-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds a shim waits for the agent's answer once its request is sent (default: "
        "150); keep it above the agent's --request-timeout",
    )
    parser.add_argument(
        "--shim-binary",
        type=Path,
        default=None,
        metavar="PATH",
        help="the compiled shim to copy (default: <sys.prefix>/libexec/cnisdk/cnisdk-shim, "
        "where `cnisdk build-shim` writes it)",
    )
    parser.add_argument("--watch", action="store_true", help="keep the install in place")
    parser.add_argument(
        "--ready-address",
        default=None,
        metavar="HOST:PORT",
        help="with --watch: serve GET /readyz here (Istio uses :8000)",
    )
    parser.add_argument(
        "--ready-file", type=Path, default=None, help="with --watch: exists while ready"
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, metavar="S", help="watch poll interval"
    )
    parser.add_argument(
        "--throttle", type=float, default=5.0, metavar="S", help="at most one reinstall per S"
    )


_MAX_CHAIN_BYTES = 1 << 20


def _load_chain(text: str) -> list[dict[str, Any]]:
    from cnisdk._files import read_bounded
    from cnisdk.spec._json import loads_go

    if text.lstrip().startswith(("{", "[")):
        source = os.fsencode(text)
    else:
        source = read_bounded(text, _MAX_CHAIN_BYTES)
    # Read as a runtime reads the config it ends up in (Go's rules and messages).
    doc = loads_go(source)
    if isinstance(doc, dict) and "plugins" in doc:
        doc = doc["plugins"]
    entries = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(e, dict) for e in entries):
        raise ValueError("entries must be JSON objects")
    return entries


def plugin_type_hint(types: list[str]) -> str:
    """For plugin types that are not installed: the one meant, or where to look."""
    from cnisdk._discovery import PluginLoadError, find_plugins
    from cnisdk._suggest import closest

    try:
        known = find_plugins()
    except PluginLoadError:
        return ""
    for plugin_type in types:
        if plugin_type not in known:
            guess = closest(plugin_type, known)
            if guess is not None:
                return f"did you mean {guess!r}?"
    return "'cnisdk list' shows the plugin types installed in this Python environment"


def _entry_or_bare(plugin_type: str) -> PluginEntry:
    from cnisdk._discovery import PluginEntry, PluginLoadError, get_plugin

    try:
        return get_plugin(plugin_type)
    except PluginLoadError:
        return PluginEntry(plugin_type, "", "", "", "")


def _shim_binary(mode: str, binary: Path | None) -> str | None:
    """The compiled shim to install (``None``: the Python shim) for ``--shim``/``--shim-binary``."""
    from cnisdk._compiled_shim import DEFAULT_PATH

    path = binary or DEFAULT_PATH
    if mode == "python" or (mode == "auto" and binary is None and not path.is_file()):
        return None
    if not path.is_file():
        raise ValueError(f"no compiled shim at {path} (build one with `cnisdk build-shim`)")
    return str(path)


def build_spec(args: argparse.Namespace, command: str) -> InstallSpec:
    """The :class:`InstallSpec` for parsed arguments; raises ``ValueError``/``OSError``."""
    from cnisdk._discovery import get_plugin
    from cnisdk._install import InstallSpec

    if command == "uninstall":
        # Taking a plugin off must work even after its distribution was removed.
        entries = [_entry_or_bare(t) for t in args.types]
    else:
        entries = [get_plugin(t) for t in args.types]
        for entry in entries:
            entry.load()
    chain = getattr(args, "chain", None)
    agent_socket = getattr(args, "agent_socket", None)
    if agent_socket:
        from cnisdk._launcher import ANSWER_TIMEOUT, AgentEntry, launcher_bytes

        if not agent_socket.startswith("/"):
            raise ValueError(f"--agent-socket must be an absolute path, not {agent_socket!r}")
        shim = _shim_binary(getattr(args, "shim", "python"), getattr(args, "shim_binary", None))
        timeout = getattr(args, "shim_timeout", None) or ANSWER_TIMEOUT
        # An AgentEntry renders as a shim wherever launchers are written (install, --watch).
        entries = [
            AgentEntry.of(e, agent_socket, args.agent_fallback, shim, timeout) for e in entries
        ]
        for entry in entries:
            launcher_bytes(entry, getattr(args, "python", None))  # refuse bad values up front
    return InstallSpec(
        plugins=entries,
        bin_dir=args.bin_dir,
        conf_dir=args.conf_dir,
        entries=_load_chain(chain) if chain else (),
        python=getattr(args, "python", None),
        serviceaccount_dir=getattr(args, "kubeconfig_from_serviceaccount", None),
        kubeconfig=args.kubeconfig,
        host_root=args.host_root,
    )


def _launcher_kind(plugin: PluginEntry) -> str:
    from cnisdk._launcher import AgentEntry

    if not isinstance(plugin, AgentEntry):
        return ""
    kind = "Python shim" if plugin.shim_binary is None else "compiled shim"
    return f" ({kind} for the agent at {plugin.socket_path})"


def _say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    """Install; with ``--watch`` keep it in place until SIGTERM/SIGINT, then uninstall."""
    import signal
    import threading

    from cnisdk._discovery import PluginLoadError
    from cnisdk._install import (
        InstallError,
        NoPrimaryConfig,
        Readiness,
        install,
        install_runtime,
        watch,
    )

    try:
        spec = build_spec(args, "install")
        ready_address = host_port(args.ready_address) if args.ready_address else None
    except PluginLoadError as exc:
        raise CommandError(str(exc), plugin_type_hint(args.types)) from None
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc), status=USAGE) from None
    if args.watch and spec.conf_dir is None:
        raise CommandError("--watch needs --conf-dir", status=USAGE)
    try:
        if args.runtime:
            source, sep, dest = args.runtime.partition(":")
            if not sep or not dest.startswith("/"):
                raise CommandError("--runtime wants SRC:/ABSOLUTE/DEST", status=USAGE)
            current, changed = install_runtime(Path(source), spec.to_local(dest))
            if changed:
                _say(f"copied {source} -> {current}")
            if spec.python is None:
                spec.python = f"{dest.rstrip('/')}/current/bin/python3"
        if not args.watch:
            outcome = install(spec)
    except NoPrimaryConfig as exc:
        raise CommandError(str(exc), "with --watch it waits for the primary CNI instead") from None
    except (InstallError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if not args.watch:
        for plugin in spec.plugins:
            path = spec.bin_dir / plugin.type
            kind = _launcher_kind(plugin)
            _say(
                f"installed {plugin.type} ({plugin.distribution} {plugin.version}) -> {path}{kind}"
            )
        for note in outcome.notes:
            _say(note)
        if outcome.config is not None:
            state = "chained into" if str(outcome.config) in outcome.configs else "already in"
            _say(f"{', '.join(spec.types)}: {state} {outcome.config}")
        return 0

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ready = Readiness(ready_address, args.ready_file)
    except OSError as exc:
        raise CommandError(f"cannot serve readiness on {args.ready_address}: {exc}") from None
    _say(f"watching {spec.conf_dir} for {', '.join(spec.types)}")
    try:
        watch(spec, stop, ready, interval=args.interval, throttle=args.throttle, report=_say)
    except (InstallError, OSError) as exc:
        raise CommandError(f"uninstall failed: {exc}") from None
    finally:
        ready.close()
    _say("uninstalled; exiting")
    return 0
