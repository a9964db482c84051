"""minirun: runs images from the minicontainer store in isolated containers.

Folders by concern, each importing only those below it (its __init__ says what it owns):

    cli/       the `minirun` command line: parsing, one module per command, how containers are shown
    serve/     `minirun serve`: the dashboard and the Docker Engine API, beside the command line
    engine/    containers: records, the state machine, the steps that make and run them, the monitor
    network/   network namespaces, bridges, veths, IPAM, published ports
    runtime/   executes an OCI bundle: namespaces, pivot_root, capabilities, seccomp
    cgroups/   the container's cgroup, v1, v2 or none
    errors.py  the container errors every folder may raise (below minicache.errors.MiniError)

minirun never imports minibuild, nor minibuild minirun; both build on minicache, the store.
"""
