#!/usr/bin/env bash
# Ingest script benchmark (not a test): the cost of the real ingest script per call and per
# round for groups of 1, 8 and 64 one-round batches (two clusters, time order) on a
# throw-away Redis (AOF with appendfsync always, as in the compose set-up). No HTTP, wrk or
# API CPU is in these figures, so changes of a few per cent in the script show, which
# bench/api/run.sh cannot separate on a shared machine.
#   default       Redis time from INFO commandstats (wall time inside Redis: noisy when
#                 other work shares the cores; alternate the builds being compared)
#   CALLGRIND=1   instructions Redis executes per round, counted by valgrind's callgrind:
#                 the same figure for the same commit on a busy or an idle machine. One
#                 Redis per group size, minus a run of one round (start-up, warm-up).
# Compare two commits by running this in a checkout of each.
# Usage: bench/api/script.sh [rounds per size=4000] [group sizes=1,8,64]
# REDIS_DIR=dir puts the AOF there (default /tmp). Needs: redis-server, redis-cli, cargo;
# valgrind for CALLGRIND=1.
set -euo pipefail
ROUNDS=${1:-4000}
SIZES=${2:-1,8,64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d "${REDIS_DIR:-/tmp}/sensor-script-bench.XXXXXX")
RPID=
cleanup() { [ -n "$RPID" ] && kill "$RPID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
BIN="$ROOT/target/release/examples/bench_ingest_script"
(cd "$ROOT" && cargo build --release -q -p sensor-api --example bench_ingest_script)
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3); commit $(git -C "$ROOT" rev-parse --short HEAD)"

PORT=
start_redis() { # [wrapper...]: a fresh Redis on a free port in a fresh directory
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  "$@" redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
    --dir "$WORK/data" --protected-mode no --logfile "$WORK/data/redis.log" >/dev/null 2>&1 &
  RPID=$!
  for _ in $(seq 600); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2; exit 1
}
stop_redis() { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; wait "$RPID" 2>/dev/null || true; RPID=; }

if [ "${CALLGRIND:-0}" != 1 ]; then
  start_redis
  "$BIN" "redis://127.0.0.1:$PORT/" "$ROUNDS" "$SIZES"
  exit 0
fi

instructions() { # rounds, size: instructions redis-server executed for the whole run
  start_redis valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out"
  "$BIN" "redis://127.0.0.1:$PORT/" "$1" "$2" >/dev/null
  stop_redis
  awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.out"
}
BASE=$(instructions 1 1)
echo "group size   instructions per round (callgrind; start-up and one round: $BASE)"
for size in ${SIZES//,/ }; do
  total=$(instructions "$ROUNDS" "$size")
  awk -v s="$size" -v t="$total" -v b="$BASE" -v n="$ROUNDS" 'BEGIN {printf "%10d   %.0f\n", s, (t - b) / n}'
done
