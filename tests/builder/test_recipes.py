"""Every offline recipe in recipes/ builds, and its image does what its README says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kits.buildkit import config_of, run_build
from kits.runkit import (
    minirun,
    no_leaks,  # noqa: F401 - autouse: nothing may outlive a test
)
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
OFFLINE = sorted(
    p.name
    for p in RECIPES.iterdir()
    if (p / "Containerfile").is_file() and "ARG BASE" in (p / "Containerfile").read_text()
)


def test_the_offline_recipes_are_the_expected_ones() -> None:
    assert OFFLINE == ["config-side", "multi-stage", "static-web"]
    assert "FROM centos:7" in (RECIPES / "centos-httpd/Containerfile").read_text()
    assert all((RECIPES / name / "README.md").is_file() for name in [*OFFLINE, "centos-httpd"])


@pytest.mark.parametrize("name", OFFLINE)
def test_recipe_builds_and_runs(name: str, store: Store, busybox_image: str) -> None:
    result, out = run_build(store, RECIPES / name, tags=[f"recipe/{name}"], build_args={"BASE": busybox_image})
    assert f"STEP {result.steps}/{result.steps}" in out
    root = Path(store.root)
    if name == "multi-stage":
        run = minirun(root, "run", "--rm", f"recipe/{name}")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello from a multi-stage build: 2 parts\nFIRST PART\nSECOND PART\n"
        assert len(config_of(store, f"recipe/{name}")["rootfs"]["diff_ids"]) == 2  # busybox + the app, no more
    elif name == "static-web":
        script = "busybox httpd -p 8080 -h /www && busybox wget -qO- http://127.0.0.1:8080/"
        run = minirun(root, "run", "--rm", f"recipe/{name}", "sh", "-c", script)
        assert run.returncode == 0, run.stderr
        assert "<h1>Hello from a minibuild recipe</h1>" in run.stdout
    else:
        cfg = config_of(store, f"recipe/{name}")["config"]
        assert cfg["User"] == "1000:1000" and cfg["ExposedPorts"] == {"8081/tcp": {}}
        assert cfg["Entrypoint"] == ["busybox", "httpd", "-f", "-h", "/home/user/www"] and cfg["Cmd"] == ["-p", "8081"]
        assert cfg["Healthcheck"]["Test"][0] == "CMD-SHELL" and cfg["Healthcheck"]["Retries"] == 3
        run = minirun(root, "run", "--rm", "--entrypoint", "sh", f"recipe/{name}", "-c", "id -u; cat www/index.html")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "1000\nserved by an unprivileged user\n"
