"""``cnisdk agent``: serve every installed plugin over a Unix socket in one long-running process.

The health endpoint, logs and shutdown are described in :mod:`cnisdk._agent`, the wire
protocol in :mod:`cnisdk._agent_protocol`.
Install shim launchers that talk to it with ``cnisdk install --agent-socket PATH``.

Exit status: 0 after a graceful shutdown, 1 when it cannot start (socket in use, a plugin
does not load), 2 usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys

from cnisdk._commands import USAGE, CommandError, host_port

__all__ = ["configure", "run"]

_EPILOG = """\
examples:
  cnisdk agent --socket /run/cnisdk/agent.sock
  cnisdk agent --socket /run/cnisdk/agent.sock --types istio-redirect --health 127.0.0.1:8001
  cnisdk agent --socket /run/cnisdk/agent.sock --allow-uid 1000   # also serve uid 1000
  cnisdk install istio-redirect --bin-dir /opt/cni/bin --agent-socket /run/cnisdk/agent.sock
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``agent`` arguments."""
    parser.description = (
        "Load every installed plugin type (or --types) once and serve CNI requests for them "
        "over a Unix socket (mode 0600), concurrently, until SIGTERM/SIGINT. Shim launchers "
        "(cnisdk install --agent-socket) forward requests here. Only root (and the agent's "
        "own uid) is served unless --allow-uid says otherwise: every connection's peer "
        "credentials are checked."
    )
    parser.epilog = _EPILOG
    parser.add_argument("--socket", required=True, metavar="PATH", help="the Unix socket path")
    parser.add_argument(
        "--types", default=None, metavar="T,...", help="serve only these plugin types"
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="TYPE=MODULE:CLASS",
        help="also serve a plugin class that is not registered as an entry point (repeatable)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="cancel a request after S seconds, answering CNI error 11 (default: 60)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a client must send its whole request within S seconds (default: 10)",
    )
    parser.add_argument(
        "--health", default=None, metavar="HOST:PORT", help="serve HTTP GET /healthz here"
    )
    parser.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        default=[],
        metavar="UID",
        help="also serve clients running as UID (repeatable); the socket is then mode 0666 "
        "and the peer-credential check is what keeps other users out",
    )


def _address(text: str) -> tuple[str, int]:
    try:
        return host_port(text)
    except ValueError as exc:
        raise ValueError(f"--health: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Load the plugins, then serve until a signal."""
    import anyio

    from cnisdk._agent import Agent, AgentError, load_plugins

    try:
        health = _address(args.health) if args.health else None
        if args.request_timeout <= 0 or args.read_timeout <= 0:
            raise ValueError("--request-timeout and --read-timeout must be > 0")
        if any(not 0 <= uid < 2**32 - 1 for uid in args.allow_uid):
            raise ValueError("--allow-uid: expected a uid (0 to 4294967294)")
        extra = {}
        for item in args.plugin:
            name, sep, target = item.partition("=")
            if not sep or not name:
                raise ValueError(f"--plugin: expected TYPE=MODULE:CLASS, got {item!r}")
            extra[name] = target
    except ValueError as exc:
        raise CommandError(str(exc), status=USAGE) from None
    types = [t for t in args.types.split(",") if t] if args.types is not None else None
    try:
        plugins = load_plugins(types, extra)
    except AgentError as exc:
        raise CommandError(str(exc), "see which types are installed with 'cnisdk list'") from None
    # stdout is no protocol channel here, but plugin code may print(): keep it off any pipe
    # the agent's supervisor reads as structured output, as exec mode keeps it off stdout.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    agent = Agent(
        plugins,
        args.socket,
        request_timeout=args.request_timeout,
        health_address=health,
        allow_uids=args.allow_uid,
        read_timeout=args.read_timeout,
    )
    try:
        anyio.run(agent.serve, backend="asyncio")
    except (AgentError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return 0
