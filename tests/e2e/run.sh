#!/usr/bin/env bash
# End-to-end tests: real Netflux and SockJS/videre clients in headless
# Chromium against sigway, with every packet (WebRTC included) on loopback.
#
#   bash tests/e2e/run.sh [scenario-filter ...]
#
# Outside the namespace (network needed): install Chromium and coturn (Debian
# packages) when missing, `npm ci` the pinned clients, unpack Netflux 3.0.0's bundle,
# build sigway (debug). Then the script re-executes itself in a new network
# namespace that has only `lo` (unshare -n, needs root), starts two sigways
# on 127.0.0.1 (plain, and TLS with a throw-away certificate) and two
# coturns (TURN relay scenarios, credentials from sigway's /turn), runs
# e2e.mjs, and stops them. Chromium gathers ICE candidates on every interface it
# sees: in that namespace the only one is loopback.
#
# Environment:
#   E2E_SCREENSHOTS  folder for screenshots and sigway logs (default tests/e2e/screenshots)
#   E2E_SIGWAY_BIN   use this sigway binary instead of building one
#   E2E_TIMEOUT      seconds allowed for the run inside the namespace (default 540)
#   SIGWAY_*         passed on to both sigways (e.g. SIGWAY_SIGVER__HEARTBEAT_MAX_MISSED=1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export E2E_SCREENSHOTS="$(mkdir -p "${E2E_SCREENSHOTS:-$here/screenshots}" && cd "${E2E_SCREENSHOTS:-$here/screenshots}" && pwd)"

