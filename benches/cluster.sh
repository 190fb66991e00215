#!/usr/bin/env bash
# Cross-node load figures of cluster mode (issue 10, scope item 4): starts
# its own redis-server on a free loopback port (no persistence), then for
# every scenario two (or three) fresh sigway release nodes with one worker
# each, waits until every node is ready and sees the others, and runs the
# load tool (examples/load.rs) with the peers spread over the nodes:
#   relay16 / relay256  one-way relayed msgs/s, each pair's member and joiner
#                       on different nodes (100 pairs, 100 B, window 16/256)
#   rtt10               round trip p50/p99, 10 pairs split over two nodes
#   joins               joins whose group's member is on another node
#   videre              videre broadcast, 25 rooms of 4 users, each room's
#                       users spread over the nodes (run with 3 nodes for
#                       "a room spread over three nodes")
# For each it reports the server CPU per event summed over the nodes, and
# the Redis commands per event over the same window (`redis-cli INFO
# commandstats` deltas: PUBLISH/SPUBLISH per message, and the directory's
# writes, EVALSHA/SET/..., which content relay should not make at all).
# Prints every line, then the medians over the rounds. Everything started
# here is killed on exit.
# Usage: benches/cluster.sh [rounds, default 3] [seconds per scenario, default 5] [nodes, default 2]
# Only some: SCENARIOS="relay16 rtt10" benches/cluster.sh ...  (default: all)
# Another build: GATEWAY_BIN=path/to/sigway benches/cluster.sh ...  (before/after;
# not SIGWAY_*, which sigway itself reads as settings)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-5}; nodes=${3:-2}
scenarios=${SCENARIOS:-"relay16 relay256 rtt10 joins videre"}
target_dir=${CARGO_TARGET_DIR:-target}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bin sigway --example load
sigway=${GATEWAY_BIN:-$target_dir/release/sigway}
load=$target_dir/release/examples/load

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_pid=""
node_pids=()
cleanup() {
  local pid
  for pid in "${node_pids[@]}" $redis_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --loglevel warning >/dev/null &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$redis_port" ping >/dev/null

node_ports=()
start_nodes() {
  node_pids=(); node_ports=()
  local n port
  for n in $(seq "$nodes"); do
    port=$(free_port)
    SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn SIGWAY_WORKERS=1 \
      SIGWAY_CLUSTER__REDIS_URL="redis://127.0.0.1:$redis_port" SIGWAY_CLUSTER__NODE_ID="$n" \
      "$sigway" -h 127.0.0.1 -p "$port" &
    node_pids+=("$!"); node_ports+=("$port")
  done
  # Ready (subscribed, own heartbeat heard) and every other node alive.
  for port in "${node_ports[@]}"; do
    local ok=no
    for _ in $(seq 200); do
      if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 &&
         curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -Eq "^sigway_cluster_nodes $nodes\$"; then
        ok=yes; break
      fi
      sleep 0.05
    done
    [ "$ok" = yes ] || { echo "node on port $port not ready with $nodes nodes" >&2; exit 1; }
  done
}
stop_nodes() {
  local pid
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  node_pids=()
}
# Sum of one counter over the nodes' /metrics.
metric_sum() {
  local port total=0 v
  for port in "${node_ports[@]}"; do
    v=$(curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="sigway_$1" '$1 == m { print $2 }')
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

results=$(mktemp)
scenario() { # name load-args...
  local name=$1; shift
  start_nodes
  local args=() port pid out
  for port in "${node_ports[@]}"; do args+=(--url "ws://127.0.0.1:$port"); done
  for pid in "${node_pids[@]}"; do args+=(--server-pid "$pid"); done
  out=$("$load" "${args[@]}" --redis-port "$redis_port" --seconds "$secs" "$@" 2>&1 | tail -n 3 || true)
  out="$out retransmits=$(metric_sum cluster_retransmits_total) link_resets=$(metric_sum cluster_link_resets_total)"
  stop_nodes
  echo "$name: $out"
  echo "$name $out" | tr "\n" " " >>"$results"; echo >>"$results"
}

echo "# $("$sigway" -V), $nodes nodes (workers = 1) + redis-server $(redis-server --version | grep -o 'v=[^ ]*'), $(nproc) cores, $(date -u +%FT%TZ)"
for round in $(seq "$rounds"); do
  echo "# round $round"
  for name in $scenarios; do
    case $name in
      relay16) scenario relay16 relay --pairs 100 --size 100 --window 16 ;;
      relay256) scenario relay256 relay --pairs 100 --size 100 --window 256 ;;
      rtt10) scenario rtt10 rtt --pairs 10 --size 100 ;;
      joins) scenario joins joins --total 5000 --concurrency 100 ;;
      videre) scenario videre videre --rooms 25 --users 4 ;;
      *) echo "unknown scenario $name" >&2; exit 2 ;;
    esac
  done
done

echo
echo "# medians over $rounds rounds"
python3 - "$results" <<'PY'
import re, sys, statistics, collections
patterns = {
    "rate/s": r"(?:msgs/s|deliveries/s)=([0-9.]+)|([0-9.]+) (?:joins|round trips)/s",
    "server_cpu_us_per_event": r"server_cpu_us_per_event=([0-9.]+)",
    "server_cpu_cores": r"server_cpu_cores=([0-9.]+)",
    "p50_us": r"p50=([0-9.]+)(ms|µs|ns|s)\b",
    "p99_us": r"p99=([0-9.]+)(ms|µs|ns|s)\b",
    "redis_publish_per_event": r"redis_publish_per_event=([0-9.]+)",
    "redis_commands_per_event": r"redis_commands_per_event=([0-9.]+)",
    "redis_writes": r"redis_writes=([0-9]+)",
    "retransmits": r"retransmits=([0-9]+)",
    "link_resets": r"link_resets=([0-9]+)",
}
scale = {"ms": 1e3, "µs": 1, "ns": 1e-3, "s": 1e6}
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    name, out = line.split(" ", 1)
    for metric, pattern in patterns.items():
        m = re.search(pattern, out)
        if not m:
            continue
        if metric in ("p50_us", "p99_us"):
            value = float(m.group(1)) * scale[m.group(2)]
        else:
            value = float(next(g for g in m.groups() if g))
        rows[(name, metric)].append(value)
for (name, metric), values in sorted(rows.items()):
    print(f"{name:9} {metric:26} {statistics.median(values):14.3f}  (n={len(values)}: {', '.join(f'{v:g}' for v in values)})")
PY
