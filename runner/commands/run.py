"""`minirun run [OPTIONS] IMAGE [COMMAND [ARG...]]` (short form `minirun IMAGE COMMAND...`): a new container."""

from __future__ import annotations

import argparse
import os

from minicache.errors import InvalidSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.spec import RunOptions


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-i", "--interactive", action="store_true", help="keep STDIN open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    add("--rm", action="store_true", help="remove the container when it exits")
    add("--name", help="assign a name to the container")
    add("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set an environment variable")
    add("--env-file", action="append", default=[], metavar="FILE", help="read environment variables from a file")
    add("-w", "--workdir", help="working directory inside the container")
    add("--entrypoint", help="override the image's entrypoint ('' for none)")
    add("--hostname", help="container host name (default: the short container ID)")
    add("-u", "--user", help="NAME|UID[:GROUP|GID] to run as")
    add("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]", help="bind-mount a host path")
    add("--tmpfs", action="append", default=[], metavar="PATH[:OPTS]", help="mount a tmpfs")
    add("--read-only", action="store_true", help="mount the container's root filesystem read-only")
    add("--cap-add", action="append", default=[], metavar="CAP", help="add a Linux capability")
    add("--cap-drop", action="append", default=[], metavar="CAP", help="drop a Linux capability")
    add("--privileged", action="store_true", help="give extended privileges (all capabilities, no seccomp)")
    add("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="set a resource limit")
    add("--init", action="store_true", help="run an init (tini) as PID 1 that reaps zombies and forwards signals")
    add("--network", "--net", default="none", metavar="MODE", help="none (default: private, loopback only) | host")
    add(
        "--security-opt",
        action="append",
        default=[],
        metavar="OPT",
        help="seccomp=unconfined|FILE.json, no-new-privileges[=true|false]",
    )
    add("image", metavar="IMAGE")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _security(opts_list: list[str], opts: RunOptions) -> None:
    """--security-opt: seccomp=unconfined|FILE and no-new-privileges[=BOOL] (also Docker's old `:` syntax)."""
    for raw in opts_list:
        key, sep, value = raw.partition("=" if "=" in raw else ":")
        if key == "seccomp" and sep:
            if value == "unconfined":
                opts.seccomp = "unconfined"
            else:
                from minirun.seccomp_profile import load_file

                opts.seccomp = load_file(value)
        elif key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidSpec(f"invalid --security-opt {raw!r}", hint="use no-new-privileges[=true|false]")
            opts.no_new_privileges = value != "false"
        else:
            raise InvalidSpec(
                f"unsupported --security-opt {raw!r}", hint="supported: seccomp=unconfined|FILE, no-new-privileges"
            )


def options(args: argparse.Namespace) -> RunOptions:
    """Turn the parsed flags into checked RunOptions."""
    from minirun import flags
    from minirun.spec import RunOptions

    environ = os.environ
    env: list[str] = []
    for path in args.env_file:
        env += flags.read_env_file(path, environ)
    for item in args.env:
        entry = flags.env_entry(item, environ)
        if entry is not None:
            env.append(entry)
    interactive, tty = args.interactive, args.tty
    if not interactive and not tty and os.isatty(0) and os.isatty(1):
        interactive = tty = True  # `minirun IMAGE bash` at a terminal: an interactive session, as the issue asks
    if tty and interactive and not os.isatty(0):
        raise InvalidSpec("the input device is not a TTY", hint="drop -t, or run from a terminal")
    if args.network not in ("none", "host"):
        raise InvalidSpec(f"network mode {args.network!r} is not available yet", hint="use --network none or host")
    opts = RunOptions(
        command=list(args.command),
        entrypoint=args.entrypoint,
        env=env,
        workdir=flags.container_path(args.workdir, "the working directory") if args.workdir is not None else None,
        user=args.user,
        hostname=args.hostname,
        tty=tty,
        interactive=interactive,
        volumes=[flags.parse_volume(v) for v in args.volume],
        tmpfs=[flags.parse_tmpfs(t) for t in args.tmpfs],
        read_only=args.read_only,
        cap_add=list(args.cap_add),
        cap_drop=list(args.cap_drop),
        privileged=args.privileged,
        ulimits=[flags.parse_ulimit(u) for u in args.ulimit],
        init=args.init,
        network=args.network,
    )
    _security(args.security_opt, opts)
    return opts


def execute(args: argparse.Namespace) -> int:
    from minirun import engine
    from minirun.commands.common import open_store

    opts = options(args)
    if args.name is not None:
        from minirun.flags import validate_name

        validate_name(args.name)
    return engine.run(open_store(args), args.image, opts, name=args.name, remove=args.rm)
