"""The typer application that every `minibuild` command module registers itself on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from minicache.store import Store

app = typer.Typer(
    name="minibuild",
    help="Fill the minicontainer image store: pull, import, build, push; list and manage images.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Context:
    """What the global options decide, handed to every command through `ctx.obj`."""

    def __init__(self, root: Path | None, quiet: bool) -> None:
        self.root = root
        self.quiet = quiet
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        return self.open_store()

    def open_store(self, *, create: bool = True) -> Store:
        """The store; commands that only read pass `create=False` (a store that does not exist is an error)."""
        if self._store is None:
            self._store = Store(self.root, create=create)
        return self._store


@app.callback()
def _global(
    ctx: typer.Context,
    root: Annotated[
        Path | None,
        typer.Option("--root", envvar="MINICONTAINER_ROOT", help="Store root (default /var/lib/minicontainer)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    ctx.obj = Context(root, quiet=False)
    ctx.obj.debug = debug


def store_of(ctx: typer.Context, *, create: bool = True) -> Store:
    return ctx.obj.open_store(create=create)
