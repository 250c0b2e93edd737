"""The reports as ``cnisdk validate`` prints them: text for people, one JSON document for CI."""

from __future__ import annotations

import json
from typing import TextIO

from cnisdk._validate._findings import FileReport

__all__ = ["is_valid", "write_json", "write_text"]

_COLOURS = {"error": "\033[31m", "warning": "\033[33m", "info": "\033[36m"}
_BOLD = "\033[1m"
_RESET = "\033[0m"


def is_valid(reports: list[FileReport], strict: bool) -> bool:
    """No error (and, when ``strict``, no warning) in any report."""
    failing = {"error", "warning"} if strict else {"error"}
    return not any(f.severity in failing for r in reports for f in r.findings)


def write_json(reports: list[FileReport], valid: bool, out: TextIO) -> None:
    """The ``--output json`` document (its schema only ever grows)."""
    doc = {"valid": valid, "files": [r.to_dict() for r in reports]}
    out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_text(reports: list[FileReport], out: TextIO, colour: bool) -> None:
    """Findings grouped by file, then a count of each severity."""

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
            where = finding.location
            if finding.line is not None and not where.startswith("line "):
                where = f"{where} (line {finding.line})" if where else f"line {finding.line}"
            label = paint(f"{finding.severity:<7}", _COLOURS[finding.severity])
            out.write(
                f"  {label} {finding.code}{f' {where}:' if where else ''} {finding.message}\n"
            )
    summary = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in totals.items())
    out.write(f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked: {summary}\n")
