#!/usr/bin/env bash
# Proves the Dockerfile: builds the image, runs it, checks it like clients do.
#
#   bash tests/docker/run.sh
#
# Needs root (dockerd). Installs docker.io and debootstrap from Debian when
# missing, starts its own dockerd (--bridge=none --iptables=false, data
# root /var/lib/sigway-ci-docker, socket /run/sigway-ci-docker.sock) unless
# one answers already, and stops it at the end if it started it. No image
# can be pulled here: the base image is built from Debian packages with
# debootstrap and `docker import` (tag sigway-ci/debian:bookworm, kept in
# the data root, so a second run skips it). The sigway image is built from
# the Dockerfile's `runtime-prebuilt` target with a sigway binary built on
# this host (compiling in the container takes far too long on a small CI
# machine; the default target compiles there for users, and its COPY list
# is checked with `cargo metadata` on exactly those files). The container
# runs with --network host on a free loopback port; the script waits for
# its HEALTHCHECK to report healthy, checks it runs as a non-root user,
# checks a sigver join and a videre call against it (check.mjs, Node 20),
# prints the container's output and removes the container.
#
# Only Debian's package mirror (apt-get, debootstrap, and the image's own
# apt-get during the build) and crates.io (`cargo fetch`, for crates of
# other platforms the build never needed) are contacted; everything else is
# on loopback.
#
# Environment:
#   SIGWAY_DOCKER_BIN  the sigway binary to put in the image (default: build
#                      `cargo build --release --bin sigway`)
#   DEBIAN_MIRROR      debootstrap mirror (default http://deb.debian.org/debian)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
say() { echo "docker: $*"; }

if [[ "$(id -u)" != 0 ]]; then
  echo "skipped: docker test: dockerd cannot run without root"
  exit 0
fi
if [[ ! -x /usr/sbin/dockerd || ! -x /usr/sbin/debootstrap ]]; then
  say "installing docker.io and debootstrap (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
# The CLI of the same package as the daemon, when both are Debian's.
docker_cli="$(command -v /usr/bin/docker || command -v docker)"
docker() { "$docker_cli" "$@"; }
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed

