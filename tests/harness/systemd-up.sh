#!/usr/bin/env bash
# Makes a systemd user manager answer on its own D-Bus bus, for tests: PID 1
# here is not systemd, but `systemd --user` runs and serves the same D-Bus API
# (org.freedesktop.systemd1) as the system manager on a real node.
# Idempotent and safe to run from several test processes at once (flock).
# Prints the environment that reaches it, as `KEY=VALUE` lines:
#   XDG_RUNTIME_DIR, XDG_CONFIG_HOME (unit files go to $XDG_CONFIG_HOME/systemd/user),
#   DBUS_SESSION_BUS_ADDRESS.
set -euo pipefail
BASE=${BOUNCE_SYSTEMD_DIR:-/tmp/bounce-systemd}
exec 9>/tmp/bounce-systemd-up.lock
flock 9

need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
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

if ! systemctl --user show -p Version >/dev/null 2>&1; then
  if ! busctl --user list >/dev/null 2>&1; then
    rm -f "$XDG_RUNTIME_DIR/bus"
    setsid dbus-daemon --session --address="$DBUS_SESSION_BUS_ADDRESS" --nofork --nopidfile \
      >>"$BASE/dbus.log" 2>&1 </dev/null &
    for _ in $(seq 1 100); do busctl --user list >/dev/null 2>&1 && break; sleep 0.05; done
  fi
  setsid /lib/systemd/systemd --user >>"$BASE/systemd.log" 2>&1 </dev/null &
  for _ in $(seq 1 200); do
    systemctl --user show -p Version >/dev/null 2>&1 && break
    sleep 0.05
  done
  systemctl --user show -p Version >/dev/null 2>&1 \
    || { echo "systemd-up: the user manager did not answer; see $BASE/systemd.log" >&2; tail -20 "$BASE/systemd.log" >&2; exit 1; }
fi
echo "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
echo "XDG_CONFIG_HOME=$XDG_CONFIG_HOME"
echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
