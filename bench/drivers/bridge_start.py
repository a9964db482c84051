#!/usr/bin/env python3
"""One `minirun --rm --network bridge IMAGE CMD...` start, as it will run once `run` is wired to the network.

    python bench/drivers/bridge_start.py ROOT IMAGE [CMD...]     exits with the container's status

It composes minirun.engine's steps (create → prepare → start → wait → cleanup, as engine.run does) with
minirun.network.attach/detach: attach right after the container record exists, the namespace path and
the hosts/resolv.conf content put into the spec and files before start, detach after cleanup. The one
thing a real wiring would not do is rewrite config.json once more after prepare (~0.2 ms).
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from minicache.store import Store
    from minirun import engine, network
    from minirun.network import hosts
    from minirun.spec import RunOptions

    root, image, *command = sys.argv[1:]
    store = Store(root)
    opts = RunOptions(command=command or ["true"], network="none")
    container = engine.create_container(store, image, opts, auto_remove=True)
    try:
        attachment = network.attach(store, container.id, network.NetworkOptions(hostname=container.id[:12]))
        try:
            engine.prepare(store, container)
            spec = container.spec()
            for ns in spec["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = attachment.netns_path
            container.write_spec(spec, durable=False)
            hosts.write_in_place(container.dir / "hosts", attachment.hosts)
            hosts.write_in_place(container.dir / "resolv.conf", attachment.resolv_conf)
            with container.lock():
                proc = engine.start(store, container, stdin_open=False)
            return proc.wait()
        finally:
            engine.cleanup(store, container, remove=True)
            network.detach(store, container.id)
    except BaseException:
        from minirun.containers import ContainerStore

        if os.path.isdir(container.dir):
            ContainerStore(store).remove(container)
        raise


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
