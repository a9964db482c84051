"""One module per `minirun` command, each with `configure(parser)` and `execute(args) -> int`."""
