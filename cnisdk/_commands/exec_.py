"""``cnisdk exec``: run a network configuration against a namespace, like Go's ``cnitool``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from cnisdk._commands import USAGE, CommandError

__all__ = ["configure", "run"]

_DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
_DEFAULT_CONF_DIR = "/etc/cni/net.d"

_EPILOG = """\
CONFIG is a config file (a file holding "plugins" is a list whatever its name, any other a
single plugin's config), a config directory (its network is the one a runtime would use:
the first .conf/.conflist/.json file in name order that loads), or the name of a network
found in --conf-dir.
NETNS is a network namespace path (e.g. /var/run/netns/test); for gc and status it is
accepted and ignored, as cnitool does. The container ID defaults to cnitool's: "cnitool-"
and the first 10 bytes (hex) of the SHA-512 of the absolute NETNS path.

The result cache uses libcni's format and location (<cache-dir>/results/), so a DEL by
cnitool or a Go runtime finds what an ADD from here left, and the other way round.

example:
  ip netns add demo
  cnisdk exec add /etc/cni/net.d/10-mynet.conflist /var/run/netns/demo --ifname eth0
  cnisdk exec check mynet /var/run/netns/demo
  cnisdk exec del mynet /var/run/netns/demo

exit status: 0 on success, 1 when the chain fails (the error goes to stderr as one line, with
what to do about it), 2 on usage errors.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``exec`` arguments."""
    parser.epilog = _EPILOG
    parser.add_argument("verb", choices=("add", "check", "del", "gc", "status"), help="what to run")
    parser.add_argument(
        "config", metavar="CONFIG", help="config file, config directory or network name"
    )
    parser.add_argument("netns", metavar="NETNS", help="network namespace path")
    parser.add_argument(
        "--ifname", default=None, help="interface name (default: $CNI_IFNAME, else eth0)"
    )
    parser.add_argument("--container-id", default=None, help="container ID (default: cnitool's)")
    parser.add_argument(
        "--args", default=None, metavar="K=V;...", help="CNI_ARGS pairs (default: $CNI_ARGS)"
    )
    parser.add_argument(
        "--capability-args",
        default=None,
        metavar="JSON",
        help="capability arguments, e.g. '{\"portMappings\":[...]}' (default: $CAP_ARGS)",
    )
    parser.add_argument(
        "--cni-path",
        default=None,
        metavar="DIR[:DIR]",
        help=f"plugin directories (default: $CNI_PATH, else {_DEFAULT_CNI_PATH})",
    )
    parser.add_argument(
        "--conf-dir",
        default=None,
        metavar="DIR",
        help=f"where network names are looked up (default: $NETCONFPATH, else {_DEFAULT_CONF_DIR})",
    )
    parser.add_argument("--cache-dir", default="/var/lib/cni", help="result cache root")
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="seconds allowed per plugin"
    )


def _parse_args(text: str) -> list[tuple[str, str]]:
    # cnitool's rule: K=V pairs split on ';', both sides non-empty.
    pairs: list[tuple[str, str]] = []
    for pair in text.split(";"):
        parts = pair.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f'invalid CNI_ARGS pair "{pair}"')
        pairs.append((parts[0], parts[1]))
    return pairs


def default_container_id(netns: str) -> str:
    """cnitool's container ID for a namespace path: ``cnitool-`` + hex of 10 SHA-512 bytes."""
    digest = hashlib.sha512(os.path.abspath(netns).encode()).digest()
    return "cnitool-" + digest[:10].hex()


def _failure(exc: BaseException, args: argparse.Namespace, cni_path: list[str]) -> CommandError:
    """What a failed verb tells its user: the error as libcni words it, and what to do."""
    from cnisdk._invoke import PluginNotFoundError
    from cnisdk._runtime import ChainError
    from cnisdk.spec._errors import CNIError

    cause = exc.cause if isinstance(exc, ChainError) else exc
    message = str(exc)
    if isinstance(exc, CNIError) and exc.code:
        message += f" (CNI error code {int(exc.code)})"
    if isinstance(cause, PluginNotFoundError) and cause.plugin_type:
        return CommandError(message, _missing_plugin_hint(cause.plugin_type, cni_path, args))
    return CommandError(message)


