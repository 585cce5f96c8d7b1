#!/usr/bin/env bash
# One round per POST, one at a time (as a fleet's leader delivers), to a real sensor-api on a
# real Redis with `appendfsync always` and with `everysec`: p50/p99 of each request's time,
# i.e. what Redis's fsync adds to a round's delivery. Prints the machine's load. Asserts
# nothing. Needs redis-server, curl, cargo (or SENSOR_API_BIN).
#   bench/api/post_latency.sh [posts=200]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
if [ -z "${SENSOR_API_BIN:-}" ]; then
  cargo build --release -q -p sensor-api
  SENSOR_API_BIN=target/release/sensor-api
fi
echo "nproc $(nproc), memory $(free -g | awk '/Mem:/ {print $2}') GiB, sensor-api $SENSOR_API_BIN"
TOKEN=bench-token-0123456789
one() {
  local mode=$1 dir rport aport rpid apid now
  dir=$(mktemp -d)
  rport=$((20000 + RANDOM % 10000)); aport=$((rport + 1))
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync "$mode" --dir "$dir" >/dev/null 2>&1 &
  rpid=$!
  sleep 0.3
  LISTEN_ADDR=127.0.0.1:$aport REDIS_URL=redis://127.0.0.1:$rport/ API_TOKEN=$TOKEN \
    "$SENSOR_API_BIN" >"$dir/api.log" 2>&1 &
  apid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$aport/readyz" >/dev/null && break; sleep 0.1; done
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  for r in $(seq 1 "$N"); do
    curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' \
      -d "[{\"round\":$r,\"value\":21.5,\"samples\":3,\"leader\":\"n1\",\"fencing\":7,\"taken_at\":\"$now\"}]" \
      "http://127.0.0.1:$aport/api/v1/averages"
  done | sort -n | awk -v m="$mode" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    '{a[NR]=$1*1000} END {printf "appendfsync %-8s n=%d p50 %.1f ms p99 %.1f ms (load %s)\n", m, NR, a[int(NR*0.5)], a[int(NR*0.99)], l}'
  kill "$apid" "$rpid"; wait "$apid" "$rpid" 2>/dev/null || true
  rm -rf "$dir"
}
one always
one everysec
