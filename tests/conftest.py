"""Fixtures shared by every test: an empty store per test and root/kernel checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minicache.store import Store

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root (namespaces, mounts, cgroups)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "minicontainer-store"
    root.mkdir()
    return root


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)
