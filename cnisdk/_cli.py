"""The ``cnisdk`` command: one subcommand per module in ``cnisdk._commands``.

Subcommand modules are imported only when their command runs, so ``cnisdk --help`` stays fast
and no command pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cnisdk._version import __version__

__all__ = ["main"]

# name -> (module in cnisdk._commands, one-line help). Each module defines
# `configure(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "install": ("install", "write launchers for plugin types into a CNI bin directory"),
    "uninstall": ("uninstall", "remove plugin launchers and their config entries from a node"),
    "list": ("list_", "show the plugin types cnisdk can install and where they come from"),
    "exec": ("exec_", "run a network configuration (a chain) like a container runtime does"),
    "validate": ("validate", "check CNI network configs and the plugins they name"),
    "schema": ("schema", "print the JSON Schema of a plugin's config"),
    "agent": (
        "agent",
        "serve every installed plugin over a Unix socket, in one long-running process",
    ),
    "build-shim": (
        "build_shim",
        "compile the agent-mode shim into a static executable for `install --agent-socket`",
    ),
    "demo": ("demo", "run a real chain in a throwaway network namespace and show the result"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnisdk",
        description="Write, run and check chained CNI plugins.",
    )
    parser.add_argument("--version", action="version", version=f"cnisdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary)
        if name == only:
            module = importlib.import_module(f"cnisdk._commands.{module_name}")
            module.configure(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"cnisdk._commands.{COMMANDS[args.command][0]}")
    code: int = module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
