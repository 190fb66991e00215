#!/usr/bin/env bash
# Before/after comparison of two sigway builds in one run: starts each
# binary in turn on a free loopback port (fresh process per scenario) and
# runs the same load scenarios against it, alternating A, B, A, B, ... so
# that machine noise hits both alike. Prints every line, then the median of
# each figure per binary and the B/A ratio.
# Usage: benches/ab.sh A_BIN B_BIN [rounds, default 3] [seconds per scenario, default 5]
# SCENARIOS="videre relay16" picks some of: relay1 relay16 joins videre idle.
# Typical: build the baseline in a worktree of the older commit with
#   cargo build --release --bin sigway --example load
# then: benches/ab.sh ../baseline/target/release/sigway target/release/sigway 3 5
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1; b=$2; rounds=${3:-3}; secs=${4:-5}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -x target/release/examples/load ] || cargo build --release --example load
load=target/release/examples/load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null' EXIT
results=$(mktemp)

wanted=" ${SCENARIOS:-relay1 relay16 joins videre idle} "
scenario() { # label binary name args...
  local label=$1 bin=$2 name=$3; shift 3
  [[ $wanted == *" $name "* ]] || return 0
  local port; port=$(free_port)
  SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn "$bin" -h 127.0.0.1 -p "$port" &
  pid=$!
  wait_port "$port"
  local args=() arg out
  for arg in "$@"; do [ "$arg" = PID ] && arg=$pid; args+=("$arg"); done
  out=$("$load" --url "ws://127.0.0.1:$port" --seconds "$secs" --server-pid "$pid" "${args[@]}" 2>&1 | tail -n 3)
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  echo "[$label] $name: $out"
  echo "$label $name $out" | tr "\n" " " >>"$results"; echo >>"$results"
}

for round in $(seq "$rounds"); do
  for label in A B; do
    bin=$a; [ "$label" = B ] && bin=$b
    echo "# round $round, $label = $bin"
    scenario "$label" "$bin" relay1 relay --pairs 100 --size 100 --window 1
    scenario "$label" "$bin" relay16 relay --pairs 100 --size 100 --window 16
    scenario "$label" "$bin" joins joins --total 10000 --concurrency 100
    scenario "$label" "$bin" videre videre --rooms 25 --users 4
    scenario "$label" "$bin" idle idle --connections 10000 --pid PID
  done
done

echo
echo "# medians over $rounds rounds (B/A ratio; for cpu, rss and p50 lower is better)"
python3 - "$results" <<'PY'
import re, sys, statistics, collections
patterns = {
    "rate/s": r"(?:msgs/s|deliveries/s)=([0-9.]+)|([0-9.]+) joins/s",
    "server_cpu_us_per_event": r"server_cpu_us_per_event=([0-9.]+)",
    "p50_us": r"p50=([0-9.]+)(ms|µs|s)\b",
    "rss_bytes_per_conn": r"per connection=([0-9]+) B",
}
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    label, name, out = line.split(" ", 2)
    for metric, pattern in patterns.items():
        m = re.search(pattern, out)
        if not m:
            continue
        if metric == "p50_us":
            value = float(m.group(1)) * {"ms": 1e3, "µs": 1, "s": 1e6}[m.group(2)]
        else:
            value = float(next(g for g in m.groups() if g))
        rows[(name, metric, label)].append(value)
for name, metric in sorted({(n, m) for n, m, _ in rows}):
    a, b = rows.get((name, metric, "A"), []), rows.get((name, metric, "B"), [])
    if a and b:
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = mb / ma if ma else float("nan")
        print(f"{name:8} {metric:24} A={ma:12.2f} B={mb:12.2f} B/A={ratio:.2f}  (n={len(a)},{len(b)})")
PY
