#!/usr/bin/env bash
# Store benchmark (not a test): starts a throw-away Redis, fills it with N averages (default
# 1,000,000, one per second ≈ 11.6 days) through the real ingest script, then times the
# queries that must stay fast on huge histories (Grafana buckets, stats, history pages).
# Usage: bench/api/store.sh [points=1000000]
set -euo pipefail
POINTS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sensor-store-bench.XXXXXX)
RPID=
cleanup() { [ -n "$RPID" ] && kill "$RPID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --protected-mode no --logfile "$WORK/redis.log" &
RPID=$!
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
(cd "$ROOT" && cargo run --release -q -p sensor-api --example bench_store -- "redis://127.0.0.1:$PORT/" "$POINTS")
echo "redis used_memory: $(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"
