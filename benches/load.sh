#!/usr/bin/env bash
# Builds sigway in release mode, starts it on a free loopback port, runs every
# load scenario of examples/load.rs against it and prints the results.
# Usage: benches/load.sh [seconds per scenario, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bin sigway --example load
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn target/release/sigway -h 127.0.0.1 -p "$port" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
load() { target/release/examples/load --url "ws://127.0.0.1:$port" --seconds "$secs" "$@"; }
echo "# sigway $(target/release/sigway -V | cut -d' ' -f2), $(nproc) cores, $(date -u +%F)"
load relay --pairs 100 --size 100
load rtt --pairs 100 --size 100
load joins --total 20000 --concurrency 100
load videre --rooms 25 --users 4
load idle --connections 10000 --pid "$pid"
