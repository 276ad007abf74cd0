#!/usr/bin/env bash
# The demo: on a fresh Debian machine, set up a Docker engine, start three
# throwaway containers that behave like kolla services, and let bounce-agent
# restart and time them with scenarios/demo.yaml. Results land in
# ./bounce-demo-out/<time>/, a report in its report/ folder; the containers
# are removed at the end.
#
#   ./scripts/demo.sh            # plan, run, summarize
#   KEEP=1 ./scripts/demo.sh     # leave the demo containers running
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/harness/docker-up.sh
echo "== building bounce (release)"
cargo build --release --quiet -p bounce-agent -p bounce-collector
AGENT=target/release/bounce-agent
COLLECTOR=target/release/bounce-collector
IMAGE=bounce-test/busybox:1

cleanup() { [ "${KEEP:-0}" = 1 ] || docker rm -f bounce-demo-api bounce-demo-worker bounce-demo-stubborn >/dev/null 2>&1 || true; }
trap cleanup EXIT
docker rm -f bounce-demo-api bounce-demo-worker bounce-demo-stubborn >/dev/null 2>&1 || true

echo "== starting demo containers"
# An API on 127.0.0.1:18774 (host network, as kolla runs its containers) that
# takes 0.3 s to shut down and exits 143 on SIGTERM, and 0.4 s to listen again.
docker run -d --name bounce-demo-api --network host $IMAGE sh -c \
  "trap 'sleep 0.3; exit 143' TERM; sleep 0.4; httpd -f -p 127.0.0.1:18774 -h /www & wait" >/dev/null
# A worker whose health check passes 1.5 s after it starts.
docker run -d --name bounce-demo-worker --network none \
  --health-cmd 'test -f /tmp/ready' --health-interval 1s $IMAGE sh -c \
  "rm -f /tmp/ready; trap 'exit 0' TERM; (sleep 1.5; touch /tmp/ready) & while true; do sleep 0.1; done" >/dev/null
# A process that ignores SIGTERM (PID 1 without a handler).
docker run -d --name bounce-demo-stubborn --network none $IMAGE sleep 86400 >/dev/null
for _ in $(seq 1 50); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' bounce-demo-worker)" = healthy ] && break
  sleep 0.2
done

out="bounce-demo-out/$(date -u +%Y%m%dT%H%M%SZ)"
echo "== plan"
$AGENT plan scenarios/demo.yaml
echo "== run (results in $out)"
status=0
$AGENT run scenarios/demo.yaml --output "$out" || status=$?
echo "== read back by the collector"
$COLLECTOR summarize "$out"
echo "== report (markdown + SVG charts + raw files, ready to attach to an issue)"
$COLLECTOR report --from "$out" --out "$out/report"
echo "== files"
ls -l "$out" "$out/report"
exit $status
