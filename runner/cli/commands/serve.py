"""`minirun serve [--socket PATH] [--listen ADDR:PORT] [--tls-cert F --tls-key F] [--print-token]`.

The monitoring web server: a dashboard at `/` and a Docker Engine API subset (v1.41) for the docker CLI
and SDKs, on a Unix socket (default /run/minicontainer/api.sock, mode 0660) and optionally on TCP (a
token is then required; an address other than loopback needs TLS). It reads the same store as every
other command, so it shows containers started before it and by other CLIs, and keeps nothing across
restarts. Its modules (and Starlette, uvicorn) are imported here only, never on the `run` path.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", help="Unix socket path (default: RUNROOT/api.sock)")
    parser.add_argument(
        "--listen", action="append", default=[], metavar="ADDR:PORT", help="also listen on TCP (needs the token)"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="certificate for TCP (needed off loopback)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key for --tls-cert")
    parser.add_argument("--print-token", action="store_true", help="print the TCP token (made if missing) and exit")


def execute(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from minirun.cli.commands.common import open_store
    from minirun.serve import auth

    store = open_store(args)
    if args.print_token:
        print(auth.load_token(store))
        return 0
    from minirun.serve import server

    path = Path(args.socket) if args.socket else server.default_socket(store)

    def ready() -> None:
        where = [f"unix://{path}", *(f"{'https' if args.tls_cert else 'http'}://{a}" for a in args.listen)]
        print(f"minirun serve: listening on {', '.join(where)}", file=sys.stderr, flush=True)

    server.serve(store, socket_path=path, listen=args.listen, tls_cert=args.tls_cert, tls_key=args.tls_key, ready=ready)
    return 0
