"""`minirun run [OPTIONS] IMAGE [COMMAND [ARG...]]` (short form `minirun IMAGE COMMAND...`): a new container.

In the foreground this process is the container's monitor; with -d a monitor process takes it over and
`run` prints the container's ID as soon as it runs. `create` shares the flags (`add_container_flags`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minirun.cgroups.flags import DEVICE_FLAGS
from minirun.cgroups.flags import FLAGS as RESOURCE_FLAGS
from minirun.cli.options import APPEND, FLAG, VALUE, Option, add_to

if TYPE_CHECKING:
    import argparse

    from minicache.store import Store
    from minirun.engine.containers import Container
    from minirun.engine.spec import RunOptions

DEFAULT_NETWORK_ENV = "MINICONTAINER_DEFAULT_NETWORK"  # the --network used when none is given (bridge)

_NETWORK_HELP = f"bridge (default, or ${DEFAULT_NETWORK_ENV}) | none | host | container:NAME|ID | a network's name"
# The flags that describe a container (`run` and `create`), in --help's order.
# The resource flags minirun.cgroups declares and checks (--memory, --cpus, ...); the device ones repeat.
RESOURCE_OPTIONS = tuple(
    Option(
        names,
        dest,
        kind=APPEND if dest in DEVICE_FLAGS else VALUE,
        help=help_,
        metavar=metavar,
        group="resource limits",
    )
    for dest, (names, metavar, help_) in RESOURCE_FLAGS.items()
)
CONTAINER_OPTIONS = (
    Option(("-i", "--interactive"), "interactive", FLAG, "keep STDIN open"),
    Option(("-t", "--tty"), "tty", FLAG, "allocate a pseudo-terminal"),
    Option(("--rm",), "rm", FLAG, "remove the container when it exits"),
    Option(("--name",), "name", help="assign a name to the container"),
    Option(("-l", "--label"), "label", APPEND, "set a label (shown by inspect, ps filters, events)", "KEY=VALUE"),
    Option(("-e", "--env"), "env", APPEND, "set an environment variable", "KEY[=VALUE]"),
    Option(("--env-file",), "env_file", APPEND, "read environment variables from a file", "FILE"),
    Option(("-w", "--workdir"), "workdir", help="working directory inside the container"),
    Option(("--entrypoint",), "entrypoint", help="override the image's entrypoint ('' for none)"),
    Option(("-h", "--hostname"), "hostname", help="container host name (default: the short container ID)"),
    Option(("-u", "--user"), "user", help="NAME|UID[:GROUP|GID] to run as"),
    Option(("-v", "--volume"), "volume", APPEND, "bind-mount a host path", "HOST:CTR[:ro]"),
    Option(("--tmpfs",), "tmpfs", APPEND, "mount a tmpfs", "PATH[:OPTS]"),
    Option(("--read-only",), "read_only", FLAG, "mount the container's root filesystem read-only"),
    Option(("--cap-add",), "cap_add", APPEND, "add a Linux capability", "CAP"),
    Option(("--cap-drop",), "cap_drop", APPEND, "drop a Linux capability", "CAP"),
    Option(("--privileged",), "privileged", FLAG, "give extended privileges (all capabilities, no seccomp)"),
    Option(("--ulimit",), "ulimit", APPEND, "set a resource limit", "NAME=SOFT[:HARD]"),
    Option(("--init",), "init", FLAG, "run an init (tini) as PID 1 that reaps zombies and forwards signals"),
    Option(("--network", "--net"), "network", help=_NETWORK_HELP, metavar="NETWORK"),
    Option(("-p", "--publish"), "publish", APPEND, "publish a port", "[IP:]HOSTPORT:PORT[/PROTO]"),
    Option(("-P", "--publish-all"), "publish_all", FLAG, "publish the image's exposed ports on free host ports"),
    Option(("--add-host",), "add_host", APPEND, "add a line to /etc/hosts", "NAME:IP"),
    Option(("--dns",), "dns", APPEND, "a nameserver for /etc/resolv.conf", "IP"),
    Option(("--dns-search",), "dns_search", APPEND, "a search domain for /etc/resolv.conf", "DOMAIN"),
    Option(("--dns-option",), "dns_option", APPEND, "an option for /etc/resolv.conf", "OPT"),
    Option(("--ip",), "ip", help="the container's address on a user-defined network", metavar="IPV4"),
    Option(("--network-alias",), "network_alias", APPEND, "another name on a user network", "NAME"),
    Option(
        ("--security-opt",),
        "security_opt",
        APPEND,
        "seccomp=unconfined|FILE.json, no-new-privileges[=true|false]",
        "OPT",
    ),
    Option(
        ("--restart",), "restart", help="no | on-failure[:N] | always | unless-stopped", metavar="POLICY", default="no"
    ),
    Option(
        ("--stop-signal",),
        "stop_signal",
        help="signal `stop` sends first (default: the image's, or SIGTERM)",
        metavar="SIGNAL",
    ),
    Option(
        ("--stop-timeout",),
        "stop_timeout",
        help="seconds `stop` waits before SIGKILL (default 10)",
        metavar="SECONDS",
        type=int,
    ),
    Option(
        ("--cgroup-parent",),
        "cgroup_parent",
        help="cgroup the container's own goes under (default: minicontainer)",
        metavar="PATH",
    ),
    *RESOURCE_OPTIONS,
)
# `run`'s options; its positionals are IMAGE [COMMAND...] (configure)
OPTIONS = (Option(("-d", "--detach"), "detach", FLAG, "run in the background and print the ID"), *CONTAINER_OPTIONS)


def configure(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser, OPTIONS)


def add_container_flags(parser: argparse.ArgumentParser, options: tuple[Option, ...] = CONTAINER_OPTIONS) -> None:
    """The flags that describe a container (`run` and `create`), then IMAGE [COMMAND...]."""
    import argparse

    add_to(parser, options)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _security(opts_list: list[str], opts: RunOptions) -> None:
    """--security-opt: seccomp=unconfined|FILE and no-new-privileges[=BOOL] (also Docker's old `:` syntax)."""
    for raw in opts_list:
        key, sep, value = raw.partition("=" if "=" in raw else ":")
        if key == "seccomp" and sep:
            if value == "unconfined":
                opts.seccomp = "unconfined"
            else:
                from minirun.engine.seccomp_profile import load_file

                opts.seccomp = load_file(value)
        elif key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidSpec(f"invalid --security-opt {raw!r}", hint="use no-new-privileges[=true|false]")
            opts.no_new_privileges = value != "false"
        else:
            raise InvalidSpec(
                f"unsupported --security-opt {raw!r}", hint="supported: seccomp=unconfined|FILE, no-new-privileges"
            )


def _check_network(args: argparse.Namespace, network: str) -> None:
    """Refuse now, before anything is created, what attach would refuse at start (Docker's messages)."""
    shared = network.startswith("container:")
    light = network in ("none", "host") or shared
    if light and (args.publish or args.publish_all):
        raise InvalidSpec("conflicting options: port publishing and the container type network mode")
    if shared and args.hostname:
        raise InvalidSpec("conflicting options: hostname and the network mode")
    if shared and (args.add_host or args.dns):
        raise InvalidSpec("conflicting options: custom DNS or extra hosts and the network mode")
    if (args.ip or args.network_alias) and (light or network in ("bridge", "default")):
        raise InvalidSpec(
            "user specified IP address and aliases are supported only for user defined networks",
            hint="create one with minirun network create, and use --network NAME",
        )
    if args.add_host or args.publish or args.dns or args.dns_search or args.dns_option:
        from minirun.network import hosts, ports, resolv

        for item in args.add_host:
            hosts.parse_add_host(item)
        for item in args.publish:
            ports.parse_publish(item)
        resolv.check_dns(args.dns)
        resolv.check_words(args.dns_search, "--dns-search")
        resolv.check_words(args.dns_option, "--dns-option")
    if not light and network not in ("bridge", "default"):
        from minirun.network.networks import check_name

        check_name(network)


def options(args: argparse.Namespace, *, attach: bool = True) -> RunOptions:
    """Turn the parsed flags into checked RunOptions (`attach`: the caller's terminal will be used)."""
    from minirun.cgroups.flags import resources_from_args
    from minirun.engine import flags
    from minirun.engine.spec import RunOptions

    environ = os.environ
    env: list[str] = []
    for path in args.env_file:
        env += flags.read_env_file(path, environ)
    for item in args.env:
        entry = flags.env_entry(item, environ)
        if entry is not None:
            env.append(entry)
    interactive, tty = args.interactive, args.tty
    if attach and not interactive and not tty and os.isatty(0) and os.isatty(1):
        interactive = tty = True  # `minirun IMAGE bash` at a terminal: an interactive session, as a user expects
    if attach and tty and interactive and not os.isatty(0):
        raise InvalidSpec("the input device is not a TTY", hint="drop -t, or run from a terminal")
    network = args.network or os.environ.get(DEFAULT_NETWORK_ENV) or "bridge"
    _check_network(args, network)
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
        network=network,
        publish=list(args.publish),
        publish_all=args.publish_all,
        add_hosts=list(args.add_host),
        dns=list(args.dns),
        dns_search=list(args.dns_search),
        dns_options=list(args.dns_option),
        ip=args.ip,
        network_aliases=list(args.network_alias),
        resources=resources_from_args(args),
        cgroup_parent=args.cgroup_parent,
    )
    _security(args.security_opt, opts)
    return opts


