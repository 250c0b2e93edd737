"""The ``cnisdk`` command: one subcommand per module in ``cnisdk._commands``.

Subcommand modules are imported only when their command runs, so ``cnisdk --help`` stays fast
and no command pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from cnisdk._commands import FAILED, USAGE, CommandError
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
    "demo": (
        "demo",
        "run istio-redirect in a real chain for a pod with a sidecar and one without",
    ),
}


class _Formatter(argparse.HelpFormatter):
    """Wraps prose to the terminal, paragraph by paragraph, and keeps indented lines (examples,
    tables) as they are written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for paragraph in textwrap.dedent(text).strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith((" ", "\t")) for line in lines[1:]) or (
                lines and lines[0].startswith((" ", "\t"))
            ):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)


class _Parser(argparse.ArgumentParser):
    """argparse in the commands' voice: ``cnisdk COMMAND: <problem>: see 'cnisdk COMMAND --help'``.

    Descriptions are wrapped to the terminal unless a command sets its own formatter (for
    examples that must keep their lines).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: {message}: see '{self.prog} --help'\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnisdk",
        description="Write, run and check chained CNI plugins.",
        epilog="Run 'cnisdk COMMAND --help' for a command's options. Exit status: 0 success, "
        f"{FAILED} the command failed, {USAGE} a usage error (validate: see its help).",
    )
    parser.add_argument("--version", action="version", version=f"cnisdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
        return USAGE
    try:
        module = importlib.import_module(f"cnisdk._commands.{COMMANDS[args.command][0]}")
        code: int = module.run(args)
        sys.stdout.flush()
    except CommandError as exc:
        sys.stderr.write(exc.line(args.command) + "\n")
        return exc.status
    except BrokenPipeError:
        # The reader went away (`cnisdk list | head`): stop quietly, as a Unix tool does.
        _stdout_to_devnull()
        return FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("CNISDK_DEBUG") == "1":
            traceback.print_exc()
        text = " ".join(str(exc).split()) or type(exc).__name__
        error = CommandError(
            f"internal error: {text}", "run it again with CNISDK_DEBUG=1 to see where"
        )
        sys.stderr.write(error.line(args.command) + "\n")
        return FAILED
    return code


def _stdout_to_devnull() -> None:
    # Python flushes stdout once more at exit; a closed pipe would fail that flush too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
