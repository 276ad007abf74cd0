#!/usr/bin/env bash
# Benchmarks (numbers for BENCHMARKS.md). Needs what the tests need.
#   BENCH_N=30 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/harness/docker-up.sh
cargo build --release --quiet -p bounce-agent -p bounce-tests --bins
BOUNCE_AGENT=$PWD/target/release/bounce-agent target/release/bench-docker
