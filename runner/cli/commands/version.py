"""`minirun version`."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def execute(args: argparse.Namespace) -> int:
    try:
        print(f"minirun {version('minicontainer')}")
    except PackageNotFoundError:
        print("minirun (not installed)")
    return 0
