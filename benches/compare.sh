#!/usr/bin/env bash
# sigway side by side with the Node servers it replaces and with two floors,
# in one run (the figures of issue 11): builds the release binaries, then for
# every scenario starts each server fresh on a free loopback port, runs the
# load tool (examples/load.rs) against it and stops it. Servers:
#   sigway    target/release/sigway (log file off)
#   node      Node sigver 20.1.0 (tests/reference, npm ci when missing)
#   videre    the videre-server stand-in on sockjs-node 0.3.24
#             (tests/reference/videre, npm ci when missing; conf.json)
#   sigway_one_worker
#             sigway with `workers = 1` (not in the default list)
#   relay     examples/minimal_relay.rs: the least sigver/videre relay
#   relay_one_thread
#             the same on one worker thread (not in the default list): a
#             relay none of whose messages cross threads, the floor for
#             what a relay can reach against the echo
#   echo      examples/raw_echo.rs: a raw tokio-tungstenite echo
# Scenarios (each against the servers that speak it):
#   idle_sigver   RSS per idle sigver peer (echo: a bare WebSocket)
#   idle_legacy   the same, sigver 18.x dialect (sigway only)
#   idle_sockjs   RSS per idle videre peer on /echo/<s>/<id>/websocket
#   idle_raw      RSS per idle videre peer on /echo/websocket
#   idle_wss      RSS per idle sigver peer over TLS (self-signed, openssl)
#   fwd1 / fwd16  server CPU per forwarded message, 100 pairs (echo: 100
#                 connections), 100 B, 1 / 16 in flight
#   joins         open → `connected` latency and server CPU per join, one
#                 join at a time
#   videre        broadcast deliveries/s and CPU per delivery, 25 rooms × 4
# Rounds alternate the servers' order (forward, then backward) so that
# machine noise hits all alike; prints every line, then a markdown table of
# the medians with the ratios sigway ÷ Node, sigway ÷ minimal relay and
# sigway ÷ raw echo. Everything started here is killed on exit.
#
# Usage: benches/compare.sh [rounds, default 3] [seconds per scenario, default 5]
# Environment: SCENARIOS="fwd1 joins" and SERVERS="sigway node relay_one_thread" pick some;
# IDLE_CONNECTIONS (default 10000) and WSS_CONNECTIONS (default 2000) size
# the idle scenarios; GATEWAY_BIN=path/to/sigway measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-5}
scenarios=${SCENARIOS:-"idle_sigver idle_legacy idle_sockjs idle_raw idle_wss fwd1 fwd16 joins videre"}
servers=${SERVERS:-"sigway node videre relay echo"}
idle_connections=${IDLE_CONNECTIONS:-10000}
wss_connections=${WSS_CONNECTIONS:-2000}
. benches/common.sh
[ -d tests/reference/node_modules/sigver ] || (cd tests/reference && npm ci --no-audit --no-fund)
[ -d tests/reference/videre/node_modules/sockjs ] || (cd tests/reference/videre && npm ci --no-audit --no-fund)

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
results=$work/results


# Starts server $1 on port $2 (with TLS when $3 = tls); sets $pid.
start_server() {
  local name=$1 port=$2 tls=${3:-}
  case $name in
    sigway)
      local tls_args=()
      [ "$tls" = tls ] && tls_args=(-c "$work/cert.pem" -k "$work/key.pem")
      SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn SIGWAY_LIMITS__MAX_CONNECTIONS_PER_IP=100000 \
        "$sigway" -h 127.0.0.1 -p "$port" "${tls_args[@]}" >/dev/null &
      ;;
    sigway_one_worker)
      SIGWAY_WORKERS=1 SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn SIGWAY_LIMITS__MAX_CONNECTIONS_PER_IP=100000 \
        "$sigway" -h 127.0.0.1 -p "$port" >/dev/null &
      ;;
    node)
      local tls_args=()
      # sigver 20.1.0 serves TLS only when key, cert and CA are all given.
      [ "$tls" = tls ] && tls_args=(-k "$work/key.pem" -c "$work/cert.pem" -a "$work/cert.pem")
      node tests/reference/node_modules/sigver/dist/server.js -h 127.0.0.1 -p "$port" "${tls_args[@]}" >/dev/null 2>&1 &
      ;;
    videre)
      # videre-server reads conf.json from its working directory.
      mkdir -p "$work/videre-$port"
      local tls_json=false
      [ "$tls" = tls ] && tls_json=true
      printf '{"Port": %s, "TLS": %s, "Cert": "%s", "Key": "%s"}\n' \
        "$port" "$tls_json" "$work/cert.pem" "$work/key.pem" >"$work/videre-$port/conf.json"
      (cd "$work/videre-$port" && exec node "$OLDPWD/tests/reference/videre/server.js") >/dev/null 2>&1 &
      ;;
    relay) "$target_dir/release/examples/minimal_relay" --port "$port" >/dev/null & ;;
    relay_one_thread) "$target_dir/release/examples/minimal_relay" --port "$port" --workers 1 >/dev/null & ;;
    echo) "$target_dir/release/examples/raw_echo" --port "$port" >/dev/null & ;;
  esac
  pid=$!
  wait_port "$port"
}

