"""``cnisdk validate``: check CNI network configs and the plugins they name.

Exit status: 0 when no file has an error (warnings are allowed unless ``--strict``), 1 when
one has, 2 when the command could not run (bad flags, a PATH that does not exist or cannot be
listed). The JSON output (``--output json``) and every finding code are documented in
``docs/validate.md``; the rendering is :mod:`cnisdk._validate._render`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the engine is imported only when the command runs
    from cnisdk._validate import FileReport

from cnisdk._commands import USAGE, CommandError

__all__ = ["DEFAULT_CNI_PATH", "configure", "run"]

DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
"""Where runtimes usually find plugins: the upstream default, then Debian's package."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check CNI network config files (.conf, .conflist, .json) for everything a runtime or "
        "a plugin would reject: JSON syntax, spec rules, the config models of cnisdk plugins "
        "and of the reference plugins (bridge, host-local, portmap, ...), keys a plugin does "
        "not read, plugin binaries and the versions they support, and the order of the "
        "chain. For a directory, say which file a runtime would use."
    )
    parser.epilog = (
        "Machines without the plugins: --no-exec runs no plugin but still looks each binary "
        "up on the CNI path; --config-only checks the configs alone (no binary is looked up "
        "or run), for CI machines that have none of the binaries. A cnisdk plugin installed "
        "in this Python environment counts as present. "
        "Exit status: 0 no errors (warnings allowed unless --strict), 1 errors found, "
        "2 the command could not run. Finding codes: docs/validate.md"
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="config files or directories (/etc/cni/net.d)"
    )
    parser.add_argument(
        "--cni-path",
        default=None,
        metavar="DIR[:DIR]",
        help=f"where plugin binaries live (default: $CNI_PATH, else {DEFAULT_CNI_PATH})",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="findings for people (default) or one JSON document for CI (schema in the docs)",
    )
    parser.add_argument("--strict", action="store_true", help="warnings count as errors")
    parser.add_argument(
        "--no-exec",
        action="store_true",
        help="run no plugin binary (no VERSION check); their presence is still checked",
    )
    parser.add_argument(
        "--config-only",
        action="store_true",
        help="check the configs only: no plugin binary is looked up or run (for CI machines "
        "without the plugins)",
    )
    parser.add_argument(
        "--plugins-release",
        type=_release,
        default=None,
        metavar="X.Y.Z",
        help="the containernetworking/plugins release the nodes run (Debian 12: 1.1.1): "
        "settings it lacks are reported, and its plugins' spec versions are known without "
        "running them (default: the release the models follow, 1.9.1)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="seconds each plugin's VERSION command may take (default: 10)",
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _release(text: str) -> tuple[int, int, int]:
    from cnisdk._validate._reference import parse_release

    try:
        return parse_release(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    import anyio

    from cnisdk._validate import ValidateError, validate_paths
    from cnisdk._validate._render import is_valid, write_json, write_text

    raw_path = args.cni_path if args.cni_path is not None else os.environ.get("CNI_PATH")
    cni_path = [d for d in (raw_path or DEFAULT_CNI_PATH).split(":") if d]

    async def main() -> list[FileReport]:
        return await validate_paths(
            args.paths,
            cni_path=cni_path,
            exec_binaries=not (args.no_exec or args.config_only),
            check_presence=not args.config_only,
            timeout=args.timeout,
            plugins_release=args.plugins_release,
        )

    try:
        reports = anyio.run(main)
    except ValidateError as exc:
        raise CommandError(str(exc), status=USAGE) from None
    valid = is_valid(reports, args.strict)
    if args.output == "json":
        write_json(reports, valid, sys.stdout)
    else:
        write_text(reports, sys.stdout, sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    return 0 if valid else 1
