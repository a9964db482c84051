"""The container engine: image + options → container record → root filesystem → OCI spec → runtime → exit.

    containers.py       container records, names and the per-container lock (`containers/<id>/`)
    lifecycle.py        the state machine: every change of a container's recorded state, and the truth
                        behind it (stop, kill, pause, rm, wait; settle after a crash; the exit step)
    steps.py            the steps that make and run a container: create, prepare, start, wait, exec
    monitor.py          a detached container's monitor: watches its process and relays its output
    networking.py       minirun.network adapted to containers: attach before start, detach at the end
    rootfs.py           the root filesystem: overlay of the image's layers (or a flattened copy)
    spec.py             image config + options → OCI runtime spec, a pure function
    seccomp_profile.py  the default seccomp profile and its resolution into the spec
    users.py            `--user` → uid, gid, groups and home, from the image's own files
    flags.py            the checked values of `run`'s flags (volumes, tmpfs, ulimits, restart policy, ...)
    logs.py             a detached container's log (JSON lines)
    usage.py            what a running container uses now: cgroup and network counters, processes

May import: minirun.runtime, minirun.cgroups, minirun.network, minicache. Never minirun.cli or minirun.serve.
"""
