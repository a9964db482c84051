"""`minirun serve`: the dashboard and the Docker Engine API subset, on Starlette and uvicorn.

    server.py      listeners (Unix socket 0660, optional TCP/TLS) and the uvicorn servers on them
    app.py         the ASGI app: routes, error mapping, the `/v1.NN` prefix, one guard per listener
    auth.py        the token, the browser session and CSRF
    engine_api.py  the Engine API routes, each one library call of the engine
    create.py      `POST /containers/create` body -> `minirun create` flags
    documents.py   the API's JSON documents
    dashboard.py   the page, its JSON and its live feed (server-sent events)

Imported by `minirun serve` only: nothing on the `run` path loads this package or its libraries.

May import: minirun.engine, minirun.cgroups, minicache, minishow, and of the command line only what it
shares with it: the option table of `create` (minirun.cli.commands.run, minirun.cli.options), `ps`'s filter
and the views (minirun.cli.views). It starts containers by running `minirun start` in a new process.
"""
