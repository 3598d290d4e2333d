# One image with every MCP Hub binary and the dashboard's build; docker-compose.yml
# picks the command per service.

# The dashboard (frontend/): the locked npm dependencies, then the Vite build.
FROM node:22-bookworm-slim AS dashboard
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npx vite build

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The `dist` profile (Cargo.toml): fat LTO, smaller and faster workers, slower to build.
RUN cargo build --profile dist --workspace --bins \
 && mkdir /out \
 && cp target/dist/mcp-admin target/dist/mcp-gateway target/dist/mcp-supervisor \
       target/dist/mcp-worker target/dist/mcp-mock-api /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY conf/ /etc/mcp-hub/
COPY --from=dashboard /src/frontend/dist/ /usr/share/mcp-hub/dashboard/
ENV MCP_DASHBOARD_DIR=/usr/share/mcp-hub/dashboard
WORKDIR /etc/mcp-hub
ENV MCP_LOG_FORMAT=json
