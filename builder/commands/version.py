"""`minibuild version`."""

from __future__ import annotations

from minibuild.app import Context, command


@command("version")
def version_cmd(ctx: Context) -> None:
    """Show the version."""
    # importlib.metadata is imported here, not at the top: every minibuild command registers this one.
    from importlib.metadata import PackageNotFoundError, version

    try:
        print(f"minibuild {version('minicontainer')}")
    except PackageNotFoundError:
        print("minibuild (not installed)")
