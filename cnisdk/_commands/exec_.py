"""``cnisdk exec``: run a network configuration against a namespace, like Go's ``cnitool``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any

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

exit status: 0 on success, 1 when the chain fails (the error goes to stderr), 2 on usage errors.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``exec`` arguments."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
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


def _usage(message: str) -> int:
    sys.stderr.write(f"cnisdk exec: error: {message}\n")
    return 2


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


def _print_error(exc: BaseException) -> None:
    from cnisdk.spec._errors import CNIError

    if isinstance(exc, CNIError):
        doc: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
        if exc.details:
            doc["details"] = exc.details
        sys.stderr.write(json.dumps(doc, indent=4) + "\n")
    else:
        sys.stderr.write(f"{exc}\n")


def run(args: argparse.Namespace) -> int:
    """Run the verb; print the result (ADD) to stdout, errors to stderr."""
    import anyio

    from cnisdk._confdir import find_network, load_network, primary_network
    from cnisdk._runtime import CNIRuntime, RuntimeConf

    try:
        capability_text = (
            args.capability_args
            if args.capability_args is not None
            else os.environ.get("CAP_ARGS", "")
        )
        capability_args = json.loads(capability_text) if capability_text else {}
        if not isinstance(capability_args, dict):
            return _usage("--capability-args must be a JSON object")
        args_text = args.args if args.args is not None else os.environ.get("CNI_ARGS", "")
        cni_args = _parse_args(args_text) if args_text else []
    except ValueError as exc:
        return _usage(str(exc))
    if args.timeout is not None and args.timeout <= 0:
        return _usage("--timeout must be positive")

    try:
        if os.path.isdir(args.config):
            _, conflist = primary_network(args.config)
        elif os.path.sep in args.config or os.path.lexists(args.config):
            conflist = load_network(args.config, by_content=True)
        else:
            conf_dir = args.conf_dir or os.environ.get("NETCONFPATH") or _DEFAULT_CONF_DIR
            conflist = find_network(conf_dir, args.config)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1

    cni_path = args.cni_path or os.environ.get("CNI_PATH") or _DEFAULT_CNI_PATH
    ifname = args.ifname or os.environ.get("CNI_IFNAME") or "eth0"
    netns = os.path.abspath(args.netns)
    runtime = CNIRuntime(
        [p for p in cni_path.split(os.pathsep) if p], cache_dir=args.cache_dir, timeout=args.timeout
    )
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
        _print_error(exc)
        return 1
    if output is not None:
        sys.stdout.buffer.write(output + b"\n")
        sys.stdout.flush()
    return 0
