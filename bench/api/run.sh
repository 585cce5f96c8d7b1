#!/usr/bin/env bash
# Ingest benchmark of sensor-api (not a test): starts its own Redis (AOF with
# appendfsync always and noeviction, as in the compose set-up) and a release sensor-api on free loopback ports, then measures at a fixed
# concurrency, from a second process (wrk):
#   * GET  /nuevo?dato=       (legacy ingest)
#   * POST /api/v1/averages   (node ingest, a new round per request)
# and, in the same run and at the same concurrency, redis-benchmark running the very Lua
# script one ingest executes (EVALSHA, the physical limit of this design), plus plain SET
# for reference. Prints throughput, p99 latency and the API's RSS (peak and after load).
# Then the cost of durability: POST ingest with appendfsync everysec and always, switched
# with CONFIG SET on the same Redis in the same run, and the ratio (always / everysec).
#
# Usage: bench/api/run.sh [connections=64] [seconds=10] [wrk threads=2]
# Needs: redis-server, redis-cli, redis-benchmark, wrk (Debian packages), cargo.
set -euo pipefail
CONNS=${1:-64}
SECS=${2:-10}
THREADS=${3:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/api"
WORK=$(mktemp -d /tmp/sensor-api-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== building release sensor-api"
(cd "$ROOT" && cargo build --release -q -p sensor-api)
BIN="$ROOT/target/release/sensor-api"

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --dir "$WORK" \
  --appendfsync always --maxmemory-policy noeviction \
  --protected-mode no --logfile "$WORK/redis.log" &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

APORT=$(free_port)
LISTEN_ADDR=127.0.0.1:$APORT REDIS_URL=redis://127.0.0.1:$RPORT/ API_TOKEN=bench-token-0123456789 \
  KEY_PREFIX=bench RUST_LOG=warn "$BIN" >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=($API_PID)
for _ in $(seq 100); do
  "$BIN" healthcheck --url "http://127.0.0.1:$APORT/readyz" --timeout 1s >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN" healthcheck --url "http://127.0.0.1:$APORT/readyz" >/dev/null

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$API_PID/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$API_PID/status"; }

# wrk's --latency output: "Requests/sec: N" and a "99%  X.XXms" line.
wrk_run() { # name, extra args...
  local name=$1; shift
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$@")
  local rps p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $5}' <<<"$out"); errs=${errs:-0}
  # AOF rewrites fork Redis and are a known source of tail latency: count them per run.
  local rewrites; rewrites=$(redis-cli -p "$RPORT" info persistence | awk -F: '/^aof_rewrites:/ {print $2}' | tr -d '\r')
  printf '%-34s %12s req/s   p99 %9s   non-2xx %s   aof rewrites so far %s\n' "$name" "$rps" "$p99" "$errs" "$rewrites"
  LAST_RPS=$rps
}

echo "== RSS idle: $(rss_kb) kB"
# Durability cost first, on a fresh Redis, same API, alternating so drift of the shared
# machine hits both; each run stores new rounds (post.lua's base argument).
fsync_mode() { redis-cli -p "$RPORT" config set appendfsync "$1" >/dev/null; }
echo "== appendfsync everysec vs always (POST /api/v1/averages, alternating, 2 runs each)"
declare -A SUM=([everysec]=0 [always]=0)
BASE=0
for _ in 1 2; do
  for mode in everysec always; do
    fsync_mode "$mode"
    BASE=$((BASE + 1000000000))
    wrk_run "POST, appendfsync $mode" -s "$HERE/post.lua" "http://127.0.0.1:$APORT" -- "$BASE"
    SUM[$mode]=$(awk -v a="${SUM[$mode]}" -v b="$LAST_RPS" 'BEGIN {print a + b}')
  done
done
fsync_mode always
awk -v e="${SUM[everysec]}" -v a="${SUM[always]}" \
  'BEGIN {printf "== mean req/s: everysec %.0f, always %.0f, ratio always/everysec %.2f\n", e/2, a/2, a/e}'

echo "== load: $CONNS connections, $THREADS wrk threads, ${SECS}s each, loopback, $(nproc) cores shared by everything"
wrk_run "GET /nuevo (legacy ingest)" "http://127.0.0.1:$APORT/nuevo?dato=23.5&token=bench-token-0123456789"
wrk_run "POST /api/v1/averages (new round)" -s "$HERE/post.lua" "http://127.0.0.1:$APORT" -- 9000000000
echo "== RSS after load: $(rss_kb) kB, peak: $(hwm_kb) kB"

echo "== stored points: $(redis-cli -p "$RPORT" zcard bench:time)"

# The same Lua script the API runs per legacy ingest, straight from the source.
LUA=$(cat "$ROOT/api/src/store/lua/ingest.lua")
SHA=$(redis-cli -p "$RPORT" script load "$LUA")
KEYS=(rb:rec rb:time rb:fence rb:last_round rb:legacy_seq)
for s in 10000 60000 300000 3600000 86400000; do KEYS+=("rb:roll:$s" "rb:rollidx:$s"); done
JSON='{"round":0,"value":23.5,"samples":1,"leader":"legacy","fencing":0,"taken_at":"2026-01-01T00:00:00Z","taken_at_ms":1767225600000}'
N=$((CONNS * 3000))
rb_run() { # name, command...
  local name=$1; shift
  local line; line=$(redis-benchmark -p "$RPORT" -c "$CONNS" -n "$N" --csv "$@" | tail -1)
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  local rps p99
  # The test name may contain commas (the JSON argument): count fields from the end.
  rps=$(awk -F, '{print $(NF-6)}' <<<"$line" | tr -d '"')
  p99=$(awk -F, '{print $(NF-1)}' <<<"$line" | tr -d '"')
  printf '%-34s %12s req/s   p99 %8sms\n' "$name" "$rps" "$p99"
}
echo "== redis-benchmark, same Redis, $CONNS connections"
rb_run "EVALSHA ingest script (legacy)" evalsha "$SHA" "${#KEYS[@]}" "${KEYS[@]}" 5 10000 60000 300000 3600000 86400000 1 l "" 23.5 "" 1767225600000 1 "$JSON"
rb_run "SET (reference)" set rb:k v
