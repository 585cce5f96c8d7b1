#!/usr/bin/env bash
# Ingest benchmark of sensor-api (not a test): starts its own Redis (AOF with
# appendfsync always and noeviction, as in the compose set-up) and a release sensor-api on
# free loopback ports, prints the machine (cores, memory, load), then measures at a fixed
# concurrency, from a second process (wrk), and in the same run with redis-benchmark at
# the same concurrency on the same Redis:
#   * POST /api/v1/averages   (node ingest, a new round per request) beside
#     redis-benchmark ZADD (run before and after it; the mean), and their ratio (target:
#     POST >= 1/2 of ZADD)
#   * GET  /healthz           (the HTTP floor: same server and layers, no Redis, no body)
#   * POST of rounds already stored (the ingest floor: the whole ingest path, answered
#     `duplicate`, nothing written): what POST would reach if storing cost nothing
#   * GET  /nuevo?dato=       (legacy ingest; leaves tens of thousands of legacy points
#     newer than every round)
#   * POST of back-dated rounds after those legacy points (taken_at older than them), and
#     its ratio to the normal POST (target: >= 1/2)
#   * SET (reference); the API's RSS (peak and after load)
# Then, with FSYNC_COMPARE=1, the cost of durability: POST with appendfsync everysec and
# always, switched with CONFIG SET on the same Redis in the same run, alternating.
#
# Usage: bench/api/run.sh [connections=32] [seconds=10] [wrk threads=2]
# SENSOR_API_BIN=path measures another build (no cargo build then). REDIS_DIR=dir puts
# Redis' AOF there (default /tmp; /dev/shm takes the disk's fsync latency, which other
# work on a shared machine makes erratic, out of the figures). LEGACY_MIN (20000): legacy
# points stored before the back-dated run (more /nuevo runs of 5 s until there are). Compare two builds
# on a shared machine by running them alternately and comparing the ratios of each run:
#   for i in 1 2; do SENSOR_API_BIN=/tmp/a bench/api/run.sh; SENSOR_API_BIN=/tmp/b bench/api/run.sh; done
# Needs: redis-server, redis-cli, redis-benchmark, wrk (Debian packages), cargo.
set -euo pipefail
CONNS=${1:-32}
SECS=${2:-10}
THREADS=${3:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/api"
WORK=$(mktemp -d "${REDIS_DIR:-/tmp}/sensor-api-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -n "${SENSOR_API_BIN:-}" ]; then
  BIN=$SENSOR_API_BIN
else
  echo "== building release sensor-api"
  (cd "$ROOT" && cargo build --release -q -p sensor-api)
  BIN="$ROOT/target/release/sensor-api"
fi
echo "== machine: $(nproc) cores, $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, load $(cut -d' ' -f1-3 /proc/loadavg); binary $BIN"

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --dir "$WORK" \
  --appendfsync always --maxmemory-policy noeviction \
  --protected-mode no --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=($REDIS_PID)
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
# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
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
N=$((CONNS * 3000))
rb_run() { # name, command...
  local name=$1; shift
  local line; line=$(redis-benchmark -p "$RPORT" -c "$CONNS" -n "$N" -r 100000000 --csv "$@" | tail -1)
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  local rps p99
  rps=$(awk -F, '{print $(NF-6)}' <<<"$line" | tr -d '"')
  p99=$(awk -F, '{print $(NF-1)}' <<<"$line" | tr -d '"')
  printf '%-34s %12s req/s   p99 %8sms\n' "$name" "$rps" "$p99"
  LAST_RPS=$rps
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "== load: $CONNS connections, $THREADS wrk threads, ${SECS}s each, loopback, $(nproc) cores shared by everything"
# ZADD runs just before and just after the POST run, and the ratio uses their mean: on a
# shared machine one ZADD run alone swings with whatever else runs at that moment.
rb_run "redis-benchmark ZADD (before POST)" zadd rb:z __rand_int__ m:__rand_int__
ZADD_BEFORE=$LAST_RPS
API_T0=$(cpu_ticks "$API_PID"); REDIS_T0=$(cpu_ticks "$REDIS_PID")
POST_BASE=1000000000 # added to the rounds of the first POST run (post.lua BASE)
wrk_run "POST /api/v1/averages (new round)" -s "$HERE/post.lua" "http://127.0.0.1:$APORT" -- "$POST_BASE"
POST_RPS=$LAST_RPS
# Where the CPU went: microseconds of API and Redis CPU time per POST (the rest of the two
# cores went to wrk, the kernel's share of loopback, and idle time).
CPU_SPLIT=$(awk -v a=$(( $(cpu_ticks "$API_PID") - API_T0 )) -v r=$(( $(cpu_ticks "$REDIS_PID") - REDIS_T0 )) \
  -v t="$TICK" -v n="$POST_RPS" -v s="$SECS" \
  'BEGIN {printf "sensor-api %.0f us, redis-server %.0f us", a / t / (n * s) * 1e6, r / t / (n * s) * 1e6}')
rb_run "redis-benchmark ZADD (after POST)" zadd rb:z __rand_int__ m:__rand_int__
ZADD_RPS=$(awk -v a="$ZADD_BEFORE" -v b="$LAST_RPS" 'BEGIN {printf "%.0f", (a + b) / 2}')
echo "== ZADD mean: $ZADD_RPS req/s"
echo "== ratio POST / ZADD: $(ratio "$POST_RPS" "$ZADD_RPS")"
echo "== CPU per POST: $CPU_SPLIT; at the target (ZADD/2) wrk, API and Redis together may use $(awk -v z="$ZADD_RPS" -v c="$(nproc)" 'BEGIN {printf "%.0f", c * 1e6 / (z / 2)}') us"
# The HTTP floor: the same server and layers answering without Redis or a body. POST can
# not beat it; its ratio to ZADD says how much of the target the HTTP path alone leaves.
wrk_run "GET /healthz (HTTP floor, no Redis)" "http://127.0.0.1:$APORT/healthz"
echo "== ratio floor / ZADD: $(ratio "$LAST_RPS" "$ZADD_RPS"), POST / floor: $(ratio "$POST_RPS" "$LAST_RPS")"
# The ingest floor: the same POSTs again, every round already stored. Each takes the whole
# ingest path (HTTP, JSON, group commit, the script's duplicate check) and writes nothing,
# so no design of what the store writes can make a new round cheaper than this.
last_round_of() { # wrk thread number -> that thread's cluster's highest stored round
  local key=bench:last_round
  [ "$1" -gt 1 ] && key=bench:cluster:bench-$1:last_round
  redis-cli -p "$RPORT" get "$key"
}
WRAP=$(for t in $(seq "$THREADS"); do echo $((10#$(last_round_of "$t") - POST_BASE)); done | sort -n | head -1)
# (less the last CONNS of them: a request in flight when wrk stopped may have been dropped)
WRAP=$((WRAP - CONNS))
POINTS_BEFORE=$(redis-cli -p "$RPORT" zcard bench:time)
wrk_run "POST already-stored round (no write)" -s "$HERE/post.lua" "http://127.0.0.1:$APORT" -- "$POST_BASE" 0 "$WRAP"
echo "== ratio no-write POST / ZADD: $(ratio "$LAST_RPS" "$ZADD_RPS"), POST / no-write POST: $(ratio "$POST_RPS" "$LAST_RPS") (points it stored: $(( $(redis-cli -p "$RPORT" zcard bench:time) - POINTS_BEFORE )), repeating $WRAP rounds per thread)"
NUEVO="http://127.0.0.1:$APORT/nuevo?dato=23.5&token=bench-token-0123456789"
wrk_run "GET /nuevo (legacy ingest)" "$NUEVO"
legacy() { redis-cli -p "$RPORT" get bench:legacy_seq; }
for _ in 1 2 3 4 5 6; do
  [ "$(legacy)" -ge "${LEGACY_MIN:-20000}" ] && break
  wrk -t"$THREADS" -c"$CONNS" -d5s "$NUEVO" >/dev/null
done
echo "== stored points: $(redis-cli -p "$RPORT" zcard bench:time), of them legacy (newer than every round): $(legacy)"
# Rounds newer than every stored round (hour 01 of the same day), older than the legacy
# points: each one's successor among node rounds is searched for past all of them.
wrk_run "POST back-dated round" -s "$HERE/post.lua" "http://127.0.0.1:$APORT" -- 9000000000 1
echo "== ratio back-dated POST / POST: $(ratio "$LAST_RPS" "$POST_RPS")"
rb_run "redis-benchmark SET (reference)" set rb:k v
echo "== RSS after load: $(rss_kb) kB, peak: $(hwm_kb) kB"

if [ "${FSYNC_COMPARE:-0}" = 1 ]; then
  # Alternating, so drift of the shared machine hits both; each run stores new rounds.
  fsync_mode() { redis-cli -p "$RPORT" config set appendfsync "$1" >/dev/null; }
  echo "== appendfsync everysec vs always (POST /api/v1/averages, alternating, 2 runs each)"
  declare -A SUM=([everysec]=0 [always]=0)
  BASE=2000000000
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
fi
