#!/usr/bin/env bash
# A real, tiny Ceph 16.2 cluster on 127.0.0.1 for the tests, started once per
# machine and reused: 1 mon, 1 mgr, 3 memstore OSDs, two pools of 8 PGs
# (testpool: size 3, min_size 2; sparsepool: size 2, min_size 1). Every daemon is a unit of the test systemd user
# manager (tests/harness/systemd-up.sh): ceph-mon@a, ceph-mgr@x, ceph-osd@N,
# so restarting an OSD is what it is on a node: RestartUnit over D-Bus.
#
# Prints KEY=VALUE lines: CEPH_CONF, CEPH_RUN_DIR (admin sockets), CEPH_OSDS.
# Facts used (../shared/ceph.md): ceph-mgr imports every module in its path,
# so it gets a folder with two real modules and stubs; memstore keeps data only
# across a clean unmount (osd fast shutdown = false); one host needs
# chooseleaf type 0; paxos/mgr periods shortened so state changes show fast.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
D=${BOUNCE_CEPH_DIR:-/tmp/bounce-ceph}
N=3
PORT=${BOUNCE_CEPH_PORT:-40100}
export CEPH_CONF=$D/ceph.conf
exec 8>/tmp/bounce-ceph-up.lock
flock 8

if ! command -v ceph-osd >/dev/null 2>&1 || ! command -v ceph-mon >/dev/null 2>&1 || ! command -v uuidgen >/dev/null 2>&1; then
  echo "ceph-up: installing Ceph from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends ceph-mon ceph-mgr ceph-osd ceph-common uuid-runtime >&2
fi

# The systemd manager the daemons run under.
eval "$(bash "$HERE/systemd-up.sh" | sed 's/^/export /')"
UNITS=$XDG_CONFIG_HOME/systemd/user

healthy() {
  timeout 10 ceph health --connect-timeout 3 2>/dev/null | grep -q HEALTH_OK || return 1
  # HEALTH_OK comes before the mgr has seen the PGs: require all 16 active+clean.
  timeout 10 ceph pg stat -f json --connect-timeout 3 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)["pg_summary"]
clean = {x["name"]: x["num"] for x in s["num_pg_by_state"]}.get("active+clean", 0)
sys.exit(0 if s["num_pgs"] == 16 and clean == 16 else 1)'
}

report() {
  echo "CEPH_CONF=$CEPH_CONF"
  echo "CEPH_RUN_DIR=$D/run"
  echo "CEPH_OSDS=$(seq -s, 0 $((N-1)))"
}

if [ -f "$D/ready" ] && healthy; then
  report
  exit 0
fi

echo "ceph-up: building a cluster in $D" >&2
for u in $(systemctl --user list-units --plain --no-legend 'ceph-*' 2>/dev/null | awk '{print $1}'); do
  systemctl --user stop "$u" 8>&- || true
done
systemctl --user reset-failed 'ceph-*' 2>/dev/null || true
rm -rf "$D"
mkdir -p "$D"/{run,log,mgrmod}
fsid=$(uuidgen)
mons="[v2:127.0.0.1:$PORT,v1:127.0.0.1:$((PORT+1))]"
for m in mgr_module.py mgr_util.py status iostat; do ln -s "/usr/share/ceph/mgr/$m" "$D/mgrmod/"; done
for m in balancer crash devicehealth orchestrator pg_autoscaler progress rbd_support telemetry volumes; do
  mkdir "$D/mgrmod/$m"
  echo 'from .module import Module' > "$D/mgrmod/$m/__init__.py"
  printf 'from mgr_module import MgrModule\nclass Module(MgrModule):\n    NOTIFY_TYPES = []\n' > "$D/mgrmod/$m/module.py"
done
cat > "$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = $mons
public addr = 127.0.0.1
ms bind port min = $((PORT+100))
ms bind port max = $((PORT+400))
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.asok
log file = $D/log/\$name.log
mon cluster log file = $D/log/cluster.log
# Precise log stamps (the default is CLOCK_REALTIME_COARSE, a few ms
# behind): tests compare the OSD logs with bounce's boundaries.
log coarse timestamps = false
osd crush chooseleaf type = 0
osd pool default size = 3
osd pool default min size = 2
osd pool default pg autoscale mode = off
mon allow pool delete = true
mon data avail warn = 1
# CI and shared machines may have little disk left; the test cluster holds
# a few MB, so only an actually full disk should stop the mon.
mon data avail crit = 1
mon warn on insecure global id reclaim allowed = false
[mon]
mon data = $D/mon.\$id
paxos propose interval = 0.1
mon mgr digest period = 1
[mgr]
mgr data = $D/mgr.\$id
mgr module path = $D/mgrmod
mgr stats period = 1
mgr tick period = 1
[osd]
osd data = $D/osd.\$id
osd objectstore = memstore
osd fast shutdown = false
memstore device bytes = 1073741824
EOF
key() { ceph-authtool "$D/keyring" --gen-key "$@" >/dev/null; }
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
for i in $(seq 0 $((N-1))); do
  key -n "osd.$i" --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
done
monmaptool --create --enable-all-features --fsid "$fsid" --addv a "$mons" "$D/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" > "$D/log/mon-mkfs.log" 2>&1

# Template units, as ceph-ansible names them (ceph-osd@N).
for kind in mon mgr osd; do
  cat > "$UNITS/ceph-$kind@.service" <<EOF
[Unit]
Description=Ceph $kind %i (bounce test cluster)
[Service]
ExecStart=/usr/bin/ceph-$kind -f -i %i -c $CEPH_CONF
Restart=on-failure
RestartSec=1
TimeoutStopSec=30
EOF
done
systemctl --user daemon-reload
systemctl --user start ceph-mon@a.service 8>&-
pids=()
for i in $(seq 0 $((N-1))); do
  mkdir "$D/osd.$i"; uuidgen > "$D/osd.$i/uuid"
  ceph-osd -i "$i" -c "$CEPH_CONF" --no-mon-config --mkfs --osd-uuid "$(cat "$D/osd.$i/uuid")" > "$D/log/osd.$i-mkfs.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
timeout 30 sh -c 'until ceph -s --connect-timeout 2 >/dev/null 2>&1; do sleep 0.2; done'
systemctl --user start ceph-mgr@x.service 8>&-
for i in $(seq 0 $((N-1))); do
  ceph osd new "$(cat "$D/osd.$i/uuid")" "$i" >/dev/null
  systemctl --user start "ceph-osd@$i.service" 8>&-
done
ceph osd pool create testpool 8 8 >/dev/null 2>&1
ceph osd pool application enable testpool rados >/dev/null 2>&1
# Two copies of three: as on a real cluster, some PGs are not on a given OSD
# (the agent must not wait for their stats after restarting it).
ceph osd pool create sparsepool 8 8 >/dev/null 2>&1
ceph osd pool set sparsepool size 2 >/dev/null 2>&1
ceph osd pool set sparsepool min_size 1 >/dev/null 2>&1
ceph osd pool application enable sparsepool rados >/dev/null 2>&1
end=$(( $(date +%s) + 120 ))
until healthy; do
  [ "$(date +%s)" -lt "$end" ] || { echo "ceph-up: no HEALTH_OK within 120 s" >&2; ceph -s >&2; exit 1; }
  sleep 0.5
done
for i in 1 2 3; do echo "object $i" | timeout 30 rados -p testpool put "obj$i" - ; done
touch "$D/ready"
report