def create(store: Store, args: argparse.Namespace, *, attach: bool) -> Container:
    """The container the flags describe, created (not started)."""
    from minirun.engine import steps
    from minirun.engine.flags import parse_labels, parse_restart, parse_signal, validate_name

    opts = options(args, attach=attach)
    if opts.network not in ("none", "host", "bridge", "default") and not opts.network.startswith("container:"):
        from minirun.network import networks

        networks.get(store, opts.network)  # as Docker: no container for a network that does not exist
    if args.name is not None:
        validate_name(args.name)
    if args.stop_signal is not None:
        parse_signal(args.stop_signal)
    if args.stop_timeout is not None and args.stop_timeout < -1:
        raise InvalidSpec(f"invalid --stop-timeout {args.stop_timeout}", hint="give seconds (0 or more)")
    return steps.create_container(
        store,
        args.image,
        opts,
        name=args.name,
        auto_remove=args.rm,
        restart=parse_restart(args.restart),
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout,
        labels=parse_labels(getattr(args, "label", None) or []),
    )


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import PROG, store_args

    if args.detach:
        from minirun.engine import monitor

        report = monitor.launch(store_args(args), lambda store: create(store, args, attach=False))
        for warning in report.get("warnings", ()):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        print(report["id"])
        return 0
    from minirun.cgroups import show_warnings
    from minirun.cli.commands.common import open_store
    from minirun.engine import steps

    show_warnings(PROG)
    store = open_store(args)
    container = create(store, args, attach=True)
    return steps.run_attached(store, container, remove=args.rm)