# The load tool's arguments for scenario $1 against server $2 (PID stands
# for the server's pid); nothing when the server does not speak it.
scenario_args() {
  local scenario=$1 server=${2/#relay_one_thread/relay}
  server=${server/#sigway_one_worker/sigway}
  case $scenario:$server in
    idle_sigver:sigway|idle_sigver:node|idle_sigver:relay) echo "idle --kind sigver --connections $idle_connections --pid PID" ;;
    idle_sigver:echo) echo "idle --kind open --connections $idle_connections --pid PID" ;;
    idle_legacy:sigway) echo "idle --kind legacy --connections $idle_connections --pid PID" ;;
    idle_sockjs:sigway|idle_sockjs:videre) echo "idle --kind sockjs --connections $idle_connections --pid PID" ;;
    idle_raw:sigway|idle_raw:videre|idle_raw:relay) echo "idle --kind raw --connections $idle_connections --pid PID" ;;
    idle_wss:sigway|idle_wss:node) echo "idle --kind sigver --connections $wss_connections --pid PID" ;;
    fwd1:sigway|fwd1:node|fwd1:relay) echo "relay --pairs 100 --size 100 --window 1" ;;
    fwd16:sigway|fwd16:node|fwd16:relay) echo "relay --pairs 100 --size 100 --window 16" ;;
    fwd1:echo) echo "echo --connections 100 --size 100 --window 1" ;;
    fwd16:echo) echo "echo --connections 100 --size 100 --window 16" ;;
    joins:sigway|joins:node|joins:relay) echo "joins --total 2000 --concurrency 1" ;;
    videre:sigway|videre:videre|videre:relay) echo "videre --rooms 25 --users 4" ;;
  esac
}

