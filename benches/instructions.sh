#!/usr/bin/env bash
# User-space instructions per forwarded message, counted by callgrind
# (deterministic enough for a regression check, unlike CPU time on a shared
# machine): runs each server under `valgrind --tool=callgrind`, relays a
# bounded number of messages through it with the load tool, stops it with
# SIGTERM and reads the instruction total. Each server runs twice, with 0
# and with N messages and otherwise the same work (pairs set up, one hello,
# closes, start-up and shutdown), so the difference divided by the messages
# forwarded is the cost of forwarding one message:
#   sigway   relay --pairs P --window W: N payloads joiner → member, and
#            the member's acks back (one per W/2 payloads): N + acks forwarded
#   relay    examples/minimal_relay.rs, the same
#   echo     examples/raw_echo.rs, echo --connections P --window W: N echoed
# Prints one line per server and window, then the machine-readable
#   instructions_per_message window=W sigway=… relay=… echo=… sigway_over_echo=…
# (.ci/perf-check reads it). Everything started here is killed on exit.
#
# Usage: benches/instructions.sh [messages N, default 5000] [pairs, default 10]
# Environment: WINDOWS="1 16" (messages in flight, default both),
# SERVERS="sigway relay echo", GATEWAY_BIN=path/to/sigway (another build),
# NO_BUILD=1 (use the release binaries already built).
# Needs valgrind (Debian: apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}; pairs=${2:-10}
windows=${WINDOWS:-"1 16"}
servers=${SERVERS:-"sigway relay echo"}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install -y valgrind)" >&2; exit 2; }

. benches/common.sh

# Runs server $1 under callgrind, forwards $2 messages with $3 in flight;
# sets counted_instructions and counted_forwarded.
count() {
  local server=$1 n=$2 window=$3 port callgrind_out
  port=$(free_port)
  callgrind_out=$work/$server-$window-$n.callgrind
  local valgrind=(valgrind --tool=callgrind --callgrind-out-file="$callgrind_out" --log-file="$work/valgrind.log")
  case $server in
    # No heartbeats during the run: their timers would differ between the
    # two runs, which take different times.
    sigway) SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS=600000 \
              "${valgrind[@]}" "$sigway" -h 127.0.0.1 -p "$port" >/dev/null & ;;
    relay) "${valgrind[@]}" "$target_dir/release/examples/minimal_relay" --port "$port" >/dev/null & ;;
    echo) "${valgrind[@]}" "$target_dir/release/examples/raw_echo" --port "$port" >/dev/null & ;;
  esac
  pid=$!
  # Valgrind starts slowly: up to 60 s.
  wait_port "$port" 60 || { echo "$server did not start under valgrind" >&2; cat "$work/valgrind.log" >&2; exit 1; }
  forward "$server" "$port" "$n" "$pairs" "$window"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
  [ -s "$callgrind_out" ] || { echo "$server: callgrind wrote nothing" >&2; cat "$work/valgrind.log" >&2; exit 1; }
  # "totals: <Ir>" (older valgrind: "summary: <Ir>").
  local total
  total=$(grep -E '^(totals|summary):' "$callgrind_out" | tail -n 1 | awk '{print $2}')
  counted_instructions=$total
  counted_forwarded=$forwarded_messages
}

echo "# instructions per forwarded message (callgrind, $(valgrind --version)), $messages messages over $pairs pairs"
for window in $windows; do
  declare -A per=()
  for server in $servers; do
    count "$server" 0 "$window"
    base=$counted_instructions
    count "$server" "$messages" "$window"
    total=$counted_instructions forwarded=$counted_forwarded
    per[$server]=$(( (total - base) / forwarded ))
    echo "$server window=$window: $base instructions with 0 messages, $total with $messages ($forwarded forwarded): ${per[$server]} per forwarded message"
  done
  line="instructions_per_message window=$window"
  for server in $servers; do line+=" $server=${per[$server]}"; done
  if [ -n "${per[sigway]:-}" ] && [ -n "${per[echo]:-}" ]; then
    line+=" sigway_over_echo=$(python3 -c "print(f'{${per[sigway]} / ${per[echo]}:.2f}')")"
  fi
  echo "$line"
  unset per
done
