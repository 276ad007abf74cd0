#!/usr/bin/env bash
# Benchmarks (numbers for BENCHMARKS.md). Needs what the tests need.
#   BENCH_N=30 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/harness/docker-up.sh
cargo build --release --quiet -p bounce-agent -p bounce-tests --bins
BOUNCE_AGENT=$PWD/target/release/bounce-agent target/release/bench-docker
# Ceph: the CLI against a librados session (the test cluster, as the tests start it).
bash tests/harness/systemd-up.sh >/dev/null
bash tests/harness/ceph-up.sh >/dev/null
BOUNCE_AGENT=$PWD/target/release/bounce-agent target/release/bench-ceph
# The collector's fleet simulator, with a Prometheus pushgateway beside it.
command -v prometheus-pushgateway >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-pushgateway >/dev/null
cargo build --release --quiet -p bounce-collector
for fleet in "1000 64 50" "10000 64 2500"; do
  BOUNCE_COLLECTOR=$PWD/target/release/bounce-collector PUSHGATEWAY=$(command -v prometheus-pushgateway) \
    target/release/bench-collector $fleet
done
# TLS against plain HTTP: a handshake per batch (the worst case), then a run's
# batches 15 s apart, each agent keeping its connection (and handshake) between them.
cargo build --release --quiet -p bounce-tests --bin bench-tls
BOUNCE_COLLECTOR=$PWD/target/release/bounce-collector target/release/bench-tls 1000 64 3 1
BENCH_GAP_SECS=15 BOUNCE_COLLECTOR=$PWD/target/release/bounce-collector target/release/bench-tls 1000 64 1 4
# A large node (100 containers) and a long run (BENCH_LONG restarts, ~40 min for
# 10,000); set BOUNCE_AGENT_OLD to a release build of an earlier commit to compare.
BOUNCE_AGENT=$PWD/target/release/bounce-agent BOUNCE_COLLECTOR=$PWD/target/release/bounce-collector \
  target/release/bench-scale
# Lease latency through the collector: the lease's own overhead (every ask
# granted at once) and the hand-over through one key.
cargo build --release --quiet -p bounce-tests --bin bench-lease
for fleet in "100 20 free" "1000 5 free" "100 5 one-key"; do
  BOUNCE_COLLECTOR=$PWD/target/release/bounce-collector target/release/bench-lease $fleet
done
# A watching agent on a node (its own engine): idle footprint over BENCH_IDLE
# seconds (default 600) beside node_exporter, then a burst of 60 restarts;
# the release build side by side with the shipped one (the dist profile,
# static, as scripts/images.sh links it; a fat-LTO build, several minutes).
command -v prometheus-node-exporter >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
cargo rustc --profile dist --locked --quiet -p bounce-agent --bin bounce-agent -- -C target-feature=+crt-static
cargo build --release --quiet -p bounce-tests --bin bench-watch
BOUNCE_AGENT="release=$PWD/target/release/bounce-agent dist=$PWD/target/dist/bounce-agent" target/release/bench-watch
# The watcher's own memory under steady restarts (a container every 2 s, a
# followed unit every 10 s, a unit nobody follows restarting itself): a
# plateau or growth per 1,000 restarts.
BENCH_CHURN=1 BENCH_IDLE=1200 BENCH_BURSTS=0 BOUNCE_AGENT="release=$PWD/target/release/bounce-agent" target/release/bench-watch
