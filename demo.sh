#!/usr/bin/env bash
# The main job end to end on an embedded default: no internet, no registry account.
# Builds a small image from the host's busybox-static, imports it with `minibuild from-tar`, lists it.
set -euo pipefail
cd "$(dirname "$0")"
BIN=.venv/bin
export MINICONTAINER_ROOT=${MINICONTAINER_ROOT:-/var/lib/minicontainer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$BIN/python -c 'import sys; from pathlib import Path; sys.path.insert(0, "tests"); import imagekit; \
Path(sys.argv[1]).write_bytes(imagekit.tar_of_dir(imagekit.busybox_rootfs(Path(sys.argv[2]))))' \
  "$work/busybox.tar" "$work/rootfs"
echo "+ minibuild from-tar $work/busybox.tar --tag demo/busybox:latest"
$BIN/minibuild from-tar "$work/busybox.tar" --tag demo/busybox:latest --change 'CMD ["/bin/sh"]'
echo "+ minibuild images"
$BIN/minibuild images
echo "+ minirun --rm demo/busybox echo hello from a container"
$BIN/minirun --rm demo/busybox echo hello from a container
echo "+ minirun --rm demo/busybox sh -c 'hostname; id; grep -E \"^(CapEff|NoNewPrivs|Seccomp):\" /proc/self/status'"
$BIN/minirun --rm demo/busybox sh -c 'hostname; id; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'
