#!/usr/bin/env bash
# Makes a systemd user manager answer on its own D-Bus bus, for tests: PID 1
# here is not systemd, but `systemd --user` runs and serves the same D-Bus API
# (org.freedesktop.systemd1) as the system manager on a real node.
# Idempotent and safe to run from several test processes at once (flock).
# Prints the environment that reaches it, as `KEY=VALUE` lines:
#   XDG_RUNTIME_DIR, XDG_CONFIG_HOME (unit files go to $XDG_CONFIG_HOME/systemd/user),
#   DBUS_SESSION_BUS_ADDRESS.
set -euo pipefail
. "$(dirname "$0")/detach.sh"
BASE=${BOUNCE_SYSTEMD_DIR:-/tmp/bounce-systemd}
exec 9>/tmp/bounce-systemd-up.lock
flock 9

need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
[ -f /usr/lib/systemd/user/dbus.socket ] || need+=(dbus-user-session)
[ -x /lib/systemd/systemd ] || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "systemd-up: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

export XDG_RUNTIME_DIR=$BASE/runtime
export XDG_CONFIG_HOME=$BASE/config
export DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus
mkdir -p /run/systemd/system "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/systemd/user"
chmod 700 "$XDG_RUNTIME_DIR"

# The user manager gets no cgroup subtree here (it shares /init.scope), so it
# learns a unit's "cgroup" is empty only from a SIGCHLD it may already have
# handled: a stopped dbus.service then sat in final-sigterm for the full
# TimeoutStopSec (90 s) after dbus-daemon had exited, and a test that takes
# the bus down and up again waited that long. Only the main process is
# tracked for the test bus; it has no other processes.
dropin=$XDG_CONFIG_HOME/systemd/user/dbus.service.d/bounce-test-bus.conf
want=$'[Service]\nKillMode=process\nTimeoutStopSec=10s'
fresh_dropin=0
if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$(dirname "$dropin")"
  printf '%s\n' "$want" > "$dropin"
  fresh_dropin=1
fi

# The manager's name on the bus (systemctl --user would also answer through
# the manager's private socket, which the agent does not use).
on_bus() {
  busctl --user get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager Version >/dev/null 2>&1
}

if ! on_bus; then
  # Start clean: whatever is left of an earlier manager goes.
  for f in "$BASE"/*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -f "$BASE"/*.pid "$XDG_RUNTIME_DIR/bus"
  # systemd --user listens on $XDG_RUNTIME_DIR/bus itself (dbus.socket, from
  # dbus-user-session) and starts the bus on the first connection.
  detached /lib/systemd/systemd --user >>"$BASE/systemd.log" 2>&1 </dev/null
  echo $! > "$BASE/systemd.pid"
  for _ in $(seq 1 200); do
    on_bus && break
    sleep 0.05
  done
  on_bus || { echo "systemd-up: the user manager is not on $DBUS_SESSION_BUS_ADDRESS; see $BASE/systemd.log" >&2; tail -20 "$BASE/systemd.log" >&2; exit 1; }
fi
# A manager already running from before the drop-in reads it now.
[ "$fresh_dropin" = 1 ] && systemctl --user daemon-reload
echo "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
echo "XDG_CONFIG_HOME=$XDG_CONFIG_HOME"
echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