def _missing_plugin_hint(plugin_type: str, cni_path: list[str], args: argparse.Namespace) -> str:
    from cnisdk._discovery import PluginLoadError, find_plugins
    from cnisdk._suggest import closest

    try:
        installable = set(find_plugins())
    except PluginLoadError:
        installable = set()
    on_path: set[str] = set()
    for directory in cni_path:
        try:
            with os.scandir(directory) as entries:
                on_path.update(e.name for _, e in zip(range(10_000), entries, strict=False))
        except OSError:
            continue
    hints: list[str] = []
    if plugin_type in installable:
        hints.append(
            f"{plugin_type!r} is a cnisdk plugin: write its launcher with "
            f"'cnisdk install --bin-dir DIR {plugin_type}' and put DIR on --cni-path"
        )
    elif (guess := closest(plugin_type, on_path | installable)) is not None:
        hints.append(f"did you mean {guess!r}?")
    else:
        hints.append("check the config's type, or point --cni-path at the plugin's directory")
    invocation = f"'cnisdk exec del {args.config} {args.netns}' with the same options"
    if args.verb == "add":
        hints.append(
            "the plugins before it have already set the container up and nothing was undone "
            f"(libcni does the same): once it is found, run {invocation} to take them down"
        )
    elif args.verb == "del":
        hints.append(
            "DEL runs every plugin of the chain and stops at a missing one (libcni does the "
            f"same), so the attachment stays until {invocation} succeeds; or delete the "
            "namespace, and the plugins' state (e.g. host-local's /var/lib/cni/networks/NAME "
            "and the result cache) by hand"
        )
    return "; ".join(hints)


def run(args: argparse.Namespace) -> int:
    """Run the verb; print the result (ADD) to stdout, errors to stderr."""
    import anyio

    from cnisdk._confdir import NoNetworkError, find_network, load_network, primary_network
    from cnisdk._runtime import CNIRuntime, RuntimeConf

    capability_text = (
        args.capability_args if args.capability_args is not None else os.environ.get("CAP_ARGS", "")
    )
    try:
        capability_args = json.loads(capability_text) if capability_text else {}
    except ValueError as exc:
        raise CommandError(f"--capability-args is not JSON: {exc}", status=USAGE) from None
    if not isinstance(capability_args, dict):
        raise CommandError("--capability-args must be a JSON object", status=USAGE)
    args_text = args.args if args.args is not None else os.environ.get("CNI_ARGS", "")
    try:
        cni_args = _parse_args(args_text) if args_text else []
    except ValueError as exc:
        raise CommandError(str(exc), "give K=V pairs separated by ';'", status=USAGE) from None
    if args.timeout is not None and args.timeout <= 0:
        raise CommandError("--timeout must be positive", status=USAGE)

    try:
        if os.path.isdir(args.config):
            _, conflist = primary_network(args.config)
        elif os.path.sep in args.config or os.path.lexists(args.config):
            conflist = load_network(args.config, by_content=True)
        else:
            conf_dir = args.conf_dir or os.environ.get("NETCONFPATH") or _DEFAULT_CONF_DIR
            conflist = find_network(conf_dir, args.config)
    except NoNetworkError as exc:
        skipped = "; ".join(exc.skipped)
        raise CommandError(str(exc), skipped or "the directory holds no config file") from None
    except FileNotFoundError as exc:
        raise CommandError(
            str(exc), "name a config file or directory, or the network's directory with --conf-dir"
        ) from None
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None

    cni_path = [
        p
        for p in (args.cni_path or os.environ.get("CNI_PATH") or _DEFAULT_CNI_PATH).split(
            os.pathsep
        )
        if p
    ]
    ifname = args.ifname or os.environ.get("CNI_IFNAME") or "eth0"
    netns = os.path.abspath(args.netns)
    runtime = CNIRuntime(cni_path, cache_dir=args.cache_dir, timeout=args.timeout)
    rt = RuntimeConf(
        container_id=args.container_id or default_container_id(netns),
        netns=netns,
        ifname=ifname,
        args=cni_args,
        capability_args=capability_args,
    )

    async def main() -> bytes | None:
        from cnisdk.spec._result import result_to_json

        if args.verb == "add":
            return result_to_json(await runtime.add(conflist, rt))
        if args.verb == "check":
            await runtime.check(conflist, rt)
        elif args.verb == "del":
            await runtime.delete(conflist, rt)
        elif args.verb == "gc":
            # As cnitool: GC without a list of valid attachments, so every cached one goes.
            await runtime.gc(conflist, None)
        else:
            await runtime.status(conflist)
        return None

    try:
        output = anyio.run(main, backend="asyncio")
    except Exception as exc:
        raise _failure(exc, args, cni_path) from None
    if output is not None:
        sys.stdout.buffer.write(output + b"\n")
        sys.stdout.flush()
    return 0
