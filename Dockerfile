# One image with every MCP Hub binary; docker-compose.yml picks the command per service.
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
WORKDIR /etc/mcp-hub
ENV MCP_LOG_FORMAT=json
