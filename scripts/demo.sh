#!/usr/bin/env bash
# The demo, in the shape a cluster runs: on a fresh Debian machine, set up a
# Docker engine, start three throwaway containers that behave like kolla
# services, make a private CA (openssl) with its CRL, start a collector with
# its embedded store serving TLS (node certificates checked against the CA
# and the CRL, /metrics only for a metrics token, as deployed), and let
# bounce-agent restart and time the containers with scenarios/demo.yaml,
# streaming to the collector over TLS with a node certificate. Then: the
# runs the collector holds, a report from its store, an excerpt of its
# /metrics read as Prometheus reads it (with the metrics token), an
# anonymous scrape refused, and the audit log of it all. Everything talks
# over loopback.
#
# Results land in ./bounce-demo-out/<time>/: the agent's folder (run/), the
# report from the store (report/), the CA, CRL, certificates and tokens
# (pki/), the store (store.db), the audit log and the collector's log. The
# containers and the collector are gone at the end.
#
#   ./scripts/demo.sh                   # plan, run over TLS, runs, report, /metrics, audit log
#   KEEP=1 ./scripts/demo.sh            # leave the demo containers running
#   BOUNCE_DEMO_PORT=19465 ./scripts/demo.sh   # the collector's port (default 19465)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/harness/docker-up.sh
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "== building bounce (release)"
cargo build --release --quiet -p bounce-agent -p bounce-collector
bin=${CARGO_TARGET_DIR:-target}/release
AGENT=$bin/bounce-agent
COLLECTOR=$bin/bounce-collector
IMAGE=bounce-test/busybox:1
PORT=${BOUNCE_DEMO_PORT:-19465}
URL=https://localhost:$PORT

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="bounce-demo-out/$stamp"
pki=$out/pki
mkdir -p "$pki"
collector_pid=
cleanup() {
  [ -z "$collector_pid" ] || kill "$collector_pid" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || docker rm -f bounce-demo-api bounce-demo-worker bounce-demo-stubborn >/dev/null 2>&1 || true
}
trap cleanup EXIT
docker rm -f bounce-demo-api bounce-demo-worker bounce-demo-stubborn >/dev/null 2>&1 || true

echo "== a private CA and its CRL, the collector's certificate (localhost), a node certificate (demo-node), tokens"
# As docs/deploying.md shows an operator: EC P-256, the CA key stays here.
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj "/CN=bounce demo CA"
issue() { # NAME SAN USAGE
  key "$pki/$1.key"
  openssl req -new -key "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=$1"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -out "$pki/$1.crt" -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3") 2>/dev/null
}
issue collector "DNS:localhost,IP:127.0.0.1" serverAuth
issue demo-node "DNS:demo-node" clientAuth
# The CRL, revoking nothing yet, made with `openssl ca` as docs/deploying.md
# shows (revoking later: openssl ca -config ca.cnf -revoke NODE.crt, -gencrl
# again, then kill -HUP the collector).
mkdir -p "$pki/ca-db" && : > "$pki/ca-db/index.txt" && echo 1000 > "$pki/ca-db/crlnumber"
printf '%s\n' '[ca]' 'default_ca = bounce' '[bounce]' "database = $pki/ca-db/index.txt" \
  "crlnumber = $pki/ca-db/crlnumber" "certificate = $pki/ca.pem" "private_key = $pki/ca.key" \
  'default_md = sha256' 'default_crl_days = 2' 'crl_extensions = crl_ext' \
  '[crl_ext]' 'authorityKeyIdentifier = keyid:always' > "$pki/ca.cnf"
openssl ca -config "$pki/ca.cnf" -gencrl -out "$pki/crl.pem" 2>/dev/null
# The operator's admin token (reads runs) and Prometheus's metrics token
# (reads /metrics, nothing else); agents need none: their certificate names them.
for t in admin metrics; do head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pki/$t.token"; done
chmod 600 "$pki"/*.key "$pki"/*.token
scrape() { curl -sf --cacert "$pki/ca.pem" -H "Authorization: Bearer $(cat "$pki/metrics.token")" "$URL/metrics"; }

echo "== starting the collector on $URL (store $out/store.db, log $out/collector.log)"
"$COLLECTOR" serve --listen "127.0.0.1:$PORT" --store "$out/store.db" \
  --tls-cert "$pki/collector.crt" --tls-key "$pki/collector.key" \
  --client-ca "$pki/ca.pem" --tls-client-crl "$pki/crl.pem" \
  --admin-token-file "$pki/admin.token" \
  --protect-metrics --metrics-token-file "$pki/metrics.token" \
  --audit-log "$out/audit.jsonl" \
  >"$out/collector.log" 2>&1 &
collector_pid=$!
for _ in $(seq 1 50); do
  scrape >/dev/null && break
  kill -0 "$collector_pid" 2>/dev/null || { cat "$out/collector.log"; exit 1; }
  sleep 0.1
done

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

run_id="demo-$stamp"
echo "== plan"
"$AGENT" plan scenarios/demo.yaml
echo "== run $run_id (folder $out/run), streamed over TLS as node demo-node"
status=0
"$AGENT" run scenarios/demo.yaml --output "$out/run" --run-id "$run_id" --node demo-node \
  --collector "$URL" --ca-file "$pki/ca.pem" \
  --client-cert "$pki/demo-node.crt" --client-key "$pki/demo-node.key" || status=$?
echo "== the runs the collector holds (read API, admin token)"
"$COLLECTOR" runs --collector "$URL" --ca-file "$pki/ca.pem" --token-file "$pki/admin.token"
echo "== report from the collector's store (markdown + SVG charts + raw files)"
"$COLLECTOR" report "$run_id" --store "$out/store.db" --out "$out/report"
echo "== /metrics as Prometheus reads it, with the metrics token (excerpt)"
metrics=$(scrape)
# Restarts that ended ok, the p90 of each service's whole restart, the collector's own counters.
grep -E '^bounce_restarts_total\{.*outcome="ok"|^bounce_restart_duration_hdr_seconds\{.*phase="total".*quantile="0.9"\}|^bounce_collector_(batches_total|runs|agents)' \
  <<<"$metrics" || echo "(no bounce_* series: see $out/collector.log)"
anonymous=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/ca.pem" "$URL/metrics" || true)
echo "== /metrics without a token: HTTP $anonymous (--protect-metrics: only a metrics or admin token reads it)"
echo "== the audit log ($out/audit.jsonl): admin requests and /metrics scrapes, allowed or refused"
cat "$out/audit.jsonl"
echo "== files"
ls -l "$out" "$out/report"
exit $status
