"""Fixtures for the registry tests: one real docker-registry per module, a fault proxy per test, and an
empty ~/.docker and no proxy or registry settings from the environment for every test. Helpers: pullkit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import registrykit


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registrykit.RegistryServer]:
    with registrykit.RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(autouse=True)
def _docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty ~/.docker and no proxy or registry settings from the environment."""
    for key in list(os.environ):
        if (
            "proxy" in key.lower()
            or key.startswith("MINICONTAINER_REGIST")
            or key == "MINICONTAINER_INSECURE_REGISTRIES"
        ):
            monkeypatch.delenv(key)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("MINICONTAINER_REGISTRIES_CONF", str(tmp_path / "no-registries.json"))
    (tmp_path / "no-registries.json").write_text("{}")
    return config


@pytest.fixture
def proxy(registry: registrykit.RegistryServer) -> Iterator[registrykit.FaultProxy]:
    """A fault-injecting proxy in front of the module's registry, for this test only."""
    with registrykit.FaultProxy(registry.endpoint) as p:
        yield p
