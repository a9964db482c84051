"""The `minirun` command line: argument parsing, one module per command, and how containers are shown.

    main.py       the console script: splits the command line, builds only the invoked command's parser,
                  maps errors to one line and a Docker-like exit code
    options.py    the option table a command declares once; argparse's parser is built from it
    views.py      `ps` rows, `inspect` documents and Go-template `-f`
    commands/     one module per command: `configure(parser)` and `execute(args)`

May import: minirun.engine, minirun.network, minirun.cgroups, minirun.runtime, minicache, minishow, and
minirun.serve from the `serve` command only. Nothing below the command line imports it, except minirun.serve,
which speaks the same options (`create`'s table) and documents (views) as the command line.
"""
