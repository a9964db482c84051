"""Helpers shared by command modules."""

from __future__ import annotations

import argparse

from minicache.store import Store


def open_store(args: argparse.Namespace) -> Store:
    """The store named by --root/--runroot (or the environment, or the default)."""
    return Store(args.root, args.runroot)
