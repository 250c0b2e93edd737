"""``cnisdk build-shim``: compile the agent-mode shim shipped with cnisdk into a static executable.

The C source ships in the package; building it needs a C compiler and the C library's static
archive (Debian: ``gcc``, ``libc6-dev``). ``cnisdk install --agent-socket`` then copies the
binary, configured per plugin type, instead of writing the Python shim (see
:mod:`cnisdk._compiled_shim`).

Exit status: 0 built, 1 the build failed (no compiler, compiler errors).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnisdk._commands import CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``build-shim`` arguments."""
    from cnisdk._compiled_shim import DEFAULT_PATH

    parser.description = (
        "Compile the agent-mode shim (C, libc only) into a static executable. By default it "
        f"goes where `cnisdk install --agent-socket` looks for it: {DEFAULT_PATH}."
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_PATH, metavar="PATH", help="where to write it"
    )
    parser.add_argument(
        "--cc", default=None, metavar="CC", help="the C compiler (default: $CC, else cc)"
    )


def run(args: argparse.Namespace) -> int:
    """Build; print the path written."""
    from cnisdk._compiled_shim import build

    try:
        path = build(args.output, args.cc)
    except OSError as exc:
        raise CommandError(str(exc)) from None
    print(f"built {path}")
    return 0
