#!/usr/bin/env bash
# Makes a Docker engine answer on this machine, and the tiny test image exist.
# Idempotent and safe to run from several test processes at once (flock).
#   - installs docker.io and busybox-static from Debian when missing;
#   - starts dockerd when none answers: --bridge=none --iptables=false, so no
#     container ever gets an address on Docker's private bridge (tests use
#     --network host, as kolla does, or --network none);
#   - builds bounce-test/busybox:1 with `docker import` (no registry is reachable).
set -euo pipefail
. "$(dirname "$0")/detach.sh"
IMAGE=${BOUNCE_TEST_IMAGE:-bounce-test/busybox:1}
LOG=${BOUNCE_DOCKERD_LOG:-/var/log/bounce-dockerd.log}
LOCK=/tmp/bounce-docker-up.lock

exec 9>"$LOCK"
flock 9

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "docker-up: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need_apt[@]}" >&2
fi

if ! docker version >/dev/null 2>&1; then
  echo "docker-up: starting dockerd (log: $LOG)" >&2
  mkdir -p "$(dirname "$LOG")"
  detached dockerd --host unix:///var/run/docker.sock --bridge=none --iptables=false \
    >>"$LOG" 2>&1 < /dev/null
  for _ in $(seq 1 120); do
    docker version >/dev/null 2>&1 && break
    sleep 0.25
  done
  docker version >/dev/null 2>&1 || { echo "docker-up: dockerd did not answer within 30 s; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "docker-up: building $IMAGE from busybox-static" >&2
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/www"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh sleep nc httpd wget cat echo test true false date touch rm ls mkdir kill ps grep; do
    ln -s busybox "$root/bin/$applet"
  done
  echo "bounce test page" > "$root/www/index.html"
  tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
fi
