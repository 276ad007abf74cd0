#!/usr/bin/env bash
# The test suite, from a fresh Debian machine: installs and starts what the
# tests need (Docker engine, the busybox test image, a systemd user manager
# on its own D-Bus bus, a 3-OSD Ceph cluster whose daemons are its units,
# Prometheus, ansible-core, HAProxy), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/harness/docker-up.sh
bash tests/harness/systemd-up.sh >/dev/null
bash tests/harness/ceph-up.sh >/dev/null
# A real Prometheus server and promtool, to scrape and lint the collector.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
# ansible-core, to apply deploy/ansible's roles to localhost (tests/tests/deploy.rs).
if ! command -v ansible-playbook >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible-core >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible-core >/dev/null; }
fi
# HAProxy, as the read-only Docker API proxy watch is tested through.
if ! command -v haproxy >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }
fi
# The sqlite3 CLI, to make an older collector store (tests/tests/retention.rs).
if ! command -v sqlite3 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null; }
fi
# Another HdrHistogram implementation, to prove our .hlog files are standard.
python3 -c 'import hdrh' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore hdrhistogram
# --no-fail-fast: one failing test binary does not hide the others.
cargo test --workspace --locked --no-fail-fast "$@"
