"""OCI lifecycle hooks: each runs with the container's state JSON on its stdin, within its timeout.

createContainer and startContainer hooks run from the container's init (minirun.runtime.child), the
others from the runtime's process. A failing prestart, createRuntime, createContainer or startContainer
hook stops the container from being created or started; a failing poststart or poststop hook is only logged.
"""

from __future__ import annotations

import json
from typing import Any

from minicache.errors import InvalidSpec, MiniError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class HookError(MiniError):
    """A hook failed, timed out or could not be run."""


def check(hooks: Any) -> None:
    """Refuse a `hooks` object this runtime cannot run as written (unknown kind, no absolute path, bad timeout)."""
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise InvalidSpec("hooks must be an object")
    for kind, entries in hooks.items():
        if kind not in KINDS:
            raise InvalidSpec(f"unknown hook kind hooks.{kind}", hint=f"use {', '.join(KINDS)}")
        if not isinstance(entries, list):
            raise InvalidSpec(f"hooks.{kind} must be a list")
        for hook in entries:
            path = hook.get("path") if isinstance(hook, dict) else None
            if not isinstance(path, str) or not path.startswith("/"):
                raise InvalidSpec(f"hooks.{kind}: each hook needs an absolute path")
            timeout = hook.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise InvalidSpec(f"hooks.{kind}: timeout must be a positive number of seconds")


def run(hooks: dict[str, Any] | None, kind: str, state: dict[str, Any]) -> None:
    """Run every hook of `kind` in order; HookError at the first that fails."""
    entries = (hooks or {}).get(kind)
    if not entries:
        return
    import subprocess

    data = json.dumps(state).encode()
    for hook in entries:
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in hook.get("env") or [])
        try:
            result = subprocess.run(
                args,
                executable=path,
                input=data,
                env=env,
                capture_output=True,
                timeout=hook.get("timeout"),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{kind} hook {path} timed out after {hook.get('timeout')}s") from None
        except OSError as e:
            raise HookError(f"{kind} hook {path} could not run: {e.strerror}") from None
        if result.returncode != 0:
            said = result.stderr.decode(errors="replace").strip().splitlines()
            detail = f": {said[-1]}" if said else ""
            raise HookError(f"{kind} hook {path} exited with status {result.returncode}{detail}")
