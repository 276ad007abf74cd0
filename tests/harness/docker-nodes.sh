#!/usr/bin/env bash
# Simulated nodes for fleet tests: one Docker engine per node name, each with
# its own socket, --data-root, --exec-root and pidfile (and so its own
# containerd), so every node can run containers under kolla's real names
# (`nova_api` on ctl1, ctl2 and ctl3 at once). Idempotent, safe from several
# test processes at once (flock). Needs the main engine (docker-up.sh) for the
# test image, which it copies into each node's engine.
#   docker-nodes.sh up NODE...     start what is missing; prints NODE=unix:///... lines
#   docker-nodes.sh down NODE...   stop those engines (their containers go with them)
#   docker-nodes.sh kill NODE...   SIGKILL those engines, as a crash (up brings them
#                                  back; containers come back by their restart policy)
# Engines run like the main one: --bridge=none --iptables=false; containers
# use --network host or none.
set -euo pipefail
. "$(dirname "$0")/detach.sh"
BASE=${BOUNCE_NODES_DIR:-/run/bounce-nodes}
DATA=${BOUNCE_NODES_DATA:-/var/lib/bounce-nodes}
IMAGE=${BOUNCE_TEST_IMAGE:-bounce-test/busybox:1}
cmd=${1:-}
shift || true
[ "$cmd" = up ] || [ "$cmd" = down ] || [ "$cmd" = kill ] || { echo "usage: $0 up|down|kill NODE..." >&2; exit 2; }
[ $# -gt 0 ] || { echo "docker-nodes: name at least one node" >&2; exit 2; }

exec 9>/tmp/bounce-docker-nodes.lock
flock 9

socket() { echo "$BASE/$1/docker.sock"; }
answers() { docker -H "unix://$(socket "$1")" version >/dev/null 2>&1; }

# Kills a failed start's dockerd and containerd of node dir $1 (found by the
# exec root in their command lines) and removes containerd's socket and pid
# files, so the next start begins from nothing.
stale_containerd() {
  local dir=$1 pid
  for pid in $(pgrep -x dockerd) $(pgrep -x containerd); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/exec"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  sleep 0.5
  rm -rf "$dir/exec/containerd"
}

for node in "$@"; do
  case "$node" in
    *[!a-zA-Z0-9_-]*|"") echo "docker-nodes: $node: a node name is letters, digits, _ and -" >&2; exit 2 ;;
  esac
done

if [ "$cmd" = down ] || [ "$cmd" = kill ]; then
  signal=TERM
  [ "$cmd" = kill ] && signal=KILL
  for node in "$@"; do
    pidfile=$BASE/$node/dockerd.pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      pid=$(cat "$pidfile")
      kill -"$signal" "$pid"
      for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
  done
  exit 0
fi

bash "$(dirname "$0")/docker-up.sh" >&2
for node in "$@"; do
  dir=$BASE/$node
  # A node's engine is started up to 3 times. Under CI's load one start's
  # containerd once never opened its socket within dockerd's 15 s (dockerd
  # then exits) and later starts failed the same way; before a new try,
  # whatever is left of that containerd is killed and its exec files removed
  # (the data root stays: images and containers survive a try).
  try=0
  while ! answers "$node"; do
    try=$((try + 1))
    if [ "$try" -gt 3 ]; then
      echo "docker-nodes: the engine of $node did not answer after 3 starts of 30 s; see $dir/dockerd.log" >&2
      grep -E 'containerd|level=(error|fatal)' "$dir/dockerd.log" | grep -v '\[core\]' | tail -40 >&2
      ps -eo pid,stat,etimes,cmd | grep -E '[c]ontainerd|[d]ockerd' >&2 || true
      exit 1
    fi
    [ "$try" -gt 1 ] && stale_containerd "$dir"
    mkdir -p "$dir/exec" "$DATA/$node"
    rm -f "$(socket "$node")" "$dir/dockerd.pid"
    echo "--- docker-nodes: start $try of the engine of $node at $(date -u +%FT%TZ)" >>"$dir/dockerd.log"
    detached dockerd --host "unix://$(socket "$node")" \
      --data-root "$DATA/$node" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
      --bridge=none --iptables=false >>"$dir/dockerd.log" 2>&1 < /dev/null
    for _ in $(seq 1 120); do answers "$node" && break; sleep 0.25; done
    answers "$node" || echo "docker-nodes: the engine of $node did not answer within 30 s (start $try)" >&2
  done
  if ! docker -H "unix://$(socket "$node")" image inspect "$IMAGE" >/dev/null 2>&1; then
    docker save "$IMAGE" | docker -H "unix://$(socket "$node")" load >/dev/null
  fi
  echo "$node=unix://$(socket "$node")"
done
