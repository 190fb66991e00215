#!/usr/bin/env bash
# Builds sigway in release mode, starts it on a free loopback port, runs every
# load scenario of examples/load.rs against it and prints the results. With
# --compare, the sigver scenarios also run against the Node sigver 20.1.0
# server (tests/reference, installed with npm ci) for side-by-side figures.
# Usage: benches/load.sh [--compare] [seconds per scenario, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
compare=no
if [ "${1:-}" = "--compare" ]; then compare=yes; shift; fi
secs=${1:-10}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bin sigway --example load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

run_sigver_scenarios() { # port label pid
  local load="target/release/examples/load --url ws://127.0.0.1:$1 --seconds $secs --server-pid $3"
  echo "## $2"
  $load relay --pairs 100 --size 100
  $load rtt --pairs 100 --size 100
  $load rtt --pairs 10 --size 100
  $load joins --total 20000 --concurrency 100
  $load idle --connections 10000 --pid "$3"
}

port=$(free_port)
SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn target/release/sigway -h 127.0.0.1 -p "$port" &
pid=$!; pids+=("$pid")
wait_port "$port"
echo "# $(target/release/sigway -V), $(nproc) cores, $(date -u +%F)"
run_sigver_scenarios "$port" "sigway" "$pid"
target/release/examples/load --url "ws://127.0.0.1:$port" --seconds "$secs" --server-pid "$pid" videre --rooms 25 --users 4
kill "$pid"

if [ "$compare" = yes ]; then
  [ -d tests/reference/node_modules/sigver ] || (cd tests/reference && npm ci --no-audit --no-fund)
  port=$(free_port)
  node tests/reference/node_modules/sigver/dist/server.js -h 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  pid=$!; pids+=("$pid")
  wait_port "$port"
  run_sigver_scenarios "$port" "Node sigver 20.1.0 ($(node --version))" "$pid"
fi
