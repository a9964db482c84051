"""How a RUN step reaches the OCI runtime: a bundle directory and the runtime's command line, nothing else.

minibuild never imports minirun: it asks the runtime for its default (hardened) spec with the `spec` verb,
edits the process, and runs the bundle with the `run` verb, as it would drive runc. This module is the one
place that knows the runtime's command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from minibuild.errors import BuildError

RUNTIME_ENV = "MINIBUILD_RUNTIME"  # another runc-compatible runtime, e.g. runc (for differential runs)


def command() -> list[str]:
    """The runtime's argv prefix: $MINIBUILD_RUNTIME, else `minirun-runtime` beside this Python, else the module."""
    if env := os.environ.get(RUNTIME_ENV):
        return env.split()
    beside = Path(sys.executable).with_name("minirun-runtime")
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("minirun-runtime"):
        return [found]
    return [sys.executable, "-m", "minirun.runtime"]


_TEMPLATE_ID = "minibuild-template"
_templates: dict[str, str] = {}  # network -> the runtime's spec for _TEMPLATE_ID, as JSON text


def default_spec(bundle: Path, container_id: str, network: str) -> dict[str, Any]:
    """The runtime's default config.json for `container_id` (cgroup path included).

    The runtime is asked once per network mode and process; later steps get a copy with their own ID in the
    cgroup path (the only place the spec names it), which saves a runtime start per RUN.
    """
    if network not in _templates:
        argv = [*command(), "spec", "--bundle", str(bundle), "--id", _TEMPLATE_ID, "--network", network]
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise BuildError(f"the runtime could not write a spec: {result.stderr.strip() or result.returncode}")
        _templates[network] = (bundle / "config.json").read_text()
    spec = json.loads(_templates[network])
    linux = spec.get("linux") or {}
    if isinstance(linux.get("cgroupsPath"), str):
        parent, _, last = linux["cgroupsPath"].rpartition("/")
        if last == _TEMPLATE_ID:
            linux["cgroupsPath"] = f"{parent}/{container_id}"
    return spec


def run(bundle: Path, container_id: str, spec: dict[str, Any], output: IO[bytes] | None = None) -> int:
    """Write `spec` into `bundle` and run it in the foreground. Returns the status.

    The step's output (stdout and stderr) goes to ours, or into `output` when given (a quiet build).
    """
    (bundle / "config.json").write_text(json.dumps(spec))
    sys.stdout.flush()
    proc = subprocess.Popen(
        [*command(), "run", "--bundle", str(bundle), container_id],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()  # the runtime forwards it to the container and cleans up its cgroup
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
