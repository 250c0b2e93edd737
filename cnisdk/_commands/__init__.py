"""One module per ``cnisdk`` subcommand: ``configure(parser)`` and ``run(args) -> int``."""
