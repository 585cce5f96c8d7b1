#!/usr/bin/env bash
# Abuse benchmark of sensor-api (run on demand, not a test): latency of /healthz and of
# node ingest (POST /api/v1/averages) while an abusive client hammers the expensive and
# hostile read endpoints (bench/api/abuse.lua), compared with the same measurements
# without the abuser. Starts its own Redis and a release sensor-api on free loopback
# ports, seeds two days of 10 s rounds, prints the machine (cores, memory) and figures.
#
# Usage: bench/api/abuse.sh [seconds=10] [abusive connections=32]
# SENSOR_API_BIN=path measures another build (e.g. an older commit) instead of building.
# Needs: redis-server, redis-cli, wrk, python3, cargo.
set -euo pipefail
SECS=${1:-10}
ABUSERS=${2:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/api"
WORK=$(mktemp -d /tmp/sensor-api-abuse.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TOKEN=bench-token-0123456789

echo "== machine: $(nproc) cores, $(free -m | awk '/^Mem:/ {print $2}') MiB memory, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${SENSOR_API_BIN:-}" ]; then
  BIN=$SENSOR_API_BIN
else
  echo "== building release sensor-api"
  (cd "$ROOT" && cargo build --release -q -p sensor-api)
  BIN="$ROOT/target/release/sensor-api"
fi
echo "== binary: $BIN"

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
APORT=$(free_port)
LISTEN_ADDR=127.0.0.1:$APORT REDIS_URL=redis://127.0.0.1:$RPORT/ API_TOKEN=$TOKEN \
  KEY_PREFIX=abuse RUST_LOG=warn "$BIN" >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=($API_PID)
for _ in $(seq 100); do
  "$BIN" healthcheck --url "http://127.0.0.1:$APORT/readyz" --timeout 1s >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== seeding 2 days of 10 s rounds"
python3 - "$APORT" "$TOKEN" <<'PY'
import json, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
now = int(time.time() * 1000)
n = 2 * 8640
pts = [{"round": i + 1, "value": 20 + (i % 50) / 10, "samples": 3, "leader": "bench",
        "fencing": 1, "taken_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now - (n - i) * 10_000) / 1000)) + "Z"}
       for i in range(n)]
for k in range(0, n, 300):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/averages", data=json.dumps(pts[k:k + 300]).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    urllib.request.urlopen(req).read()
PY

# Ingest of fresh rounds (times near now, so they pass the plausibility window).
cat >"$WORK/ingest.lua" <<LUA
local counter = 0
local tid = 0
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function init(args) tid = tonumber(tid) or 1 end
function request()
  counter = counter + 1
  local body = string.format('{"round":%d,"value":21.5,"samples":3,"leader":"bench","fencing":1,"taken_at":"%s"}',
    RUN * 1000000000 + tid * 100000000 + counter, os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/api/v1/averages", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $TOKEN"}, body)
end
LUA

measure() { # label, run number
  local h i
  h=$(wrk -t1 -c4 -d"${SECS}s" --latency "http://127.0.0.1:$APORT/healthz")
  sed "s/RUN/$2/" "$WORK/ingest.lua" >"$WORK/ingest-$2.lua"
  i=$(wrk -t1 -c4 -d"${SECS}s" --latency -s "$WORK/ingest-$2.lua" "http://127.0.0.1:$APORT")
  for pair in "healthz:$h" "ingest:$i"; do
    local name=${pair%%:*} out=${pair#*:}
    printf '%-28s %-8s %10s req/s  p50 %9s  p99 %9s  max %9s  non-2xx %s\n' "$1" "$name" \
      "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1=="50%" {print $2}' <<<"$out")" \
      "$(awk '$1=="99%" {print $2}' <<<"$out")" "$(awk '/Latency/ {print $4; exit}' <<<"$out")" \
      "$(awk '/Non-2xx/ {print $5}' <<<"$out" | grep . || echo 0)"
  done
}

echo "== without abuse ($SECS s each, 4 connections)"
measure "quiet" 1
echo "== with $ABUSERS abusive connections cycling through bench/api/abuse.lua"
wrk -t1 -c"$ABUSERS" -d"$((2 * SECS + 5))s" --latency -s "$HERE/abuse.lua" "http://127.0.0.1:$APORT" >"$WORK/abuse.out" 2>&1 &
ABUSE=$!
sleep 2
measure "under abuse" 2
wait "$ABUSE" || true
printf 'abusive client: %s req/s, non-2xx (refusals) %s, p99 %s\n' \
  "$(awk '/Requests\/sec/ {print $2}' "$WORK/abuse.out")" \
  "$(awk '/Non-2xx/ {print $5}' "$WORK/abuse.out" | grep . || echo 0)" \
  "$(awk '$1=="99%" {print $2}' "$WORK/abuse.out")"
echo "== sensor-api RSS peak: $(awk '/^VmHWM/ {print $2}' "/proc/$API_PID/status") kB; still serving: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/healthz")"
