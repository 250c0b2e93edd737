"""``cnisdk install``: write launchers for plugin types into a CNI bin directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write an executable launcher for each plugin TYPE into the CNI bin directory, so a "
        "container runtime can run it like any other CNI plugin. A launcher runs the plugin "
        "with this Python interpreter and imports it directly."
    )
    parser.epilog = "example: cnisdk install --bin-dir /opt/cni/bin istio-redirect passthrough"
    parser.add_argument("types", nargs="+", metavar="TYPE", help="plugin types (see `cnisdk list`)")
    parser.add_argument(
        "--bin-dir", required=True, type=Path, help="the CNI bin directory (e.g. /opt/cni/bin)"
    )
    parser.add_argument(
        "--python", default=None, help="interpreter for the launchers (default: this one)"
    )


def run(args: argparse.Namespace) -> int:
    from cnisdk._discovery import PluginLoadError, get_plugin
    from cnisdk._launcher import write_launcher

    try:
        entries = [get_plugin(t) for t in args.types]
        for entry in entries:
            entry.load()
    except PluginLoadError as exc:
        print(f"cnisdk install: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        try:
            path = write_launcher(args.bin_dir, entry, args.python)
        except (OSError, ValueError) as exc:
            print(f"cnisdk install: cannot write launcher for {entry.type}: {exc}", file=sys.stderr)
            return 1
        print(f"installed {entry.type} ({entry.distribution} {entry.version}) -> {path}")
    return 0
