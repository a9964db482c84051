"""`minibuild pull|push|login|logout`: thin wrappers over minibuild.pull, minibuild.push and the credentials."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from minibuild.app import app, store_of

InsecureOpt = Annotated[
    list[str] | None,
    typer.Option("--insecure-registry", help="Allow plain HTTP / unverified TLS for this HOST[:PORT] or CIDR."),
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds to wait for the registry to answer (default 60).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress; print only the image's name.")]


def _settings(insecure: list[str] | None, timeout: float | None, mirrors: list[str] | None = None, **kw):
    from minibuild.registry.settings import load
    from minicache.record import replace

    settings = load(insecure=insecure or [], mirrors=mirrors or [], timeout=timeout)
    return replace(settings, **{k: v for k, v in kw.items() if v is not None})


@app.command("pull")
def pull_cmd(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="NAME[:TAG|@DIGEST]")],
    platform: Annotated[
        str | None, typer.Option("--platform", help="OS/ARCH[/VARIANT] to pull from a multi-platform image.")
    ] = None,
    quiet: QuietOpt = False,
    insecure_registry: InsecureOpt = None,
    registry_mirror: Annotated[
        list[str] | None, typer.Option("--registry-mirror", help="URL of a docker.io mirror to try first.")
    ] = None,
    timeout: TimeoutOpt = None,
    max_concurrent_downloads: Annotated[
        int | None, typer.Option("--max-concurrent-downloads", min=1, max=32, help="Parallel layer downloads (3).")
    ] = None,
) -> None:
    """Pull an image from a registry (Docker Hub by default)."""
    from minibuild import progress
    from minibuild.pull import pull
    from minicache.reference import parse
    from minishow import human_size

    settings = _settings(insecure_registry, timeout, registry_mirror, max_concurrent_downloads=max_concurrent_downloads)
    result = pull(store_of(ctx), image, platform=platform, settings=settings, progress=progress.for_terminal(quiet))
    if not quiet:
        familiar = parse(result.reference).familiar
        status = "Image is up to date for" if result.status == "up to date" else "Downloaded newer image for"
        typer.echo(f"Digest: {result.digest}")
        typer.echo(f"Status: {status} {familiar} ({result.platform}, {human_size(result.size)})")
    typer.echo(result.reference)


@app.command("push")
def push_cmd(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE")],
    dest: Annotated[str | None, typer.Argument(metavar="[DEST]", help="NAME[:TAG] to push to (default IMAGE).")] = None,
    quiet: QuietOpt = False,
    insecure_registry: InsecureOpt = None,
    timeout: TimeoutOpt = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", min=1024, help="Upload blobs in PATCH chunks of this many bytes.")
    ] = None,
    compression: Annotated[
        str, typer.Option("--compression", help="For uncompressed layers: gzip (default), zstd or none.")
    ] = "gzip",
) -> None:
    """Push an image of the store to a registry."""
    from minibuild import progress
    from minibuild.push import push
    from minibuild.registry.client import AUTO

    result = push(
        store_of(ctx),
        image,
        dest,
        settings=_settings(insecure_registry, timeout),
        progress=progress.for_terminal(quiet),
        chunk_size=chunk_size if chunk_size is not None else AUTO,
        compression=compression,
    )
    tag = result.reference.rsplit(":", 1)[-1]
    if quiet:
        typer.echo(f"{result.reference.rsplit(':', 1)[0]}@{result.digest}")
    else:
        typer.echo(f"{tag}: digest: {result.digest} size: {result.size}")


def _server(server: str | None) -> str:
    """`https://host:5000/v2/` → `host:5000`; none → docker.io."""
    from minicache.errors import InvalidReference
    from minicache.reference import DEFAULT_REGISTRY, parse

    if not server:
        return DEFAULT_REGISTRY
    host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    try:
        registry = parse(f"{host}/x").registry
    except InvalidReference:
        raise InvalidReference(
            f"invalid registry address {server!r}", hint="give HOST[:PORT], e.g. localhost:5000"
        ) from None
    return DEFAULT_REGISTRY if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else registry


@app.command("login")
def login_cmd(
    server: Annotated[str | None, typer.Argument(metavar="[SERVER]", help="Registry HOST[:PORT] (docker.io).")] = None,
    username: Annotated[str | None, typer.Option("--username", "-u")] = None,
    password: Annotated[str | None, typer.Option("--password", "-p", help="Insecure: use --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    insecure_registry: InsecureOpt = None,
    timeout: TimeoutOpt = None,
) -> None:
    """Log in to a registry; credentials go to ~/.docker/config.json (or its credential helper)."""
    from minibuild.registry import credentials
    from minibuild.registry.client import RegistryClient
    from minicache.errors import InvalidSpec
    from minicache.reference import DEFAULT_REGISTRY, DOCKER_HUB_ENDPOINT

    registry = _server(server)
    if password_stdin:
        if password is not None:
            raise InvalidSpec("--password and --password-stdin are mutually exclusive")
        if username is None:
            raise InvalidSpec("--password-stdin needs --username", hint="give -u USER")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        typer.echo(
            "WARNING! Using --password is insecure: it shows in the process list. Use --password-stdin.", err=True
        )
    if username is None:
        username = typer.prompt("Username")
    if password is None:
        password = typer.prompt("Password", hide_input=True)
    if not username or not password:
        raise InvalidSpec("a user name and a password are needed to log in")
    creds = credentials.Credentials(username, password)
    endpoint = DOCKER_HUB_ENDPOINT if registry == DEFAULT_REGISTRY else registry
    client = RegistryClient(registry, "", _settings(insecure_registry, timeout), endpoint=endpoint, credentials=creds)
    try:
        client.login()
    finally:
        client.close()
    where = credentials.save(registry, creds)
    typer.echo(f"Credentials stored in {where}", err=True)
    typer.echo("Login Succeeded")


@app.command("logout")
def logout_cmd(
    server: Annotated[str | None, typer.Argument(metavar="[SERVER]", help="Registry HOST[:PORT] (docker.io).")] = None,
) -> None:
    """Forget the credentials of a registry."""
    from minibuild.registry import credentials

    registry = _server(server)
    if credentials.forget(registry):
        typer.echo(f"Removing login credentials for {credentials.server_key(registry)}")
    else:
        typer.echo(f"Not logged in to {credentials.server_key(registry)}")
