#!/usr/bin/env bash
# `make chaos`: builds the binaries (release profile) and runs the chaos suite of
# loadtest/ (`mcp-loadtest chaos`), which starts its own hub (real redis-server, mock
# REST APIs, admin API, supervisor, workers, gateway) on free ports, offers the PRD
# load (20 servers, 200 rps, open loop) and injects each fault in turn, then rewrites
# docs/RELIABILITY.md. Extra arguments go to `mcp-loadtest chaos` (`--quick` for short
# fault windows; `--no-report` to write nothing; `--help` lists the rest). Exits 1 when
# a promise is broken (calls failed where none may, registrations lost, processes
# left behind). Takes about 6 minutes after the build (`--quick`: about 1.5).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"
profile="${MCP_CHAOS_PROFILE:-release}"

scripts/ensure-deps.sh
echo "chaos: building ($profile)..." >&2
cargo build --workspace --bins --profile "$profile" --quiet
command="make chaos${*:+ ARGS=\"$*\"}"
exec "$CARGO_TARGET_DIR/$profile/mcp-loadtest" chaos --command "$command" --log-dir "$CARGO_TARGET_DIR/chaos-logs" "$@"
