# sigway in a container: a build stage with the Rust toolchain, a slim
# Debian runtime running as the non-root user `sigway`, a HEALTHCHECK on
# /healthz. Build and run:
#
#   docker build -t sigway .
#   docker run -p 8000:8000 sigway
#
# The base images are build arguments so that a machine without access to
# a registry can name local ones (tests/docker/run.sh builds them with
# debootstrap). The `runtime-prebuilt` target takes a sigway binary built
# on a compatible host (Debian bookworm, glibc and libssl3) from the build
# context's `prebuilt/sigway` instead of compiling one: CI uses it to keep
# its time bounded; the default target compiles in the container.
ARG BUILD_BASE=rust:1-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

# --- the runtime, shared by both final targets
FROM ${RUNTIME_BASE} AS runtime-base
# libssl3: sigway links openssl (TLS, HMAC); ca-certificates: redis+tls
# and any https the operator points it at. No curl: the HEALTHCHECK below
# uses bash's /dev/tcp, already in the image (no extra package to patch).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/sigway --create-home --shell /usr/sbin/nologin sigway
COPY config/default.toml /etc/sigway/sigway.toml
USER sigway
WORKDIR /var/lib/sigway
EXPOSE 8000
# Logs go to stdout (docker logs), without colours; set
# SIGWAY_LOG__FILE=/var/lib/sigway/log/debug.log for a file.
ENV SIGWAY_LOG__FILE="" \
    NO_COLOR=1
# Plain HTTP on the port sigway listens on (SIGWAY_PORT, default 8000).
# With TLS on that port, override it (e.g. docker run --health-cmd ...).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SIGWAY_PORT:-8000} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/sigway"]
CMD ["--config", "/etc/sigway/sigway.toml"]

# --- a binary built outside (see above): docker build --target runtime-prebuilt
FROM runtime-base AS runtime-prebuilt
COPY prebuilt/sigway /usr/local/bin/sigway

# --- compile sigway (the workspace: the gateway and its crates)
FROM ${BUILD_BASE} AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY proto proto
COPY src src
COPY static static
COPY config config
# Targets named in Cargo.toml (the bench and the examples) must exist for
# cargo to read the manifest.
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin sigway

# --- the default target: the runtime with the binary compiled above
FROM runtime-base AS runtime
COPY --from=build /src/target/release/sigway /usr/local/bin/sigway
