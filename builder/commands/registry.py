"""`minibuild pull|push|login|logout`: thin wrappers over minibuild.pull, minibuild.push and the credentials."""

from __future__ import annotations

import sys

from minibuild.app import Context, arg, command, flag, int_range, repeated, store_of

INSECURE = repeated(
    "--insecure-registry", metavar="HOST", help="Allow plain HTTP / unverified TLS for this HOST[:PORT] or CIDR."
)
TIMEOUT = arg(
    "--timeout", type=float, metavar="SECONDS", help="Seconds to wait for the registry to answer (default 60)."
)
QUIET = flag("--quiet", "-q", help="No progress; print only the image's name.")


def _settings(insecure: list[str] | None, timeout: float | None, mirrors: list[str] | None = None, **kw):
    from minibuild.registry.settings import load
    from minicache.record import replace

    settings = load(insecure=insecure or [], mirrors=mirrors or [], timeout=timeout)
    return replace(settings, **{k: v for k, v in kw.items() if v is not None})


@command(
    "pull",
    arg("image", metavar="NAME[:TAG|@DIGEST]"),
    arg("--platform", metavar="OS/ARCH[/VARIANT]", help="OS/ARCH[/VARIANT] to pull from a multi-platform image."),
    QUIET,
    INSECURE,
    repeated("--registry-mirror", metavar="URL", help="URL of a docker.io mirror to try first."),
    TIMEOUT,
    arg("--max-concurrent-downloads", type=int_range(1, 32), metavar="N", help="Parallel layer downloads (3)."),
)
def pull_cmd(
    ctx: Context,
    image: str,
    platform: str | None,
    quiet: bool,
    insecure_registry: list[str] | None,
    registry_mirror: list[str] | None,
    timeout: float | None,
    max_concurrent_downloads: int | None,
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
        print(f"Digest: {result.digest}")
        print(f"Status: {status} {familiar} ({result.platform}, {human_size(result.size)})")
    print(result.reference)


@command(
    "push",
    arg("image", metavar="IMAGE"),
    arg("dest", nargs="?", metavar="DEST", help="NAME[:TAG] to push to (default IMAGE)."),
    QUIET,
    INSECURE,
    TIMEOUT,
    arg("--chunk-size", type=int_range(1024), metavar="BYTES", help="Upload blobs in PATCH chunks of this many bytes."),
    arg(
        "--compression",
        default="gzip",
        metavar="gzip|zstd|none",
        help="For uncompressed layers: gzip (default), zstd or none.",
    ),
)
def push_cmd(
    ctx: Context,
    image: str,
    dest: str | None,
    quiet: bool,
    insecure_registry: list[str] | None,
    timeout: float | None,
    chunk_size: int | None,
    compression: str,
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
        print(f"{result.reference.rsplit(':', 1)[0]}@{result.digest}")
    else:
        print(f"{tag}: digest: {result.digest} size: {result.size}")


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


def _prompt(text: str, *, hide: bool = False) -> str:
    """Ask on the terminal until an answer is given; the end of input raises EOFError (a one-line error)."""
    import getpass

    while True:
        answer = getpass.getpass(f"{text}: ") if hide else input(f"{text}: ")
        if answer:
            return answer


@command(
    "login",
    arg("server", nargs="?", metavar="SERVER", help="Registry HOST[:PORT] (docker.io)."),
    arg("--username", "-u", help="The user name (asked for when not given)."),
    arg("--password", "-p", help="Insecure: use --password-stdin."),
    flag("--password-stdin", help="Read the password from stdin."),
    INSECURE,
    TIMEOUT,
)
def login_cmd(
    ctx: Context,
    server: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    insecure_registry: list[str] | None,
    timeout: float | None,
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
        print(
            "WARNING! Using --password is insecure: it shows in the process list. Use --password-stdin.",
            file=sys.stderr,
        )
    if username is None:
        username = _prompt("Username")
    if password is None:
        password = _prompt("Password", hide=True)
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
    print(f"Credentials stored in {where}", file=sys.stderr)
    print("Login Succeeded")


@command("logout", arg("server", nargs="?", metavar="SERVER", help="Registry HOST[:PORT] (docker.io)."))
def logout_cmd(ctx: Context, server: str | None) -> None:
    """Forget the credentials of a registry."""
    from minibuild.registry import credentials

    registry = _server(server)
    if credentials.forget(registry):
        print(f"Removing login credentials for {credentials.server_key(registry)}")
    else:
        print(f"Not logged in to {credentials.server_key(registry)}")
