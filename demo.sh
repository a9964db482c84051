#!/usr/bin/env bash
# The main job end to end on an embedded default: no internet, no registry account.
# Builds a small image from the host's busybox-static, imports it with `minibuild from-tar`, lists it,
# then builds recipes/multi-stage on it with `minibuild build` and runs the result.
set -euo pipefail
cd "$(dirname "$0")"
BIN=.venv/bin
export MINICONTAINER_ROOT=${MINICONTAINER_ROOT:-/var/lib/minicontainer}
work=$(mktemp -d)
had_bridge=$($BIN/minirun network ls | awk '$2 == "bridge"' | wc -l)  # the default network is made on first use
trap 'rm -rf "$work"' EXIT  # replaced by cleanup() below
$BIN/python -c 'import sys; from pathlib import Path; sys.path.insert(0, "tests"); import imagekit; \
Path(sys.argv[1]).write_bytes(imagekit.tar_of_dir(imagekit.busybox_rootfs(Path(sys.argv[2]))))' \
  "$work/busybox.tar" "$work/rootfs"
echo "+ minibuild from-tar $work/busybox.tar --tag demo/busybox:latest"
$BIN/minibuild from-tar "$work/busybox.tar" --tag demo/busybox:latest --change 'CMD ["/bin/sh"]'
echo "+ minibuild build --build-arg BASE=demo/busybox -t demo/hello recipes/multi-stage"
$BIN/minibuild build --build-arg BASE=demo/busybox -t demo/hello recipes/multi-stage
echo "+ minibuild images"
$BIN/minibuild images
echo "+ minirun --rm demo/hello"
$BIN/minirun --rm demo/hello
echo "+ minirun --rm demo/busybox echo hello from a container"
$BIN/minirun --rm demo/busybox echo hello from a container
echo "+ minirun --rm demo/busybox sh -c 'hostname; id; grep -E \"^(CapEff|NoNewPrivs|Seccomp):\" /proc/self/status'"
$BIN/minirun --rm demo/busybox sh -c 'hostname; id; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'

# Networking (containers join the default bridge network unless --network says otherwise):
# two containers talking over the default bridge (by IP), then by name on a user network.
cleanup() {
  $BIN/minirun rm -f demo-web demo-api >/dev/null 2>&1 || true
  $BIN/minirun network rm demo-net >/dev/null 2>&1 || true
  [ "$had_bridge" != 0 ] || $BIN/minirun network rm bridge >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fetch() {  # a client container: GET http://$2:8080/hostname, retried while the server starts (flags in $1)
  for _ in $(seq 50); do
    # shellcheck disable=SC2086
    if $BIN/minirun --rm $1 demo/busybox wget -qO- "http://$2:8080/hostname"; then return 0; fi
    sleep 0.1
  done
  return 1
}
echo "+ minirun run -d --name demo-web -p 127.0.0.1::8080 demo/busybox busybox httpd -f -p 8080 -h /etc"
$BIN/minirun run -d --name demo-web -p 127.0.0.1::8080 demo/busybox busybox httpd -f -p 8080 -h /etc
web_ip=$($BIN/minirun inspect -f '{{.NetworkSettings.IPAddress}}' demo-web)
echo "+ minirun ps   # demo-web is at $web_ip on the default bridge"
$BIN/minirun ps
echo "+ minirun --rm demo/busybox wget -qO- http://$web_ip:8080/hostname   # another container, by IP"
fetch "" "$web_ip"
echo "+ minirun --rm demo/busybox ping -c 1 $web_ip"
$BIN/minirun --rm demo/busybox ping -c 1 "$web_ip"
port=$($BIN/minirun inspect -f '{{json .NetworkSettings.Ports}}' demo-web | $BIN/python -c \
  'import json, sys; print(json.load(sys.stdin)["8080/tcp"][0]["HostPort"])')
echo "+ GET http://127.0.0.1:$port/hostname   # from the host, through the published port"
$BIN/python -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")' \
  "http://127.0.0.1:$port/hostname"
echo "+ minirun network create demo-net"
$BIN/minirun network create demo-net
echo "+ minirun run -d --name demo-api --network demo-net demo/busybox busybox httpd -f -p 8080 -h /etc"
$BIN/minirun run -d --name demo-api --network demo-net demo/busybox busybox httpd -f -p 8080 -h /etc
echo "+ minirun --rm --network demo-net demo/busybox wget -qO- http://demo-api:8080/hostname   # by name"
fetch "--network demo-net" demo-api
echo "+ minirun rm -f demo-web demo-api && minirun network rm demo-net   # veths, rules and leases go too"
$BIN/minirun rm -f demo-web demo-api
$BIN/minirun network rm demo-net
