"""`minibuild version`."""

from __future__ import annotations

import typer
from minibuild.app import app


@app.command("version")
def version_cmd() -> None:
    """Show the version."""
    # importlib.metadata is imported here, not at the top: every minibuild command registers this one.
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"minibuild {version('minicontainer')}")
    except PackageNotFoundError:
        typer.echo("minibuild (not installed)")
