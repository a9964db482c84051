"""`python -m minirun.runtime run BUNDLE ID`: run an OCI bundle in the foreground, like `runc run`.

The bundle alone decides everything, its cgroup too (`linux.cgroupsPath`, `linux.resources`).

For debugging and for differential tests against runc; exit status is the container's.
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
    run.add_argument("bundle")
    run.add_argument("id")
    args = parser.parse_args(argv)
    from minirun.cgroups import show_warnings

    show_warnings("minirun.runtime")
    try:
        with SignalForwarder() as forwarder:
            proc = start(args.bundle, args.id)
            forwarder.target(proc.pid)
            return proc.wait()
    except MiniError as err:
        print(one_line("minirun.runtime", err), file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
