#!/usr/bin/env bash
# A picture of one dashboard query with real data, without Grafana (which cannot be installed
# here): starts `auspex serve` on the embedded default (simulator, paced), a Prometheus that
# scrapes it every second, waits, and has headless Chromium screenshot Prometheus's own graph
# page for the query. Not part of the test suite; the dashboards are tested by their queries
# (crates/auspex-serve/tests/deploy.rs).
#
#   deploy/screenshot.sh [OUT.png] [PROMQL] [SECONDS]
#   AUSPEX=path/to/auspex deploy/screenshot.sh   # default: `auspex` on PATH
#
# Needs prometheus (`apt-get install prometheus`) and chromium (`apt-get install chromium`).
set -euo pipefail
out="${1:-auspex-throughput.png}"
query="${2:-sum by (instance) (rate(auspex_samples_total[30s]))}"
seconds="${3:-40}"
auspex="${AUSPEX:-auspex}"
for tool in "$auspex" prometheus chromium curl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

dir="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve_port="$(free_port)"
prom_port="$(free_port)"

# Two simulated hours at 120 x: new samples the whole time the picture covers.
"$auspex" serve --set "http.listen=127.0.0.1:$serve_port" --set embedded.speed=120 \
  --set embedded.alerts="$dir/alerts.ndjson" --set embedded.dead_letters="$dir/dead.ndjson" \
  --set 'embedded.sim={ duration_ms = 7200000 }' >"$dir/serve.log" 2>&1 &
pids+=($!)
cat >"$dir/p.yml" <<EOF
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: auspex
    static_configs: [ { targets: ['127.0.0.1:$serve_port'] } ]
EOF
prometheus --config.file="$dir/p.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break
  sleep 0.2
done
echo "scraping auspex for $seconds s"
sleep "$seconds"

encoded="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$query")"
url="http://127.0.0.1:$prom_port/graph?g0.expr=$encoded&g0.tab=0&g0.range_input=1m"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
  --virtual-time-budget=8000 --screenshot="$dir/shot.png" "$url" 2>"$dir/chromium.log" \
  || { cat "$dir/chromium.log" >&2; exit 1; }
cp "$dir/shot.png" "$out"
echo "wrote $out ($url)"
