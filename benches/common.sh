# Sourced by the benchmark scripts and .ci/perf-check: the release binaries
# they run, a scratch directory, killing what they start on exit (the
# server whose pid is in $pid, and background jobs), and loopback ports.
# Set NO_BUILD=1 to use the release binaries already built.
target_dir=${CARGO_TARGET_DIR:-target}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -n "${NO_BUILD:-}" ] || nice -n 19 cargo build --release --bin sigway --example load --example raw_echo --example minimal_relay
sigway=${GATEWAY_BIN:-$target_dir/release/sigway}
load=$target_dir/release/examples/load

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT [SECONDS, default 10]: until something listens on PORT.
wait_port() {
  local tenths=$(( ${2:-10} * 10 ))
  for _ in $(seq "$tenths"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# forward SERVER PORT MESSAGES CONNECTIONS WINDOW: has the load tool send
# MESSAGES of 100 B with WINDOW in flight through the server on PORT (the
# echo: echoes over CONNECTIONS connections; a relay: payloads over
# CONNECTIONS pairs, the members acking them), fails unless all were
# delivered, and sets forwarded_messages to the messages the server
# forwarded (payloads + acks).
forward() {
  local server=$1 port=$2 messages=$3 connections=$4 window=$5 out delivered acks
  if [ "$server" = echo ]; then
    out=$("$load" --url "ws://127.0.0.1:$port" --seconds 300 echo --connections "$connections" --size 100 --window "$window" --messages "$messages")
  else
    out=$("$load" --url "ws://127.0.0.1:$port" --seconds 300 relay --pairs "$connections" --size 100 --window "$window" --messages "$messages")
  fi
  delivered=$(grep -o 'delivered=[0-9]*' <<<"$out" | cut -d= -f2)
  acks=$(grep -o 'acks=[0-9]*' <<<"$out" | cut -d= -f2 || true)
  [ "$delivered" = "$messages" ] || { echo "$server: $messages sent, $delivered delivered: $out" >&2; exit 1; }
  forwarded_messages=$((messages + ${acks:-0}))
}
