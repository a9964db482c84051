"""`minirun serve` weighs nothing on the `run` path: its modules and web libraries load only for `serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
WEB = ("starlette", "uvicorn", "anyio", "minirun.serve", "h11")


def test_run_path_loads_no_web_module_and_appends_its_events(store_root: Path, busybox_image: str) -> None:
    probe = (
        "import sys\n"
        "from minirun.cli import main as cli\n"
        "code = cli.main(sys.argv[1:])\n"
        f"print('loaded:', sorted(m for m in {WEB!r} if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    line = ["--root", str(store_root), "--rm", "--network", "none", "--name", "quick", busybox_image, "true"]
    result = subprocess.run([sys.executable, "-c", probe, *line], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["loaded: []"]
    log = [json.loads(line) for line in (store_root / "events.log").read_text().splitlines()]
    assert [(e["Type"], e["Action"], e["Attributes"]["name"]) for e in log] == [
        ("container", "create", "quick"), ("container", "start", "quick"),
        ("container", "die", "quick"), ("container", "destroy", "quick"),
    ]  # fmt: skip
    assert log[2]["Attributes"]["exitCode"] == "0"
