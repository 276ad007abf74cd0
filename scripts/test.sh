#!/usr/bin/env bash
# The test suite, from a fresh Debian machine: installs and starts what the
# tests need (Docker engine, the busybox test image), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/harness/docker-up.sh
cargo test --workspace --locked "$@"
