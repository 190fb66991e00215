# Two stages: build sigway with the Rust toolchain, run it on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY static static
COPY config config
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin sigway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sigway --create-home sigway
COPY --from=build /src/target/release/sigway /usr/local/bin/sigway
COPY config/default.toml /etc/sigway/sigway.toml
USER sigway
WORKDIR /var/lib/sigway
EXPOSE 8000
# Logs go to stdout; set SIGWAY_LOG__FILE=/var/lib/sigway/log/debug.log for a file.
ENV SIGWAY_LOG__FILE=""
ENTRYPOINT ["/usr/local/bin/sigway"]
CMD ["--config", "/etc/sigway/sigway.toml"]
