"""The runtime: executes any OCI bundle (config.json + rootfs). Knows nothing about images or the store.

from minirun.runtime import start
proc = start("/path/to/bundle", container_id)
code = proc.wait()

The names below are loaded on first use, so a process that needs only a small piece (the monitor needs
`minirun.runtime.channel`) does not load the whole runtime. Paths inside a container's root are resolved by
descriptor with `minicache.inroot`, the resolver minibuild uses too.

`operations` holds runc's verbs as a library (`Runtime(root)`, one method per OCI operation), which both the
engine (in-process) and `cli`, the `minirun-runtime` console script, call; `state` keeps the per-container
folders whose state is the truth about a container's process.

May import: minirun.cgroups, minicache. `default_spec` (the `spec` verb) also borrows the engine's spec
builder (minirun.engine.spec); no other module here imports the engine.
"""

from __future__ import annotations

__all__ = ["Process", "StartError", "start"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from minirun.runtime import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
