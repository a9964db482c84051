"""`minibuild version`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer
from minibuild.app import app


@app.command("version")
def version_cmd() -> None:
    """Show the version."""
    try:
        typer.echo(f"minibuild {version('minicontainer')}")
    except PackageNotFoundError:
        typer.echo("minibuild (not installed)")