run_one() { # scenario server
  local scenario=$1 server=$2 args port tls="" scheme=ws out
  args=$(scenario_args "$scenario" "$server")
  [ -n "$args" ] || return 0
  [ "$scenario" = idle_wss ] && tls=tls && scheme=wss
  port=$(free_port)
  if ! start_server "$server" "$port" "$tls"; then
    echo "[$server] $scenario: server did not start" >&2
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
    return 0
  fi
  args=${args//PID/$pid}
  # shellcheck disable=SC2086 # $args is a word list
  out=$("$load" --url "$scheme://127.0.0.1:$port" --seconds "$secs" --server-pid "$pid" $args 2>&1 | tail -n 3 || true)
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  echo "[$server] $scenario: $out"
  echo "$server $scenario $out" | tr "\n" " " >>"$results"; echo >>"$results"
}

echo "# $("$sigway" -V), Node $(node --version), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# $rounds rounds of ${secs} s, idle: $idle_connections connections ($wss_connections over wss)"
for round in $(seq "$rounds"); do
  order=$servers
  [ $((round % 2)) = 0 ] && order=$(echo "$servers" | tr ' ' '\n' | tac | tr '\n' ' ')
  echo "# round $round: $order"
  for scenario in $scenarios; do
    for server in $order; do
      run_one "$scenario" "$server"
    done
  done
done

echo
echo "# medians over $rounds rounds, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
python3 - "$results" <<'PY'
import re, sys, statistics, collections

# (row label, scenario, regex, scale, lower is better)
rows = [
    ("RSS per idle sigver peer (B)", "idle_sigver", r"per connection=([0-9]+) B", 1, True),
    ("RSS per idle legacy sigver peer (B)", "idle_legacy", r"per connection=([0-9]+) B", 1, True),
    ("RSS per idle videre peer, SockJS websocket (B)", "idle_sockjs", r"per connection=([0-9]+) B", 1, True),
    ("RSS per idle videre peer, raw /echo/websocket (B)", "idle_raw", r"per connection=([0-9]+) B", 1, True),
    ("RSS per idle sigver peer over wss (B)", "idle_wss", r"per connection=([0-9]+) B", 1, True),
    ("server CPU per forwarded message, 1 in flight (µs)", "fwd1", r"server_cpu_us_per_forwarded=([0-9.]+)", 1, True),
    ("forwarded messages/s, 1 in flight", "fwd1", r"forwarded_msgs_per_s=([0-9.]+)", 1, False),
    ("server CPU per forwarded message, 16 in flight (µs)", "fwd16", r"server_cpu_us_per_forwarded=([0-9.]+)", 1, True),
    ("forwarded messages/s, 16 in flight", "fwd16", r"forwarded_msgs_per_s=([0-9.]+)", 1, False),
    ("join: open → connected p50 (ms)", "joins", r"p50=([0-9.]+)(ms|µs|ns|s)\b", None, True),
    ("server CPU per join (µs)", "joins", r"server_cpu_us_per_event=([0-9.]+)", 1, True),
    ("videre broadcast deliveries/s", "videre", r"deliveries/s=([0-9.]+)", 1, False),
    ("server CPU per videre delivery (µs)", "videre", r"server_cpu_us_per_event=([0-9.]+)", 1, True),
]
to_ms = {"ms": 1, "µs": 1e-3, "ns": 1e-6, "s": 1e3}
values = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    server, scenario, out = line.split(" ", 2)
    for label, row_scenario, pattern, scale, _ in rows:
        if row_scenario != scenario:
            continue
        m = re.search(pattern, out)
        if m:
            value = float(m.group(1)) * (to_ms[m.group(2)] if scale is None else scale)
            values[(label, server)].append(value)

every = ["sigway", "sigway_one_worker", "node", "videre", "relay", "relay_one_thread", "echo"]
names = {"sigway": "sigway", "sigway_one_worker": "sigway, one worker", "node": "Node sigver 20.1.0",
         "videre": "videre-server (sockjs 0.3.24)", "relay": "minimal relay",
         "relay_one_thread": "minimal relay, one thread", "echo": "raw echo"}
def fmt(v):
    return "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"
# Columns only for the servers this run measured.
servers = [s for s in every if any(server == s for (_, server) in values)]
med_of = lambda label, s: statistics.median(values[(label, s)]) if values.get((label, s)) else None
# Ratios of the one-thread floors, when they were measured.
extras = [(f"{names[a]} ÷ {names[b]}", a, b) for a, b in
          [("relay_one_thread", "echo"), ("sigway_one_worker", "relay_one_thread"), ("sigway_one_worker", "echo")]
          if a in servers and b in servers]
print("| figure | " + " | ".join(names[s] for s in servers) + " | sigway ÷ Node | sigway ÷ minimal relay | sigway ÷ raw echo"
      + "".join(f" | {label}" for label, _, _ in extras) + " | better |")
print("|---" * (len(servers) + 5 + len(extras)) + "|")
for label, _, _, _, lower in rows:
    med = {s: med_of(label, s) for s in every}
    if all(v is None for v in med.values()):
        continue
    node = med["node"] if med["node"] is not None else med["videre"]
    cells = [fmt(med[s]) + (f" (n={len(values[(label, s)])})" if med[s] is not None and s == "sigway" else "") for s in servers]
    print(f"| {label} | " + " | ".join(cells)
          + f" | {ratio(med['sigway'], node)} | {ratio(med['sigway'], med['relay'])} | {ratio(med['sigway'], med['echo'])}"
          + "".join(f" | {ratio(med[a], med[b])}" for _, a, b in extras)
          + f" | {'lower' if lower else 'higher'} |")
PY
