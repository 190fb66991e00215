#!/usr/bin/env bash
# Soak test of sigway: a release gateway on a loopback port, thousands of
# clients of both protocols over every SockJS transport (examples/soak.rs),
# then the checks: no well-behaved client missed a message, /stats shows no
# connection, session or room, RSS back near its start, no ERROR line in
# the gateway's log. About two minutes; bounded; kills what it starts.
#
#   tests/soak/soak.sh [extra examples/soak.rs flags, e.g. --rounds 3]
#
# The gateway runs with short timings so that leftovers go quickly:
# SockJS disconnect delay 2 s, SockJS heartbeat 2 s, sigver heartbeat 1 s
# (a peer that stops answering is closed after 3 s).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

# Built and run niced: the machine is shared with latency measurements.
nice -n 19 cargo build --release --bin sigway --example soak

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d)"
log="$work/gateway.log"
gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -KILL "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec env NO_COLOR=1 RUST_LOG= \
    SIGWAY_HOST=127.0.0.1 SIGWAY_PORT="$port" \
    SIGWAY_LOG__LEVEL=info SIGWAY_LOG__FILE= \
    SIGWAY_SOCKJS__DISCONNECT_DELAY_MS=2000 SIGWAY_SOCKJS__HEARTBEAT_MS=2000 \
    SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS=1000 SIGWAY_SIGVER__HEARTBEAT_MAX_MISSED=3 \
    nice -n 19 "$target_dir/release/sigway" >"$log" 2>&1) &
gateway_pid=$!

ready=""
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
        ready=yes
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "soak: the gateway did not start" >&2
    cat "$log" >&2
    exit 1
fi

status=0
nice -n 19 "$target_dir/release/examples/soak" \
    --url "http://127.0.0.1:$port" --server-pid "$gateway_pid" "$@" || status=$?

kill -TERM "$gateway_pid"
for _ in $(seq 1 100); do
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.1
done
wait "$gateway_pid" 2>/dev/null || true
gateway_pid=""

# Log levels, ANSI colours stripped in case the console still has them.
plain="$(sed -e 's/\x1b\[[0-9;]*m//g' "$log")"
errors="$(grep -cE '^\S+\s+ERROR\b' <<<"$plain" || true)"
warnings="$(grep -cE '^\S+\s+WARN\b' <<<"$plain" || true)"
echo "gateway log: $(wc -l <<<"$plain") lines, $errors ERROR, $warnings WARN"
if [ "$errors" -ne 0 ]; then
    grep -E '^\S+\s+ERROR\b' <<<"$plain" | head -20 >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "soak: FAILED" >&2
    exit "$status"
fi
echo "soak: passed"
