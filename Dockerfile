# syntax=docker/dockerfile:1
#
# One image with every zk-sensors binary: sensor-node, sensorctl, sensor-api and
# sensor-dashboard. Each compose service picks its binary with `command:`.
#
#   docker build -t zk-sensors:local .
#   docker run --rm zk-sensors:local sensor-node --help
#
# Stages:
#   plan    — extracts the Cargo manifests and the lock file from the source tree and
#             writes an empty stub for every target root (src/lib.rs, src/main.rs,
#             src/bin/*.rs, tests/*.rs, benches/*.rs, examples/*.rs, build.rs), so the
#             dependency layer below depends on the manifests only.
#   build   — compiles all dependencies against the stubs (cached until a Cargo.toml or
#             Cargo.lock changes), then the real sources (only our crates recompile).
#   runtime — debian:bookworm-slim with the four binaries, running as an unprivileged user.
#             No compiler, no curl: health checks use our binaries (`sensor-api
#             healthcheck`; for nodes `sensorctl status` piped to grep).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS plan
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /plan; \
    cp Cargo.toml Cargo.lock /plan/; \
    for manifest in $(find . -mindepth 2 -name Cargo.toml -not -path '*/target/*'); do \
      crate=$(dirname "$manifest"); \
      mkdir -p "/plan/$crate"; \
      cp "$manifest" "/plan/$crate/Cargo.toml"; \
      for root in $(cd "$crate" && find src/lib.rs src/main.rs build.rs \
                      src/bin tests benches examples \
                      -maxdepth 2 \( -name '*.rs' \) 2>/dev/null); do \
        case "$root" in \
          src/bin/*/*|tests/*/*|benches/*/*|examples/*/*) \
            case "$root" in */main.rs) ;; *) continue ;; esac ;; \
        esac; \
        mkdir -p "$(dirname "/plan/$crate/$root")"; \
        if [ "$root" = src/lib.rs ]; then : > "/plan/$crate/$root"; \
        else echo 'fn main() {}' > "/plan/$crate/$root"; fi; \
      done; \
    done

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The same package selection in both cargo runs, so features unify the same way and the
# second run reuses every dependency built by the first.
ARG PACKAGES="-p zk-sensors-node -p sensor-api -p sensor-dashboard"
# 1. Dependencies only: this layer is reused until a manifest or Cargo.lock changes.
COPY --from=plan /plan/ ./
RUN cargo build --release --locked $PACKAGES --bins
# 2. Our sources. Touch them so cargo does not trust the stubs' timestamps.
COPY . .
RUN set -eu; \
    find . -path ./target -prune -o -name '*.rs' -exec touch {} +; \
    cargo build --release --locked $PACKAGES --bins; \
    mkdir -p /out; \
    for bin in sensor-node sensorctl sensor-api sensor-dashboard; do \
      cp "target/release/$bin" /out/; \
    done

FROM debian:bookworm-slim AS runtime
# ca-certificates: only for https API URLs (rustls verifies against the system roots).
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sensors
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV RUST_LOG=info
EXPOSE 8080 8081
# Every service sets its own command; this default prints what is inside.
CMD ["sensor-api", "--help"]
