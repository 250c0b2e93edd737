"""``cnisdk list``: the plugin types cnisdk can install, and where they come from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnisdk._commands import CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the plugin types registered through the `cnisdk.plugins` entry point group, "
        "with their distribution, version, supported CNI versions and class."
    )
    parser.add_argument(
        "--bin-dir", type=Path, default=None, help="also say whether each type is installed there"
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="a table for people (default) or a JSON array for scripts",
    )


def run(args: argparse.Namespace) -> int:
    from cnisdk._discovery import PluginLoadError, find_plugins
    from cnisdk._launcher import is_launcher

    try:
        entries = find_plugins()
    except PluginLoadError as exc:
        raise CommandError(str(exc)) from None
    rows = []
    for entry in entries.values():
        row: dict[str, object] = {
            "type": entry.type,
            "distribution": entry.distribution,
            "version": entry.version,
            "class": entry.target,
        }
        try:
            cls = entry.load()
            row["cniVersions"] = list(cls.supported_versions)
            row["chained"] = bool(cls.chained)
        except PluginLoadError as exc:
            row["error"] = str(exc)
        if args.bin_dir is not None:
            row["installed"] = is_launcher(args.bin_dir / entry.type)
        rows.append(row)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no cnisdk plugins installed (entry point group 'cnisdk.plugins')")
        return 0
    table = [("TYPE", "FROM", "CNI VERSIONS", "CLASS")]
    for row in rows:
        versions = row.get("cniVersions")
        spread = ",".join(versions) if isinstance(versions, list) and versions else "?"
        flags = ["[chained-only]"] if row.get("chained") else []
        if "installed" in row:
            flags.append("[installed]" if row["installed"] else "[not installed]")
        origin = f"{row['distribution']} {row['version']}"
        table.append((str(row["type"]), origin, spread, f"{row['class']}  {' '.join(flags)}"))
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            + "  "
            + line[3]
        )
    for row in rows:
        if "error" in row:
            print(f"{row['type']}: error: {row['error']}")
    return 0 if all("error" not in r for r in rows) else 1
