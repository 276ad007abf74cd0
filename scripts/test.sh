#!/usr/bin/env bash
# The test suite, from a fresh Debian machine: installs and starts what the
# tests need (Docker engine, the busybox test image, a systemd user manager
# on its own D-Bus bus), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/harness/docker-up.sh
bash tests/harness/systemd-up.sh >/dev/null
# Another HdrHistogram implementation, to prove our .hlog files are standard.
python3 -c 'import hdrh' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore hdrhistogram
cargo test --workspace --locked "$@"
