"""`minirun-runtime spec`: a starting config.json with this project's hardened defaults (capabilities, seccomp,
masked paths, device rules, the cgroup under the default parent), so a client that edits it keeps them.

The one module of the runtime that borrows from the engine: its spec builder is where those defaults live.
"""

from __future__ import annotations


def write_spec(bundle: str, container_id: str, network: str) -> int:
    import json
    from pathlib import Path

    from minirun.cgroups.base import default_parent
    from minirun.engine import spec

    cgroups_path = f"/{default_parent().strip('/')}/{container_id}"
    oci = spec.build(
        {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        spec.RunOptions(command=["sh"], network=network),
        spec.SpecContext(container_id=container_id, cgroups_path=cgroups_path),
    )
    (Path(bundle) / "config.json").write_text(json.dumps(oci, indent=1))
    return 0
