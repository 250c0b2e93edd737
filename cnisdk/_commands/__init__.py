"""One module per ``cnisdk`` subcommand: ``configure(parser)`` and ``run(args) -> int``.

Every command speaks to its user in one voice: a failure is one line on stderr,
``cnisdk COMMAND: what went wrong: what to do``, and the exit status says what kind of
failure it was (:data:`USAGE` for a command line that cannot work, :data:`FAILED` otherwise).
A command raises :class:`CommandError`; ``cnisdk._cli.main`` prints it.
"""

from __future__ import annotations

__all__ = ["FAILED", "USAGE", "CommandError", "host_port"]

FAILED = 1
"""Exit status: the command ran and failed."""
USAGE = 2
"""Exit status: the command line cannot work (a missing or invalid argument)."""


class CommandError(Exception):
    """A failure to report as ``cnisdk COMMAND: <message>[: <hint>]``.

    :param message: what went wrong, naming the file, value or plugin concerned.
    :param hint: what the user can do about it, if there is something to say.
    :param status: the exit status (:data:`FAILED` or :data:`USAGE`).
    """

    def __init__(self, message: str, hint: str = "", *, status: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status

    def line(self, command: str) -> str:
        text = f"cnisdk {command}: {self.message}"
        return f"{text}: {self.hint}" if self.hint else text


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; an empty host is every address) as ``(host, port)``.

    :raises ValueError: if ``text`` is not of that form.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
