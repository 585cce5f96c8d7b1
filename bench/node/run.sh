#!/usr/bin/env bash
# Fleet benchmark: builds release binaries, then measures rounds per minute, counter
# accuracy, leader failover (SIGKILL and SIGTERM) and node RSS against a real ZooKeeper on
# 127.0.0.1. Prints figures; asserts nothing. Takes about 3 minutes after the build.
#   bench/node/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps
cargo build --release -q -p zk-sensors-node -p zk-sensors-bench
exec target/release/bench-rounds "$@"