if [[ -z "${E2E_INSIDE_NETNS:-}" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "e2e: installing chromium (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # coturn: the TURN server of the turn-* scenarios (credentials from /turn).
  if [[ ! -x /usr/bin/turnserver ]]; then
    echo "e2e: installing coturn (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null
  fi
  echo "e2e: $(/usr/bin/chromium --version 2>/dev/null)"
  # npm ci only when the lock file changed since the last install.
  lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
  if [[ "$(cat "$here/node_modules/.e2e-installed" 2>/dev/null)" != "$lock_sum" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$here/node_modules/.e2e-installed"
  fi
  # Netflux 3.0.0 speaks the legacy sigver dialect. `npm install` of it fails
  # on this registry (a transitive dependency, typedarray.prototype.slice@^1.0.6,
  # is missing) and its browser bundle needs none of its dependencies: take
  # the published tarball itself, checked against its pinned integrity.
  legacy_dir="$here/node_modules/.netflux-legacy"
  if [[ ! -f "$legacy_dir/netflux.umd.js" ]]; then
    pack_dir="$(mktemp -d)"
    (cd "$pack_dir" && npm pack netflux@3.0.0 --silent >/dev/null)
    integrity="sha512-$(openssl dgst -sha512 -binary "$pack_dir/netflux-3.0.0.tgz" | base64 -w0)"
    if [[ "$integrity" != "sha512-cksPGAcqjAm2iIHaNNMsg6Wee3QWCkXsKAePj2Q9QUx0Od2kH8BrjKE4sFOdx3weXsq2UeatxywEOYZmhB2xdQ==" ]]; then
      echo "e2e: netflux-3.0.0.tgz does not match its pinned integrity ($integrity)" >&2
      exit 1
    fi
    mkdir -p "$legacy_dir"
    tar -xzf "$pack_dir/netflux-3.0.0.tgz" -C "$pack_dir" package/dist/netflux.umd.js package/LICENSE
    mv "$pack_dir/package/dist/netflux.umd.js" "$pack_dir/package/LICENSE" "$legacy_dir/"
    rm -rf "$pack_dir"
  fi
  if [[ -z "${E2E_SIGWAY_BIN:-}" ]]; then
    (cd "$root" && cargo build --bin sigway --quiet)
    target_dir="${CARGO_TARGET_DIR:-$root/target}"
    [[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
    export E2E_SIGWAY_BIN="$target_dir/debug/sigway"
  fi
  [[ -x "$E2E_SIGWAY_BIN" ]] || { echo "e2e: no sigway binary at $E2E_SIGWAY_BIN" >&2; exit 1; }
  if [[ "$(id -u)" != 0 ]]; then
    echo "e2e: must run as root (unshare -n makes the loopback-only network namespace)" >&2
    exit 1
  fi
  started=$SECONDS
  status=0
  E2E_INSIDE_NETNS=1 timeout --kill-after=10 "${E2E_TIMEOUT:-540}" unshare --net bash "$0" "$@" || status=$?
  [[ $status -eq 124 ]] && echo "e2e: FAIL: the run exceeded ${E2E_TIMEOUT:-540} s" >&2
  echo "e2e: finished in $((SECONDS - started)) s with status $status; screenshots in $E2E_SCREENSHOTS"
  exit "$status"
fi

# --- inside the network namespace
ip link set lo up
interfaces="$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
if [[ "$interfaces" != "lo " ]]; then
  echo "e2e: refusing to run: this namespace has interfaces other than lo: $interfaces" >&2
  exit 1
fi

# Any port is free in a fresh namespace; ask the kernel anyway. Three:
# sigway's, sigway-with-TLS's and the test page server's (sigway's SockJS
# iframe page loads the SockJS client from there instead of a CDN).
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
ports=()
while [[ ${#ports[@]} -lt 5 ]]; do
  p="$(free_port)"
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
port="${ports[0]}" tls_port="${ports[1]}"
export E2E_STATIC_PORT="${ports[2]}"
turn_port="${ports[3]}" turn_wrong_port="${ports[4]}"
workdir="$(mktemp -d /tmp/sigway-e2e.XXXXXX)"

# A throw-away certificate for 127.0.0.1: sigway serves https/wss with it,
# Node trusts it (NODE_EXTRA_CA_CERTS), the tls-* browser contexts ignore it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$workdir/key.pem" -out "$workdir/cert.pem" 2>/dev/null
export NODE_EXTRA_CA_CERTS="$workdir/cert.pem"

pids=()
# Runs sigway from an empty directory: no ./conf.json is picked up, and the
# log file (log/debug.log by default) goes there and is removed at the end.
start_sigway() {
  local log="$1"; shift
  (cd "$workdir" && exec env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
    SIGWAY_SOCKJS__CLIENT_URL="http://127.0.0.1:$E2E_STATIC_PORT/lib/sockjs.js" \
    "$E2E_SIGWAY_BIN" -h 127.0.0.1 "$@") >"$log" 2>&1 &
  pids+=($!)
  echo "e2e: sigway pid $! with $* (log $log)"
}
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$workdir"
}
trap stop_all EXIT

# Two coturns (Debian's) on loopback for the turn-* scenarios: one shares
# sigway's turn.secret, the other has another secret (its allocations must
# be refused). UDP relay ports of their own; no TLS/DTLS, no CLI.
export SIGWAY_TURN__SECRET="e2e-turn-secret-$RANDOM$RANDOM"
export SIGWAY_TURN__URIS="turn:127.0.0.1:$turn_port?transport=udp"
export E2E_TURN_URL="$SIGWAY_TURN__URIS"
export E2E_TURN_WRONG_URL="turn:127.0.0.1:$turn_wrong_port?transport=udp"
start_coturn() {
  local name="$1" listen="$2" secret="$3" min_port="$4"
  turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$listen" \
    --use-auth-secret --static-auth-secret="$secret" --realm=sigway.e2e \
    --allow-loopback-peers --no-tls --no-dtls --no-cli --fingerprint \
    --min-port="$min_port" --max-port="$((min_port + 999))" \
    --db="$workdir/$name.db" --pidfile="$workdir/$name.pid" \
    --log-file=stdout --simple-log >"$E2E_SCREENSHOTS/$name.log" 2>&1 &
  pids+=($!)
  echo "e2e: $name pid $! on 127.0.0.1:$listen (log $E2E_SCREENSHOTS/$name.log)"
}
start_coturn coturn "$turn_port" "$SIGWAY_TURN__SECRET" 50000
start_coturn coturn-wrong-secret "$turn_wrong_port" "not-$SIGWAY_TURN__SECRET" 51000
start_sigway "$E2E_SCREENSHOTS/sigway.log" -p "$port"
start_sigway "$E2E_SCREENSHOTS/sigway-tls.log" -p "$tls_port" -k "$workdir/key.pem" -c "$workdir/cert.pem"

status=0
SIGWAY_URL="http://127.0.0.1:$port" SIGWAY_TLS_URL="https://127.0.0.1:$tls_port" node "$here/e2e.mjs" "$@" || status=$?
for pid in "${pids[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "e2e: FAIL: a server (pid $pid) exited during the run" >&2
    status=1
  fi
done
if [[ $status -ne 0 ]]; then
  for log in "$E2E_SCREENSHOTS"/sigway.log "$E2E_SCREENSHOTS"/sigway-tls.log "$E2E_SCREENSHOTS"/coturn.log; do
    echo "e2e: last lines of $log:"
    tail -n 30 "$log" | cut -c1-400 | sed 's/^/  /'
  done
fi
exit "$status"
