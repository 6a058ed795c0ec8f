# The control-plane service. Built by docker-compose.yml; see the README.
# Dependencies are built in a layer of their own (cargo-chef), from a recipe that only
# changes with Cargo.toml and Cargo.lock: a source change rebuilds the workspace's own
# crates, not every dependency.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin control-plane
COPY . .
# The build context has no .git: `--version` is told the commit
# (docker compose build --build-arg CP_GIT_COMMIT=$(git rev-parse --short=12 HEAD)).
ARG CP_GIT_COMMIT=""
RUN CP_GIT_COMMIT="$CP_GIT_COMMIT" cargo build --release --locked --bin control-plane

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/control-plane control-plane \
    && mkdir -p /var/lib/control-plane/storage /var/lib/control-plane-backups \
    && chown -R control-plane /var/lib/control-plane /var/lib/control-plane-backups
COPY --from=build /src/target/release/control-plane /usr/local/bin/control-plane
USER control-plane
WORKDIR /var/lib/control-plane
ENV CP_LISTEN=0.0.0.0:8080 \
    CP_DATA_DIR=/var/lib/control-plane \
    CP_STORAGE_ROOT=/var/lib/control-plane/storage \
    CP_BACKUP_ROOT=/var/lib/control-plane-backups
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=5 CMD ["control-plane", "healthcheck"]
ENTRYPOINT ["control-plane"]
CMD ["serve"]
