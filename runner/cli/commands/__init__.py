"""One module per `minirun` command, each with `configure(parser)` and `execute(args) -> int`.

Each calls the engine's library (minirun.engine) and shows the result; minirun.cli.main imports only the
invoked command's module. `common` holds what they share: opening the store, finding containers.
"""
