#!/usr/bin/env bash
# `make bench`: builds the binaries as shipped (the `dist` profile of Cargo.toml: fat
# LTO; a cold build takes about twice as long as `release`) and runs the benchmark suite of loadtest/,
# which starts its own hubs (real redis-server, mock REST API, admin API, supervisor,
# workers, gateway) on free ports, measures every scenario and rewrites
# docs/BENCHMARKS.md. Extra arguments go to `mcp-loadtest suite` (`--quick` for a
# short trial run; `--help` lists the rest). Takes about 6 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"

scripts/ensure-deps.sh
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
  echo "bench: something answers on 127.0.0.1:8080 (make run?); it will compete for the CPU" >&2
fi
echo "bench: building (dist profile)..." >&2
cargo build --workspace --bins --profile dist --quiet
command="make bench${*:+ ARGS=\"$*\"}"
exec "$CARGO_TARGET_DIR/dist/mcp-loadtest" suite --command "$command" --log-dir "$CARGO_TARGET_DIR/bench-logs" "$@"
