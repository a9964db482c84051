"""`minirun inspect [-f TEMPLATE] CONTAINER...`: containers as docker inspect shows them (a JSON array).

`-f` takes the common Go-template forms `{{.State.Status}}` and `{{json .Config}}`, one line per container.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.State.Pid}}' or '{{json .State}}'")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    import json

    from minicache.errors import MiniError, one_line
    from minirun.cli import views
    from minirun.cli.commands.common import PROG, get, open_store
    from minirun.engine import lifecycle

    store = open_store(args, create=False)
    documents = []
    failed = False
    for ref in args.containers:
        try:
            container = get(store, ref)
            documents.append(views.inspect_document(container, lifecycle.observe(container)))
        except MiniError as err:
            print(one_line(PROG, err), file=sys.stderr)
            failed = True
    if args.format:
        for document in documents:
            print(views.render(args.format, document))
    else:
        print(json.dumps(documents, indent=4))
    return 1 if failed else 0
