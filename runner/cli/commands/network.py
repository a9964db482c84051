"""`minirun network create|ls|inspect|rm|prune|connect|disconnect`: user-defined bridge networks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minicache.store import Store


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="network_command", metavar="COMMAND", parser_class=type(parser))
    sub.required = True
    create = sub.add_parser("create", help="Create a bridge network", description="Create a bridge network")
    create.add_argument("--subnet", help="CIDR, e.g. 10.90.0.0/24 (default: the first free one of the pool)")
    create.add_argument("--gateway", help="the bridge's address (default: the subnet's first host)")
    create.add_argument("--mtu", type=int, help="MTU of the bridge and the containers' interfaces (default 1500)")
    create.add_argument("-d", "--driver", default="bridge", choices=["bridge"], help="only bridge")
    create.add_argument("name", metavar="NAME")
    ls = sub.add_parser("ls", aliases=["list"], help="List networks", description="List networks")
    ls.add_argument("-q", "--quiet", action="store_true", help="only the IDs")
    inspect = sub.add_parser("inspect", help="Show networks as JSON", description="Show networks as JSON")
    inspect.add_argument("names", nargs="+", metavar="NETWORK")
    rm = sub.add_parser("rm", aliases=["remove"], help="Remove networks", description="Remove networks")
    rm.add_argument("names", nargs="+", metavar="NETWORK")
    prune = sub.add_parser(
        "prune",
        help="Remove unused networks",
        description="Detach containers that no longer exist, then remove user networks without containers",
    )
    prune.add_argument("-f", "--force", action="store_true", help="do not ask (minirun never asks)")
    connect = sub.add_parser("connect", help="Connect a running container to a network")
    connect.add_argument("--ip", help="IPv4 address on that network")
    connect.add_argument("--alias", action="append", default=[], help="another name for the container there")
    connect.add_argument("network", metavar="NETWORK")
    connect.add_argument("container", metavar="CONTAINER")
    disconnect = sub.add_parser("disconnect", help="Disconnect a container from a network")
    disconnect.add_argument("network", metavar="NETWORK")
    disconnect.add_argument("container", metavar="CONTAINER")


def _container_id(store: Store, ref: str) -> str:
    from minirun.engine.containers import ContainerStore

    return ContainerStore(store).get(ref).id


def execute(args: argparse.Namespace) -> int:
    from minirun import network
    from minirun.cli.commands.common import open_store

    store = open_store(args)
    command = {"list": "ls", "remove": "rm"}.get(args.network_command, args.network_command)
    if command == "create":
        net = network.create_network(store, args.name, subnet=args.subnet, gateway=args.gateway, mtu=args.mtu)
        print(net.id)
    elif command == "ls":
        rows = network.list_networks(store)
        if args.quiet:
            for net, _count in rows:
                print(net.id[:12])
            return 0
        from minishow import table

        header = ("NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "CONTAINERS")
        print(table(header, [(n.id[:12], n.name, n.driver, n.subnet, n.gateway, n.bridge, str(c)) for n, c in rows]))
    elif command == "inspect":
        print(json.dumps([network.inspect_network(store, name) for name in args.names], indent=4))
    elif command == "rm":
        from minicache.errors import MiniError, one_line

        failed = 0
        for name in args.names:
            try:
                network.remove_network(store, name)
                print(name)
            except MiniError as err:  # as Docker: go on with the others, fail at the end
                print(one_line("minirun", err), file=sys.stderr)
                failed = 1
        return failed
    elif command == "prune":
        from minirun.engine.containers import ContainerStore

        network.prune(store, keep=ContainerStore(store).ids())
        removed = network.prune_networks(store)
        if removed:
            print("Deleted Networks:")
            for name in removed:
                print(name)
    elif command == "connect":
        iface = network.connect(
            store, _container_id(store, args.container), args.network, ip=args.ip, aliases=args.alias
        )
        print(f"{iface.ifname} {iface.ip}/{iface.prefixlen}")
    elif command == "disconnect":
        network.disconnect(store, _container_id(store, args.container), args.network)
    return 0
