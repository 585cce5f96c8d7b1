#!/usr/bin/env bash
# Fleet benchmark: builds release binaries, then measures, for each fleet, rounds per minute,
# readings per round, round overhead, ZooKeeper transactions and /counter per round, CPU and
# RSS per sensor, then leader failover (SIGKILL and SIGTERM), against a real ZooKeeper on
# 127.0.0.1. Prints figures; asserts nothing. Takes about 3 minutes after the build.
#   bench/node/run.sh [--quick] [--fleets p3,p20,v100,v1000] [--secs S] [--no-failover]
#                     [--bin PATH --build LABEL] [--report FILE.md]
# p<N> = N sensor-node processes; v<N> = one `sensor-node --virtual N` process.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps
cargo build --release -q -p zk-sensors-node -p zk-sensors-bench
exec target/release/bench-rounds "$@"
