#!/usr/bin/env bash
# Measures how fast the dashboard shows a worker's crash and recovery: builds the hub
# (the `release` profile, as `make run`; MCP_BENCH_PROFILE=debug for a quick run) and
# the dashboard, runs the browser suite with several `kill -9`s (each once the worker
# has run long enough for the supervisor's back-off to start again at its minimum),
# then writes the
# figures, the commit and this command into docs/BENCHMARKS.md (its own section below
# the suite's "written by hand" marker, which `make bench` keeps).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"
profile="${MCP_BENCH_PROFILE:-release}"
kills="${1:-7}"

PATH="$(scripts/ensure-node.sh):$PATH"
export PATH
scripts/build-dashboard.sh
echo "dashboard-bench: building the hub ($profile)" >&2
cargo_profile="$profile"
[ "$profile" = debug ] && cargo_profile=dev
cargo build --workspace --bins --profile "$cargo_profile" --quiet
dir="$profile"
[ "$profile" = dev ] && dir=debug
cd frontend
npx tsx e2e/run.ts --bin-dir "$CARGO_TARGET_DIR/$dir" --kills "$kills" --settle-ms 12500
npx tsx e2e/bench-report.ts --command "scripts/dashboard-bench.sh${1:+ $1}${MCP_BENCH_PROFILE:+ (MCP_BENCH_PROFILE=$MCP_BENCH_PROFILE)}" --profile "$profile"
