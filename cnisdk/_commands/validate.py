"""``cnisdk validate``: check CNI network configs and the plugins they name.

Exit status: 0 when no file has an error (warnings are allowed unless ``--strict``), 1 when
one has, 2 when the command could not run (bad flags, a PATH that does not exist or cannot be
listed).

``--output json`` prints one JSON document, whose schema is stable (fields are only ever
added)::

    {
      "valid": true,                 # false when the exit status is 1
      "files": [
        {
          "path": "/etc/cni/net.d/10-calico.conflist",
          "selected": true,          # true/false for files found in a directory (is it the
                                     # one a runtime uses?); null for files named directly
                                     # and for a directory's own report
          "findings": [
            {
              "severity": "error",   # "error" | "warning" | "info"
              "code": "CV203",       # stable; see docs/validate.md
              "message": "...",      # what is wrong and how to fix it
              "location": "plugins[1].type"   # JSON path, "line L, column C", or ""
            }
          ]
        }
      ]
    }
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the engine is imported only when the command runs
    from cnisdk._validate import FileReport

__all__ = ["DEFAULT_CNI_PATH", "configure", "run"]

DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
"""Where runtimes usually find plugins: the upstream default, then Debian's package."""

_COLOURS = {"error": "\033[31m", "warning": "\033[33m", "info": "\033[36m"}
_BOLD = "\033[1m"
_RESET = "\033[0m"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check CNI network config files (.conf, .conflist, .json) for everything a runtime or "
        "a plugin would reject: JSON syntax, spec rules, plugin binaries and the versions they "
        "support, the config models of cnisdk plugins, and the order of the chain. For a "
        "directory, say which file a runtime would use."
    )
    parser.epilog = (
        "exit status: 0 no errors (warnings allowed unless --strict), 1 errors found, "
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
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--strict", action="store_true", help="warnings count as errors")
    parser.add_argument(
        "--no-exec", action="store_true", help="do not run plugin binaries (no VERSION check)"
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


def run(args: argparse.Namespace) -> int:
    import anyio

    from cnisdk._validate import ValidateError, validate_paths

    raw_path = args.cni_path if args.cni_path is not None else os.environ.get("CNI_PATH")
    cni_path = [d for d in (raw_path or DEFAULT_CNI_PATH).split(":") if d]

    async def main() -> list[FileReport]:
        return await validate_paths(
            args.paths, cni_path=cni_path, exec_binaries=not args.no_exec, timeout=args.timeout
        )

    try:
        reports = anyio.run(main)
    except ValidateError as exc:
        sys.stderr.write(f"cnisdk validate: {exc}\n")
        return 2
    failing = {"error", "warning"} if args.strict else {"error"}
    valid = not any(f.severity in failing for r in reports for f in r.findings)
    if args.output == "json":
        doc = {"valid": valid, "files": [r.to_dict() for r in reports]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        _print_text(reports, sys.stdout, colour)
    return 0 if valid else 1


def _print_text(reports: list[FileReport], out: TextIO, colour: bool) -> None:
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if colour else text

    totals = {"error": 0, "warning": 0, "info": 0}
    for report in reports:
        note = ""
        if report.selected is not None:
            note = " (selected: runtimes use this file)" if report.selected else " (not used)"
        out.write(paint(report.path, _BOLD) + note + "\n")
        if not report.findings:
            out.write("  ok\n")
        for finding in report.findings:
            totals[finding.severity] += 1
            where = f" {finding.location}:" if finding.location else ""
            label = paint(f"{finding.severity:<7}", _COLOURS[finding.severity])
            out.write(f"  {label} {finding.code}{where} {finding.message}\n")
    summary = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in totals.items())
    out.write(f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked: {summary}\n")
