#!/usr/bin/env bash
# Socket system calls per forwarded message, counted by `perf stat` on the
# kernel's syscall tracepoints (no slowdown, so batches are as large as in
# benches/compare.sh): the kernel
# half of a server's CPU at 16 in flight, and why no relay gets as close to
# the raw echo there as at 1 in flight (issue 11). An echo answers a batch on
# the socket it read; a relay reads a batch on one connection and writes it
# to another, and the acknowledgements come back the other way, so it makes
# more reads and writes per message whatever its code does.
#
# Each server runs fresh with `perf stat -p` attached, relays N messages
# with W in flight over P pairs with the load tool (the echo: N echoes over
# P connections), and its `sendto`, `recvfrom`, `epoll_wait` and `futex`
# calls (a futex is a thread waking or waiting for another) and context
# switches are divided by the messages forwarded (payloads + acks
# for the relays, as in benches/compare.sh). Counts depend on how messages
# batch, so on timing: read the ratios within one run.
# Prints one line per server, then
#   syscalls_per_message window=W <server>=<sendto+recvfrom> ... <server>_over_echo=…
#
# Usage: benches/syscalls.sh [messages N, default 200000] [pairs P, default 100]
# Environment: WINDOW=16, SERVERS="sigway sigway_one_worker relay_one_thread echo",
# GATEWAY_BIN, NO_BUILD=1 (as in benches/common.sh). Needs perf (Debian:
# apt-get install -y linux-perf) and kernel.perf_event_paranoid <= 2 as root
# (tracepoints).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-200000}; pairs=${2:-100}
window=${WINDOW:-16}
servers=${SERVERS:-"sigway sigway_one_worker relay relay_one_thread echo"}
command -v perf >/dev/null || { echo "perf is missing (apt-get install -y linux-perf)" >&2; exit 2; }
events=syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches

. benches/common.sh

# count EVENT FILE: EVENT's count in `perf stat -x,` output FILE.
count() { awk -F, -v name="$1" '$3 == name { print ($1 ~ /^[0-9]+$/ ? $1 : 0); found = 1 } END { if (!found) print 0 }' "$2"; }

echo "# socket system calls per forwarded message ($(perf version)), $messages messages over $pairs pairs, $window in flight"
line="syscalls_per_message window=$window"
declare -A per=()
for server in $servers; do
  port=$(free_port)
  case $server in
    sigway) SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn "$sigway" -h 127.0.0.1 -p "$port" >/dev/null & ;;
    sigway_one_worker) SIGWAY_WORKERS=1 SIGWAY_LOG__FILE="" SIGWAY_LOG__LEVEL=warn "$sigway" -h 127.0.0.1 -p "$port" >/dev/null & ;;
    relay) "$target_dir/release/examples/minimal_relay" --port "$port" >/dev/null & ;;
    relay_one_thread) "$target_dir/release/examples/minimal_relay" --port "$port" --workers 1 >/dev/null & ;;
    echo) "$target_dir/release/examples/raw_echo" --port "$port" >/dev/null & ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
  esac
  pid=$!
  wait_port "$port" 10 || { echo "$server did not start" >&2; exit 1; }
  summary=$work/$server.perf
  perf stat -x, -e "$events" -p "$pid" -o "$summary" &
  tracer=$!
  sleep 0.5
  forward "$server" "$port" "$messages" "$pairs" "$window"
  kill -INT "$tracer"
  wait "$tracer" || true
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
  forwarded=$forwarded_messages
  sends=$(count syscalls:sys_enter_sendto "$summary") receives=$(count syscalls:sys_enter_recvfrom "$summary")
  waits=$(count syscalls:sys_enter_epoll_wait "$summary") switches=$(count context-switches "$summary")
  futexes=$(count syscalls:sys_enter_futex "$summary")
  [ "$sends" -gt 0 ] || { echo "$server: perf counted no sendto (perf_event_paranoid?)" >&2; cat "$summary" >&2; exit 1; }
  per[$server]=$(python3 -c "print(f'{($sends + $receives) / $forwarded:.3f}')")
  echo "$server: $forwarded forwarded, sendto $sends, recvfrom $receives, epoll_wait $waits, futex $futexes, context switches $switches; per forwarded message:" \
    "$(python3 -c "print(f'{$sends / $forwarded:.3f} + {$receives / $forwarded:.3f} = ${per[$server]} reads and writes, {$waits / $forwarded:.3f} waits, {$futexes / $forwarded:.3f} futexes, {$switches / $forwarded:.3f} switches')")"
  line+=" $server=${per[$server]}"
done
if [ -n "${per[echo]:-}" ]; then
  for server in $servers; do
    [ "$server" = echo ] && continue
    line+=" ${server}_over_echo=$(python3 -c "print(f'{${per[$server]} / ${per[echo]}:.2f}')")"
  done
fi
echo "$line"
