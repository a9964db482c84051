#!/bin/sh
# The VM lane's guest side (tests/kits/vmkit.py boots the VM and runs this in it, as root, with no systemd).
# Usage: vmguest.sh DIRS WORKTREE PYTHON PYTEST-ARGS...
# DIRS (colon-separated) are mounted at their own paths from the lane's disk image (labelled mclane): Python
# runs from a virtio disk, not from the emulated 9p root. /tmp becomes a tmpfs for the tests' stores
# (overlayfs needs a real upper layer).
set -eu
dirs=$1 worktree=$2 python=$3
shift 3
stage() { echo "guest: $(cut -d' ' -f1 /proc/uptime)s: $*"; }
controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || true)
if [ -z "$controllers" ] || [ -e /sys/fs/cgroup/unified ]; then
  echo "VM lane FAILED: the guest does not run pure cgroup v2" >&2
  exit 1
fi
stage "kernel $(uname -r), cgroup v2 controllers: $controllers"
for module in virtio_blk virtio_scsi sd_mod ext4 loop; do modprobe "$module" 2>/dev/null || true; done
disk=""
for _ in $(seq 300); do
  for dev in /dev/vd? /dev/sd?; do
    [ -b "$dev" ] && [ "$(blkid -s LABEL -o value "$dev" 2>/dev/null)" = mclane ] && disk=$dev
  done
  [ -n "$disk" ] && break
  sleep 0.1
done
if [ -z "$disk" ]; then
  echo "VM lane FAILED: the lane's disk image did not appear" >&2
  exit 1
fi
mkdir -p /run/mc-lane
mount -t ext4 "$disk" /run/mc-lane
old_ifs=$IFS
IFS=:
for d in $dirs; do mount --bind "/run/mc-lane$d" "$d"; done
IFS=$old_ifs
mount -t tmpfs -o mode=1777 mc-vm-tmp /tmp
stage "mounted $dirs from $disk"
unset PYTHONDONTWRITEBYTECODE  # the image is ours: test modules compile once
cd "$worktree"
exec env TMPDIR=/tmp PYTHONUNBUFFERED=1 "$python" -m pytest -m vm -p no:cacheprovider -v -rs "$@"
