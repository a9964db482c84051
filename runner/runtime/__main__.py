"""`python -m minirun.runtime run BUNDLE ID`: run an OCI bundle in the foreground, like `runc run`.

The bundle alone decides everything, its cgroup too (`linux.cgroupsPath`, `linux.resources`).

For debugging, for differential tests against runc, and for `minibuild build`, whose RUN steps are bundles
run through this command; exit status is the container's. `spec --bundle DIR --id ID`, like `runc spec`,
writes a starting config.json: this project's hardened defaults (capabilities, seccomp, masked paths,
device rules, the cgroup under the default parent), so a client that edits it keeps them.
"""

from __future__ import annotations

import argparse
import sys

from minicache.errors import MiniError, one_line
from minirun.runtime import start
from minirun.runtime.signals import SignalForwarder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minirun.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a bundle and wait for it")
    run.add_argument("--bundle", "-b", dest="bundle_flag")
    run.add_argument("bundle", nargs="?")
    run.add_argument("id")
    spec_cmd = sub.add_parser("spec", help="write a default config.json into a bundle directory")
    spec_cmd.add_argument("--bundle", "-b", default=".")
    spec_cmd.add_argument("--id", default="container", help="the container ID its cgroup path is named after")
    spec_cmd.add_argument("--network", choices=("none", "host"), default="none")
    args = parser.parse_args(argv)
    if args.command == "spec":
        return write_spec(args.bundle, args.id, args.network)
    from minirun.cgroups import show_warnings

    show_warnings("minirun.runtime")
    try:
        with SignalForwarder() as forwarder:
            proc = start(args.bundle_flag or args.bundle or ".", args.id)
            forwarder.target(proc.pid)
            return proc.wait()
    except MiniError as err:
        print(one_line("minirun.runtime", err), file=sys.stderr)
        return err.exit_code


def write_spec(bundle: str, container_id: str, network: str) -> int:
    import json
    from pathlib import Path

    from minirun.cgroups.base import default_parent
    from minirun.engine import spec

    cgroups_path = f"/{default_parent().strip('/')}/{container_id}"
    oci = spec.build(
        {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        spec.RunOptions(command=["sh"], network=network),
        spec.SpecContext(container_id=container_id, cgroups_path=cgroups_path),
    )
    (Path(bundle) / "config.json").write_text(json.dumps(oci, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
