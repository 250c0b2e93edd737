"""``cnisdk uninstall``: take plugins off a node again.

Takes out what ``cnisdk install`` added to ``--conf-dir`` (by its install record: an entry
install did not add stays), the launchers (only files cnisdk wrote) and the kubeconfig an
install wrote. The logic is in :mod:`cnisdk._install`.

Exit status: 0 done (also when there was nothing to remove), 1 failure, 2 usage errors.
"""

from __future__ import annotations

import argparse

from cnisdk._commands import CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``uninstall`` arguments (the install ones that locate what it wrote)."""
    from cnisdk._commands.install import add_common_arguments

    parser.description = (
        "Take out what `cnisdk install` added for each plugin TYPE: its entries in the CNI "
        "configs in --conf-dir (an entry install did not add stays), the launchers it wrote "
        "into --bin-dir, and the kubeconfig it wrote."
    )
    parser.epilog = (
        "example: cnisdk uninstall istio-redirect --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Uninstall and print what was removed."""
    from cnisdk._commands.install import build_spec, plugin_type_hint
    from cnisdk._discovery import PluginLoadError
    from cnisdk._install import InstallError, uninstall

    try:
        spec = build_spec(args, "uninstall")
    except PluginLoadError as exc:
        raise CommandError(str(exc), plugin_type_hint(args.types)) from None
    try:
        outcome = uninstall(spec)
    except (InstallError, OSError) as exc:
        raise CommandError(str(exc)) from None
    for path in outcome.configs:
        print(f"took {', '.join(spec.types)} out of {path}")
    for path in outcome.files:
        print(f"deleted {path}")
    for note in outcome.notes:
        print(note)
    if not outcome.changed:
        print("nothing to remove")
    return 0
