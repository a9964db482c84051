"""The runtime: executes any OCI bundle (config.json + rootfs). Knows nothing about images or the store.

from minirun.runtime import start
proc = start("/path/to/bundle", container_id)
code = proc.wait()

The names below are loaded on first use, so a process that needs only a small piece (the monitor needs
`minirun.runtime.channel`) does not load the whole runtime. `inroot` resolves paths inside a container's
root by descriptor, for the runtime's mounts and the engine's user lookup.

`cli` is the `minirun-runtime` console script (runc's verbs; `state` keeps its per-container folders).

May import: minirun.cgroups, minicache. Its command-line entry (`python -m minirun.runtime`) also borrows
the engine's default spec (minirun.engine.spec) for its `spec` verb, which `minirun-runtime spec` calls;
no other module here imports the engine.
"""

from __future__ import annotations

__all__ = ["Process", "StartError", "start"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from minirun.runtime import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