work="$(mktemp -d /tmp/sigway-docker.XXXXXX)"
started_dockerd=""
container=""
cleanup() {
  local status=$?
  if [[ -n "$container" ]]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
  if [[ -n "$started_dockerd" ]]; then
    kill -TERM "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$started_dockerd" 2>/dev/null || true
    say "stopped the dockerd this script started"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# --- dockerd: an answering one, else our own.
if ! docker info >/dev/null 2>&1; then
  export DOCKER_HOST=unix:///run/sigway-ci-docker.sock
  if ! docker info >/dev/null 2>&1; then
    data_root=/var/lib/sigway-ci-docker
    mkdir -p "$data_root"
    start_dockerd() {
      dockerd --bridge=none --iptables=false --ip6tables=false \
        --data-root "$data_root" --exec-root /run/sigway-ci-docker \
        --pidfile /run/sigway-ci-docker.pid --host "$DOCKER_HOST" "$@" \
        >"$work/dockerd.log" 2>&1 &
      started_dockerd=$!
      for _ in $(seq 150); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$started_dockerd" 2>/dev/null || break
        sleep 0.2
      done
      kill -KILL "$started_dockerd" 2>/dev/null || true
      wait "$started_dockerd" 2>/dev/null || true
      started_dockerd=""
      return 1
    }
    # overlay2 is not possible everywhere (e.g. on an overlay root): vfs then.
    if ! start_dockerd && ! start_dockerd --storage-driver=vfs; then
      echo "skipped: docker test: dockerd cannot run here: $(grep -v '^\s*$' "$work/dockerd.log" | tail -n1 | cut -c1-300)"
      exit 0
    fi
    say "started dockerd (pid $started_dockerd, $(docker info -f '{{.ServerVersion}} {{.Driver}}'))"
  fi
fi

# --- the base image, from Debian packages.
base=sigway-ci/debian:bookworm
if docker image inspect "$base" >/dev/null 2>&1; then
  say "base image $base is cached"
else
  say "building base image $base with debootstrap"
  rootfs="$work/rootfs"
  # minbase: Essential and required packages (bash, coreutils, grep,
  # passwd for useradd) and apt; libssl3 and ca-certificates pre-installed
  # so the Dockerfile's apt-get finds them there.
  debootstrap --variant=minbase --include=libssl3,ca-certificates bookworm "$rootfs" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
fi

# --- the default (compiling) target reads exactly these files.
say "checking the build stage's files: cargo metadata on the COPY list"
manifest_dir="$work/build-stage"
mkdir -p "$manifest_dir"
copied="$(awk '/^FROM .* AS build$/ {b=1; next} /^FROM / {b=0} b && /^COPY / {for (i=2;i<NF;i++) print $i}' "$root/Dockerfile")"
[[ -n "$copied" ]] || { say "FAIL: no COPY lines found in the build stage"; exit 1; }
for path in $copied; do cp -r "$root/$path" "$manifest_dir/"; done
# cargo metadata resolves every platform's dependencies (Windows-only ones
# too), which a Linux build never downloads: fetch them first (crates.io,
# nothing when cached), then check the copied files alone, offline.
(cd "$root" && cargo fetch --locked --quiet)
(cd "$manifest_dir" && cargo metadata --locked --offline --format-version 1 >/dev/null)

# --- the sigway binary.
if [[ -z "${SIGWAY_DOCKER_BIN:-}" ]]; then
  say "building sigway (release) on the host"
  (cd "$root" && nice -n 19 cargo build --release --locked --bin sigway --quiet)
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  [[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
  SIGWAY_DOCKER_BIN="$target_dir/release/sigway"
fi
[[ -x "$SIGWAY_DOCKER_BIN" ]] || { say "FAIL: no sigway binary at $SIGWAY_DOCKER_BIN"; exit 1; }

# --- the image: the Dockerfile's runtime-prebuilt target.
context="$work/context"
mkdir -p "$context/prebuilt" "$context/config"
cp "$root/Dockerfile" "$context/"
cp "$root/config/default.toml" "$context/config/"
cp "$SIGWAY_DOCKER_BIN" "$context/prebuilt/sigway"
image=sigway-ci/sigway:test
say "building $image (target runtime-prebuilt, RUNTIME_BASE=$base)"
started=$SECONDS
# Host network: the image's apt-get reaches the Debian mirror (no bridge).
docker build --network host --target runtime-prebuilt \
  --build-arg RUNTIME_BASE="$base" --build-arg BUILD_BASE="$base" \
  -t "$image" "$context" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log"; exit 1; }
say "image built in $((SECONDS - started)) s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

# --- run it.
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
container="sigway-ci-$$"
docker run -d --name "$container" --network host \
  -e SIGWAY_HOST=127.0.0.1 -e SIGWAY_PORT="$port" --health-interval=1s \
  "$image" >/dev/null
say "container $container on 127.0.0.1:$port"
status=""
for _ in $(seq 60); do
  status="$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || echo gone)"
  [[ "$status" == healthy || "$status" == unhealthy || "$status" == gone ]] && break
  sleep 0.5
done
if [[ "$status" != healthy ]]; then
  say "FAIL: the container's health is '$status' after 30 s"
  docker logs "$container" 2>&1 | tail -n 30
  docker inspect -f '{{json .State.Health}}' "$container" 2>/dev/null || true
  exit 1
fi
say "HEALTHCHECK reports healthy"
user="$(docker exec "$container" id -un)"
[[ "$user" == sigway && "$(docker exec "$container" id -u)" != 0 ]] \
  || { say "FAIL: the container runs as '$user', not the non-root sigway"; exit 1; }
say "runs as the non-root user $user"

check_status=0
node --experimental-websocket --no-warnings "$here/check.mjs" "http://127.0.0.1:$port" || check_status=$?

docker stop -t 10 "$container" >/dev/null
say "container output:"
docker logs "$container" 2>&1 | cut -c1-300 | sed 's/^/  | /'
docker rm "$container" >/dev/null
container=""
if [[ $check_status -ne 0 ]]; then
  say "FAIL: the checks against the container failed"
  exit 1
fi
say "PASS"
