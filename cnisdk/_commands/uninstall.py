"""``cnisdk uninstall``: take plugins off a node again.

Removes the plugins' entries from every conflist in ``--conf-dir`` (every other byte stays
as it was), their launchers (only files cnisdk wrote) and the kubeconfig an install wrote.

Exit status: 0 done (also when there was nothing to remove), 1 failure, 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``uninstall`` arguments (the install ones that locate what it wrote)."""
    from cnisdk._commands.install import add_common_arguments

    parser.description = (
        "Remove the entries of each plugin TYPE from the CNI configs in --conf-dir, the "
        "launchers `cnisdk install` wrote into --bin-dir, and the kubeconfig it wrote."
    )
    parser.epilog = (
        "example: cnisdk uninstall istio-redirect --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Uninstall and print what was removed."""
    from cnisdk._commands.install import build_spec
    from cnisdk._discovery import PluginLoadError
    from cnisdk._node_install import uninstall

    try:
        spec = build_spec(args, "uninstall")
    except PluginLoadError as exc:
        print(f"cnisdk uninstall: {exc}", file=sys.stderr)
        return 1
    try:
        outcome = uninstall(spec)
    except OSError as exc:
        print(f"cnisdk uninstall: {exc}", file=sys.stderr)
        return 1
    for path in outcome.changed:
        if path.endswith((".conf", ".conflist", ".json")):
            print(f"removed {', '.join(spec.types)} from {path}")
        else:
            print(f"deleted {path}")
    for note in outcome.notes:
        print(note)
    if not outcome.changed:
        print("nothing to remove")
    return 0
